"""The removal stage: a stored source leaves search, and its row stays as the record of why.

Used where Gristmill itself decides a source is gone (a page a sync found missing, a source a
full-set declaration leaves out); a caller's own DELETE removes the row as well.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from gristmill.settings import Settings
from storage import repository
from storage.blobs import open_blob_store
from storage.chunks import open_chunk_store
from storage.db import session_scope
from storage.tables import SourceStatus


def remove_source(source_id: str, reason: str, job_id: str | None, settings: Settings) -> bool:
    """Delete the source's chunks, then record it `removed` under `job_id`; False when it is gone
    already or still being processed (it is left alone)."""
    with session_scope(settings.resolved_database_url) as session:
        source = repository.find_source(session, source_id)
        library = repository.find_library(session, source.library_id) if source else None
        if source is None or library is None or not source.status.is_final or source.status == SourceStatus.removed:
            return False
        # Chunks first: if this fails the source is still listed and stored, and a later run retries.
        open_chunk_store(settings).delete_source(library.chunk_table, source.id)
        blobs = repository.record_removal(session, source, reason, job_id)
    for blob in blobs:
        open_blob_store(settings).remove(blob)
    return True


# A retry helps when another writer held the table.
remove_task = task(name="remove", retries=2, retry_delay_seconds=[1, 3], cache_policy=NO_CACHE)(remove_source)
