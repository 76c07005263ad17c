"""The upsert stage: store a source's chunks, replacing what its external id stood for before."""

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from gristmill.documents import Chunk
from gristmill.settings import Settings
from storage import repository
from storage.blobs import open_blob_store
from storage.chunks import ChunkRow, ChunkStore, open_chunk_store
from storage.db import session_scope
from storage.tables import Library, Source


def upsert_chunks(
    store: ChunkStore,
    library: Library,
    source: Source,
    chunks: list[Chunk],
    vectors: np.ndarray,
    *,
    table: str | None = None,
    dim: int | None = None,
) -> None:
    """Make `chunks` the source's only chunks, in one commit of the chunk store.

    With an external id (or a source it `replaces`), the chunks of the sources it replaces go in that
    same commit, so a reader sees the old version or the new one, never both and never neither. The
    chunks carry the source's title as it was recorded once parsed (the caller's, else the
    document's, else the file name), its metadata and its user_id, agent_id, role and categories.
    `table` and `dim` (default: the library's own) name another chunk table, as a re-index to
    another model fills one.
    """
    source_metadata = {**source.metadata_, **source.memory_fields}
    rows = [
        ChunkRow(
            chunk_index=chunk.index,
            text=chunk.text,
            vector=vector,
            workspace_id=library.workspace_id,
            title=source.title,
            uri=source.uri,
            heading_path=chunk.heading_path,
            page_start=chunk.page_start,
            page_end=chunk.page_end,
            char_start=chunk.char_start,
            char_end=chunk.char_end,
            metadata=chunk.metadata,
            source_metadata=source_metadata,
            context=chunk.context,
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    store.replace_source(
        table or library.chunk_table,
        source.id,
        rows,
        external_id=source.external_id,
        dim=dim or library.embedding_dim,
        replaces=[source.replaces] if source.replaces else (),
    )


def upsert_source(
    library: Library, source: Source, chunks: list[Chunk], vectors: np.ndarray, settings: Settings
) -> None:
    upsert_chunks(open_chunk_store(settings), library, source, chunks, vectors)
    if source.external_id or source.replaces:
        with session_scope(settings.resolved_database_url) as session:
            blobs = repository.delete_replaced_sources(
                session, library.id, source.external_id, keep_source_id=source.id,
                also=[source.replaces] if source.replaces else (),
            )
        for blob in blobs:
            open_blob_store(settings).remove(blob)


# A retry helps when another writer held the table; a bad row fails the same way again, but is rare.
upsert_task = task(name="upsert", retries=2, retry_delay_seconds=[1, 3], cache_policy=NO_CACHE)(upsert_source)
