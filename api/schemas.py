"""Request and response models of API v1."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Discriminator, Field, HttpUrl, Tag, field_validator, model_validator

from gristmill.embedding_models import MAX_CHUNK_TOKENS, MODEL_WINDOW_TOKENS
from gristmill.http_errors import UNION_TAG_PREFIX
from gristmill.search_modes import DEFAULT_SEARCH_MODE, SearchMode
from gristmill.usecases.search import SearchFilter
from gristmill.usecases.shapes import SearchResult
from storage.tables import WebhookEventType

# Names other services give fields that Gristmill calls otherwise: a 422 for an unknown field says
# which one it is here (the README's "coming from another service" table lists them all).
SEED_FIELD_NAMES = {
    "meta": "metadata",
    "contentType": "content_type",
    "externalId": "external_id",
    "fileName": "title",
    "file_name": "title",
    "name": "title",
    "source_url": "url",
    "format": "content_type",
    "options": "the library's chunking and embedding_model (processing is set per library), or metadata",
    "embedding": "embedding_model",
    "embedding_config": "embedding_model",
    "embedding_chunk_size": "chunking.max_tokens",
    "space_id": "the library in the path",
    "workspace_id": "the API key's workspace",
    "sources": "items",
    "folder_ids": "categories",
    "type": "url (a URL item needs no type)",
    "include_content": "include=content",
}
CATEGORY = Annotated[str, Field(min_length=1, max_length=100)]
# The path segment pydantic puts before the fields of one branch of a tagged union: the error
# handler leaves it out of the field path it shows.
UNION_TAG = UNION_TAG_PREFIX


class Chunking(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(
        MODEL_WINDOW_TOKENS,
        ge=16,
        le=MAX_CHUNK_TOKENS,
        description="Largest chunk, in model tokens; at most the window of the library's embedding model "
        f"({MODEL_WINDOW_TOKENS} for the packaged all-MiniLM-L6-v2).",
    )
    overlap_tokens: int = Field(32, ge=0, le=128, description="Tokens repeated between pieces of a split block.")

    @model_validator(mode="after")
    def _overlap_below_max(self) -> "Chunking":
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


class LibraryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    instructions: str | None = Field(None, max_length=20_000, description="How an agent should use the library.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding_model: str | None = Field(
        None, max_length=200, description="One of GET /v1/embedding-models; default: the service's default model."
    )
    chunking: Chunking | None = None


class LibraryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    instructions: str | None = Field(None, max_length=20_000)
    metadata: dict[str, Any] | None = None
    embedding_model: str | None = Field(
        None, max_length=200, description="Must be the library's model: another one is set by POST .../reindex (409)."
    )
    chunking: Chunking | None = Field(None, description="Applies to sources ingested from now on; a reindex applies it to the rest.")


class LibraryOut(BaseModel):
    id: str
    name: str
    description: str | None
    instructions: str | None
    metadata: dict[str, Any]
    embedding_model: str
    embedding_dim: int
    compatible: bool = Field(description="Whether the library embeds with the service's current default model.")
    chunking: Chunking
    source_count: int
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class LibraryList(BaseModel):
    data: list[LibraryOut]
    has_more: bool = Field(False, description="More libraries follow the last one (page on with after= or before=).")


class LibraryBulk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    libraries: list[LibraryCreate] = Field(min_length=1, max_length=100)


class LibraryBulkResult(BaseModel):
    data: list[LibraryOut]
    created: int
    updated: int


class ReindexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_model: str | None = Field(
        None, max_length=200, description="Re-embed with this model (one of GET /v1/embedding-models); default: the library's own."
    )


class PruneRequest(BaseModel):
    """The full set of external ids the library holds (or, with `prefix`, of those that start with it)."""

    model_config = ConfigDict(extra="forbid")

    external_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(max_length=100_000)
    prefix: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Only sources whose external id starts with this are considered; without it every source of "
        "the library is, those without an external id too.",
    )


class EmbeddingModelOut(BaseModel):
    name: str
    dimensions: int
    window_tokens: int
    default: bool


class EmbeddingModelList(BaseModel):
    data: list[EmbeddingModelOut]


class MemoryFields(BaseModel):
    """Whose a source is and what it is about: stored on its chunks and usable as search filters."""

    user_id: str | None = Field(None, min_length=1, max_length=255, description="The user the source is about or from.")
    agent_id: str | None = Field(None, min_length=1, max_length=255, description="The agent the source belongs to.")
    role: str | None = Field(None, min_length=1, max_length=100, description="Speaker role, e.g. user or assistant.")
    categories: list[CATEGORY] = Field(default_factory=list, max_length=20, description="Filterable labels.")


class IngestItem(MemoryFields):
    """One source: inline `content` or a `url`, exactly one."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(None, min_length=1, description="Text to ingest (at most 1 MB).")
    url: HttpUrl | None = Field(
        None,
        description="http(s) URL to fetch and ingest. Without an external_id, a URL the library has already is "
        "answered with its source (`existing`) and not fetched again; with one it is an upsert (fetched again).",
    )
    content_type: str | None = Field(
        None,
        max_length=200,
        description="MIME type, or a short name: text, markdown, html, json, csv, pdf, docx; sniffed when omitted.",
    )
    title: str | None = Field(None, max_length=500)
    external_id: str | None = Field(
        None, min_length=1, max_length=255, description="Upsert key: replaces the source with this id."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _content_or_url(self) -> "IngestItem":
        if (self.content is None) == (self.url is None):
            raise ValueError("give exactly one of 'content' or 'url'")
        if self.url is not None and self.url.scheme not in ("http", "https"):
            raise ValueError("url must be http or https")
        return self


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[IngestItem] = Field(min_length=1, max_length=100)


def _ingest_body_kind(body: Any) -> str:
    # A body with `items` is a batch, anything else one item: errors then name the real cause.
    return f"{UNION_TAG}batch" if isinstance(body, dict) and "items" in body else f"{UNION_TAG}item"


IngestBody = Annotated[
    Annotated[IngestBatch, Tag(f"{UNION_TAG}batch")] | Annotated[IngestItem, Tag(f"{UNION_TAG}item")],
    Discriminator(_ingest_body_kind),
]


class UploadForm(MemoryFields):
    """The multipart form of POST /v1/libraries/{library_id}/files: files, or one `url`."""

    model_config = ConfigDict(extra="forbid")

    file: list[UploadFile] = Field(default_factory=list, description="One or more files.")
    url: HttpUrl | None = Field(None, description="An http(s) URL to fetch instead of files.")
    content_type: str | None = Field(None, max_length=200, description="As for items; applies to every file.")
    external_id: str | None = Field(None, min_length=1, max_length=255)
    title: str | None = Field(None, max_length=500)
    metadata: str | None = Field(None, description="JSON object stored with each file's source.")

    @field_validator("categories", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # `-F categories=finance,reports` as Memsolus's clients send it, or the field repeated.
        items = value if isinstance(value, list) else [value]
        return [part.strip() for item in items for part in str(item).split(",") if part.strip()]

    @model_validator(mode="after")
    def _files_or_url(self) -> "UploadForm":
        if bool(self.file) == bool(self.url):
            raise ValueError("give one or more 'file' fields, or a 'url'")
        if self.url is not None and self.url.scheme not in ("http", "https"):
            raise ValueError("url must be http or https")
        return self


class ErrorBody(BaseModel):
    type: str
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ItemResultOut(BaseModel):
    index: int
    source_id: str | None = Field(description="The new source; for `existing`, the one already there.")
    status: Literal["queued", "duplicate", "existing", "error"] = Field(
        description="queued: a new source; duplicate: its content is stored already (`duplicate_of`); "
        "existing: the library has this URL, or (duplicate_handling=skip) a file of this name; error: refused."
    )
    duplicate_of: str | None = None
    error: ErrorBody | None = None


class IngestAccepted(BaseModel):
    job_id: str | None = Field(description="None when nothing new was stored (every item `existing`).")
    status: str
    source_ids: list[str]
    queued: int = Field(description="Items queued for processing.")
    failed: int = Field(description="Items refused (status `error`).")
    total: int = Field(description="Items in the request.")
    results: list[ItemResultOut]


class Progress(BaseModel):
    current: int
    total: int


class JobCounts(BaseModel):
    completed: int
    partial: int
    failed: int
    duplicate: int
    removed: int = Field(description="Sources the job removed (a sync's gone pages, a prune's left-out sources).")


class JobOut(BaseModel):
    id: str
    library_id: str
    kind: Literal["ingest", "reindex", "prune"]
    status: str
    progress: Progress
    source_ids: list[str]
    counts: JobCounts
    chunk_count: int
    error: str | None
    flow_run_id: str | None
    prefect_url: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class JobPage(BaseModel):
    data: list[JobOut]
    total: int
    page: int
    page_size: int


class SourceOut(BaseModel):
    id: str
    library_id: str
    job_id: str | None
    title: str | None
    origin: str
    uri: str | None
    content_type: str | None
    content_format: str | None
    external_id: str | None
    content_hash: str | None
    size_bytes: int | None
    status: str
    progress: Progress
    warnings: list[str]
    error: str | None
    error_code: str | None
    duplicate_of: str | None
    token_count: int | None
    chunk_count: int | None
    page_count: int | None
    metadata: dict[str, Any]
    user_id: str | None
    agent_id: str | None
    role: str | None
    categories: list[str]
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    content: str | None = Field(None, description="Extracted text, with ?include=content.")


class SourceUpdate(BaseModel):
    """Fields to change; the source's chunks are re-tagged to match, not re-embedded."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    metadata: dict[str, Any] | None = Field(None, description="Merged into the metadata; a key set to null is removed.")
    user_id: str | None = Field(None, min_length=1, max_length=255)
    agent_id: str | None = Field(None, min_length=1, max_length=255)
    role: str | None = Field(None, min_length=1, max_length=100)
    categories: list[CATEGORY] | None = Field(None, max_length=20)


class SourcePage(BaseModel):
    data: list[SourceOut]
    next_cursor: str | None


class ChunkOut(BaseModel):
    chunk_id: str
    source_id: str
    chunk_index: int
    text: str
    metadata: dict[str, Any]


class ChunkPage(BaseModel):
    data: list[ChunkOut]
    total: int


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    limit: int = Field(10, ge=1, le=100)
    mode: SearchMode = DEFAULT_SEARCH_MODE
    filter: SearchFilter | None = Field(
        None, examples=[{"user_id": "u1", "categories": ["finance"], "metadata": {"team": ["docs", "search"]}}]
    )
    min_score: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Leave out results scoring below this, on the mode's scale: cosine similarity (vector, "
        "-1 to 1), BM25 (keyword, 0 and up), 0.7 x cosine + 0.3 x BM25 relative to the query's best (hybrid, "
        "about 0 to 1).",
    )


class SearchResponse(BaseModel):
    results: list[SearchResult]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="http(s) URL that receives a signed POST for each event.")
    events: list[WebhookEventType] = Field(min_length=1, description="Events to receive.")
    secret: str | None = Field(
        None, min_length=16, max_length=256, description="Key that signs each delivery; one is made when omitted."
    )
    library_id: str | None = Field(None, description="Only this library's events; the whole workspace's when omitted.")
    description: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _http_only(self) -> "WebhookCreate":
        if self.url.scheme not in ("http", "https"):
            raise ValueError("url must be http or https")
        if len(str(self.url)) > 2048:
            raise ValueError("url must be at most 2048 characters")
        return self


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    library_id: str | None
    description: str | None
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing key; this answer is the only one that shows it.")


class WebhookList(BaseModel):
    data: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="Also sent as the Gristmill-Event-Id header: the same on every attempt.")
    event_type: str
    subject_id: str = Field(description="The source or job the event is about.")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    created_at: datetime
    updated_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    total: int
    page: int
    page_size: int
