"""The index stage: a library that has grown past exact vector search gets its vector index."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from gristmill.settings import Settings
from storage.chunks import IndexState, open_chunk_store


def needs_vector_index(library_id: str, settings: Settings) -> bool:
    """Cheap (a row count): true once, when the library first reaches `vector_index_min_rows` chunks."""
    return open_chunk_store(settings).needs_vector_index(
        library_id, settings.vector_index_min_rows
    )


def index_library(library_id: str, settings: Settings) -> IndexState:
    """Build the library's vector index if it is due and bring its other indexes up to date."""
    return open_chunk_store(settings).ensure_indexes(
        library_id, vector_index_min_rows=settings.vector_index_min_rows
    )


# A retry helps when a writer in another flow run committed meanwhile; the build is idempotent.
index_task = task(name="index", retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)(index_library)
