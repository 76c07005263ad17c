"""Search over one library: embed the query (unless keyword-only), then ask the chunk store."""


from pydantic import BaseModel, Field

from gristmill.search_modes import DEFAULT_SEARCH_MODE, SearchMode
from gristmill.settings import Settings
from gristmill.usecases.shapes import SearchResult
from storage.chunks import ChunkStore, SearchHit
from storage.tables import Library
from tasks.embed import embed_texts


# What a hit is returned with: the chunks before and after it in its source, as one span of the
# document's text. The model reads a chunk (at most its 256-token window); a reader, or an LLM, often
# needs what comes next. Chosen by bench/bench_retrieval.py (docs/architecture.md, "Granularity").
NEIGHBOURS = (0, 1)


class SearchFilter(BaseModel):
    source_ids: list[str] | None = Field(None, description="Only chunks of these sources.")
    external_ids: list[str] | None = Field(None, description="Only chunks of sources with these external ids.")
    metadata: dict[str, str | int | float | bool] | None = Field(
        None, description="Only chunks whose source or chunk metadata has all these key/value pairs."
    )


def search_library(
    settings: Settings,
    store: ChunkStore,
    library: Library,
    query: str,
    *,
    mode: SearchMode = DEFAULT_SEARCH_MODE,
    limit: int = 10,
    filter: SearchFilter | None = None,
    min_score: float | None = None,
) -> list[SearchResult]:
    """Best passages first: each hit chunk with its NEIGHBOURS, scored on its mode's scale
    (README, "Reading scores"); hits below `min_score` are left out."""
    filter = filter or SearchFilter()
    vector = None if mode == "keyword" else embed_texts([query], settings)[0]
    hits: list[SearchHit] = store.search(
        library.id,
        query_text=query,
        query_vector=vector,
        mode=mode,
        limit=limit,
        source_ids=filter.source_ids,
        external_ids=filter.external_ids,
        metadata=filter.metadata,
        min_score=min_score,
        neighbours=NEIGHBOURS,
    )
    return [
        SearchResult(
            chunk_id=hit.chunk_id,
            source_id=hit.source_id,
            title=hit.title,
            uri=hit.uri,
            text=hit.text,
            score=hit.score,
            metadata=hit.metadata,
        )
        for hit in hits
    ]
