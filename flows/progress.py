"""Writes one source's stage, progress and outcome to the SQL tables as the flow run goes."""

from gristmill.documents import Chunk, Document, FetchedContent
from gristmill.errors import GristmillError
from storage import repository
from storage.blobs import remove_blob
from storage.db import session_scope
from storage.tables import Source, SourceStatus


class SourceProgress:
    def __init__(self, database_url: str, source_id: str) -> None:
        self.database_url = database_url
        self.source_id = source_id

    def _update(self, **fields) -> Source:
        with session_scope(self.database_url) as session:
            source = repository.update_source(session, self.source_id, **fields)
            if source.status.is_final and source.job_id:
                repository.refresh_job_progress(session, source.job_id)
        if source.status in (SourceStatus.completed, SourceStatus.partial, SourceStatus.duplicate):
            remove_blob(source.blob_path)
        return source

    def reload(self) -> Source:
        with session_scope(self.database_url) as session:
            return session.get(Source, self.source_id)

    def stage(self, status: SourceStatus, **fields) -> None:
        self._update(status=status, **fields)

    def find_original(self, library_id: str, source: Source, content_hash: str) -> Source | None:
        """The stored source this one repeats, if any: then nothing is stored twice.

        With an external id, only the source it would replace counts, and only when unchanged;
        without one, any earlier source of the library with the same bytes does.
        """
        with session_scope(self.database_url) as session:
            if source.external_id:
                current = repository.current_source_for_external_id(
                    session, library_id, source.external_id, exclude_source_id=source.id
                )
                return current if current and current.content_hash == content_hash else None
            original = repository.find_stored_duplicate(
                session, library_id, content_hash, exclude_source_id=source.id
            )
        # Two equal sources in flight at once: the one created first is the original.
        if original and (original.created_at, original.id) < (source.created_at, source.id):
            return original
        return None

    def duplicate(self, original: Source) -> SourceStatus:
        self._update(
            status=SourceStatus.duplicate,
            duplicate_of=original.id,
            chunk_count=0,
            title=original.title,
            content_format=original.content_format,
        )
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
