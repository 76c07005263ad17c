"""Sources after they are stored: edited (their chunks re-tagged, not re-embedded), deleted, retried,
and their originals handed back."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from gristmill.errors import Conflict, NotFound
from gristmill.file_types import format_mime_types
from gristmill.metadata import MEMORY_FIELDS, refuse_memory_field_keys
from gristmill.settings import Settings
from gristmill.usecases.libraries import refuse_writes_while_reindexing
from storage import repository
from storage.blobs import BlobStore
from storage.chunks import ChunkStore
from storage.tables import STORED_SOURCE_STATUSES, Library, Source, SourceStatus, utcnow

RETRYABLE_SOURCE_STATUSES = (SourceStatus.failed, SourceStatus.cancelled)


@dataclass(frozen=True)
class Original:
    data: bytes
    content_type: str
    filename: str | None


def update_source(
    session: Session, store: ChunkStore, library: Library, source: Source, changes: dict[str, Any]
) -> Source:
    """Apply `changes` (title; metadata as a merge patch, a null value removing its key; user_id,
    agent_id, role, categories) and re-tag the source's chunks to match, in one chunk-store commit:
    their text and vectors stay as they are."""
    refuse_writes_while_reindexing(session, library)
    if not source.status.is_final:
        raise Conflict("the source is still being processed; edit it when its job has finished", code="source_busy")
    refuse_memory_field_keys(changes.get("metadata") or {})
    before = {**source.metadata_, **source.memory_fields}
    metadata = dict(source.metadata_)
    for key, value in (changes.get("metadata") or {}).items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    fields: dict[str, Any] = {"metadata_": metadata}
    for name in ("title", *MEMORY_FIELDS):
        if name in changes:
            fields[name] = changes[name] if name != "categories" else list(changes[name] or [])
    for name, value in fields.items():
        setattr(source, name, value)
    if source.status in STORED_SOURCE_STATUSES:
        # Chunks first: should this fail, the row still says what the chunks say.
        store.retag_source(
            library.chunk_table, source.id, title=source.title, metadata_before=before,
            metadata_after={**source.metadata_, **source.memory_fields},
        )
    return repository.update_source(session, source.id, **fields)


def is_settled(session: Session, settings: Settings, source: Source) -> bool:
    """Nothing works on the source: it is final, or its job is final or lost (docs/job-states.md).
    A caller may delete or retry a settled source, so none stays stuck for good."""
    lease_cutoff = utcnow() - timedelta(seconds=settings.job_lease_seconds)
    return repository.source_is_settled(session, source, lease_cutoff)


def check_retryable(session: Session, settings: Settings, source: Source) -> None:
    """A failed or cancelled source may run again, and so may one stuck in a job that is over."""
    if source.status in RETRYABLE_SOURCE_STATUSES or (not source.status.is_final and is_settled(session, settings, source)):
        return
    if source.status.is_final:
        raise Conflict(f"only failed or cancelled sources can be retried; this one is {source.status.value}", code="not_retryable")
    raise Conflict("the source is still being processed by its job; cancel the job to retry it now", code="not_retryable")


def delete_source(
    session: Session, settings: Settings, store: ChunkStore, blobs: BlobStore, library: Library, source: Source
) -> None:
    """Remove a settled source: its chunks, its original, its row."""
    refuse_writes_while_reindexing(session, library)
    if not is_settled(session, settings, source):
        raise Conflict(
            "the source is still being processed; delete it when its job has finished, or cancel the job", code="source_busy"
        )
    store.delete_source(library.chunk_table, source.id)
    blobs.remove(source.blob_path)
    repository.delete_source(session, source)


def delete_by_external_id(
    session: Session, settings: Settings, store: ChunkStore, blobs: BlobStore, library: Library, external_id: str
) -> list[str]:
    """Delete every source of the library with `external_id`; their ids. 404 when there is none."""
    sources = repository.sources_with_external_id(session, library.id, external_id)
    if not sources:
        raise NotFound(f"no source of this library has external id {external_id!r}", code="source_not_found")
    busy = [s.id for s in sources if not is_settled(session, settings, s)]
    if busy:
        raise Conflict(
            f"source {busy[0]} with this external id is still being processed; delete it when its job has finished",
            code="source_busy",
            details={"source_ids": busy},
        )
    for source in sources:
        delete_source(session, settings, store, blobs, library, source)
    return [s.id for s in sources]


def original_of(source: Source, blobs: BlobStore) -> Original:
    """The bytes as submitted (or as fetched, for a URL), with their content type; 404 when none are kept."""
    if source.duplicate_of:
        raise NotFound(
            f"source {source.id} repeats source {source.duplicate_of} and kept no bytes of its own; "
            f"GET /v1/sources/{source.duplicate_of}/original",
            code="original_not_kept",
            details={"duplicate_of": source.duplicate_of},
        )
    data = blobs.read(source.blob_path)
    if data is None:
        raise NotFound(
            f"the original of source {source.id} is not kept (GRISTMILL_KEEP_ORIGINALS is off, or it was "
            "stored before originals were kept)",
            code="original_not_kept",
        )
    declared = (source.content_type or "").strip()
    fallback = format_mime_types(source.content_format)[0] if source.content_format else "application/octet-stream"
    return Original(data=data, content_type=declared or fallback, filename=source.filename)
