"""Writes one source's stage, progress and outcome to the SQL tables as the flow run goes."""

from gristmill.documents import Chunk, Document, FetchedContent
from gristmill.errors import GristmillError
from storage import repository
from storage.blobs import BlobStore, blob_released_when
from storage.db import session_scope
from storage.tables import Source, SourceStatus


class SourceProgress:
    def __init__(self, database_url: str, source_id: str, blobs: BlobStore, *, keep_originals: bool = True) -> None:
        self.database_url = database_url
        self.source_id = source_id
        self.blobs = blobs
        self.keep_originals = keep_originals

    def _update(self, **fields) -> Source:
        with session_scope(self.database_url) as session:
            source = repository.update_source(session, self.source_id, **fields)
            if source.status.is_final and source.job_id:
                repository.refresh_job_progress(session, source.job_id)
        if blob_released_when(source.status.value, keep_originals=self.keep_originals):
            self.blobs.remove(source.blob_path)  # the row keeps the path: a missing blob reads as none kept
        return source

    def reload(self) -> Source:
        with session_scope(self.database_url) as session:
            return repository.find_source(session, self.source_id)

    def stage(self, status: SourceStatus, **fields) -> Source:
        return self._update(status=status, **fields)

    def stored_original(self, source: Source) -> Source | None:
        with session_scope(self.database_url) as session:
            return repository.stored_original(session, source)

    def duplicate(self, source: Source, original: Source) -> SourceStatus:
        self._update(**repository.duplicate_fields(source, original))
        return SourceStatus.duplicate

    def parsed(self, document: Document, fetched: FetchedContent) -> None:
        source = self.reload()
        self._update(
            status=SourceStatus.chunking,
            title=source.title or document.title or fetched.filename,
            content_format=document.content_format,
            content_type=fetched.content_type,
            page_count=document.metadata.get("page_count"),
            warnings=list(document.warnings),
            extracted_text=document.text,
            # What the caller said about the source wins over what the parser found.
            metadata_={**document.metadata, **source.metadata_},
        )

    def embedded(self, done: int) -> None:
        self._update(progress_current=done)

    def stored(self, chunks: list[Chunk], *, with_warnings: bool) -> SourceStatus:
        status = SourceStatus.partial if with_warnings else SourceStatus.completed
        self._update(
            status=status,
            chunk_count=len(chunks),
            token_count=sum(c.token_count for c in chunks),
            progress_current=len(chunks),
            progress_total=len(chunks),
            error=None,
            error_code=None,
        )
        return status

    def fail(self, error: GristmillError) -> SourceStatus:
        self._update(status=SourceStatus.failed, error=error.message, error_code=error.code)
        return SourceStatus.failed
