"""Search over one library: embed the query with the library's model (unless keyword-only), then ask
the chunk store."""

from pydantic import BaseModel, ConfigDict, Field

from gristmill.errors import InvalidRequest
from gristmill.metadata import MEMORY_FIELDS
from gristmill.search_modes import DEFAULT_SEARCH_MODE, SearchMode
from gristmill.settings import Settings
from gristmill.usecases.shapes import SearchResult
from storage.chunks import ChunkStore, SearchHit
from storage.tables import Library
from tasks.embed import embed_texts

Scalar = str | int | float | bool


# What a hit is returned with: the chunks before and after it in its source, as one span of the
# document's text. The model reads a chunk (at most its 256-token window); a reader, or an LLM, often
# needs what comes next. Chosen by bench/bench_retrieval.py (docs/architecture.md, "Granularity").
NEIGHBOURS = (0, 1)


class SearchFilter(BaseModel):
    """Every field given must match; a list matches any of its values."""

    model_config = ConfigDict(extra="forbid")

    source_ids: list[str] | None = Field(None, description="Only chunks of these sources.")
    external_ids: list[str] | None = Field(None, description="Only chunks of sources with these external ids.")
    user_id: str | list[str] | None = Field(None, description="Only sources of this user (or of any of these).")
    agent_id: str | list[str] | None = Field(None, description="Only sources of this agent (or of any of these).")
    role: str | list[str] | None = Field(None, description="Only sources with this speaker role (or any of these).")
    categories: list[str] | None = Field(None, description="Only sources in at least one of these categories.")
    metadata: dict[str, Scalar | list[Scalar]] | None = Field(
        None,
        description="Only chunks whose source or chunk metadata has all these keys, each with the value given "
        "or, for a list, with one of its values.",
    )

    def tag_filter(self) -> dict[str, Scalar | list[Scalar]]:
        """The metadata filter and the memory fields, as the key/value pairs chunks carry as tags."""
        metadata = dict(self.metadata or {})
        reserved = sorted(set(metadata) & set(MEMORY_FIELDS))
        if reserved:
            raise InvalidRequest(
                f"filter {reserved[0]!r} is a field of its own: give it as filter.{reserved[0]}, not inside metadata",
                code="invalid_filter",
            )
        for name in MEMORY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                metadata[name] = value
        return metadata


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
    vector = None if mode == "keyword" else embed_texts([query], settings, model=library.embedding_model)[0]
    hits: list[SearchHit] = store.search(
        library.chunk_table,
        query_text=query,
        query_vector=vector,
        mode=mode,
        limit=limit,
        source_ids=filter.source_ids,
        external_ids=filter.external_ids,
        metadata=filter.tag_filter(),
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
