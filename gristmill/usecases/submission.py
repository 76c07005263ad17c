"""Turning what a caller submits (inline text, uploads, URLs, local files) into a job and its sources.

Shared by the REST API and the standalone CLI. Checks that need only the request (size, type,
duplicate inline content) happen here, so the caller hears about them at once; everything else
happens in the flow run.
"""

import hashlib
from dataclasses import dataclass
from typing import Literal

from sqlmodel import Session

from connectors.outbound import policy_for
from gristmill.documents import FetchedContent
from gristmill.errors import GristmillError, PayloadTooLarge
from gristmill.settings import Settings
from gristmill.usecases.shapes import SourceSpec
from storage import repository
from storage.blobs import write_blob
from storage.tables import IngestJob, Library, Source, file_name, new_id
from tasks.parse import check_size, detect_format


@dataclass
class ItemResult:
    index: int
    status: Literal["queued", "duplicate", "error"]
    source_id: str | None = None
    duplicate_of: str | None = None
    error: GristmillError | None = None


@dataclass
class Submission:
    job: IngestJob | None  # None when no item was accepted
    results: list[ItemResult]

    @property
    def queued_source_ids(self) -> list[str]:
        return [r.source_id for r in self.results if r.status == "queued" and r.source_id]


def submit(
    session: Session, settings: Settings, library: Library, specs: list[SourceSpec], *, keep_duplicates: bool = True
) -> Submission:
    """Store a job with one source per accepted spec; bytes wait in the blob folder for the flow run.

    Duplicates found now are kept as `duplicate` sources of the job, so its counts show them, unless
    `keep_duplicates` is false (a single-item request answered 409 leaves nothing behind).
    """
    results: list[ItemResult] = []
    sources: list[Source] = []
    for index, spec in enumerate(specs):
        try:
            source, result = _accept(session, settings, library, spec, index)
        except GristmillError as error:
            results.append(ItemResult(index=index, status="error", error=error))
            continue
        if result.status == "duplicate" and not keep_duplicates:
            result.source_id = None
        else:
            sources.append(source)
        results.append(result)
    job = repository.create_job(session, library, sources) if sources else None
    return Submission(job=job, results=results)


def url_external_id(url: str) -> str:
    """A URL source's upsert key when the caller gives none: the URL itself (hashed past 255 chars)."""
    return url if len(url) <= 255 else "url:" + hashlib.sha256(url.encode()).hexdigest()


def _accept(
    session: Session, settings: Settings, library: Library, spec: SourceSpec, index: int
) -> tuple[Source, ItemResult]:
    if spec.origin == "url" and spec.uri:
        policy_for(settings).check_url(spec.uri)  # what can be told now; the fetch checks the address it connects to
        if not spec.external_id:
            # Ingesting a URL again updates its source instead of adding a second copy; the re-sync relies on it.
            spec.external_id = url_external_id(spec.uri)
    source = Source(
        id=new_id(),
        workspace_id=library.workspace_id,
        library_id=library.id,
        origin=spec.origin,
        uri=spec.uri,
        content_type=spec.content_type,
        title=spec.title,
        external_id=spec.external_id,
        metadata_=spec.metadata,
    )
    if spec.data is None:
        return source, ItemResult(index=index, status="queued", source_id=source.id)

    if spec.inline and len(spec.data) > settings.max_inline_bytes:
        raise PayloadTooLarge(
            f"inline content is {len(spec.data):,} bytes; the limit is {settings.max_inline_bytes:,} bytes",
            code="content_too_large",
        )
    filename = file_name(spec.origin, spec.uri, spec.title)
    fmt = detect_format(FetchedContent(data=spec.data, content_type=spec.content_type, uri=None, filename=filename))
    check_size(fmt, len(spec.data), settings)
    source.content_format = fmt
    source.size_bytes = len(spec.data)
    source.content_hash = hashlib.sha256(spec.data).hexdigest()

    original = repository.stored_original(session, source)
    if original is not None:
        for name, value in repository.duplicate_fields(source, original).items():
            setattr(source, name, value)
        return source, ItemResult(index=index, status="duplicate", source_id=source.id, duplicate_of=original.id)

    source.blob_path = write_blob(settings.blob_dir, source.id, spec.data)
    return source, ItemResult(index=index, status="queued", source_id=source.id)
