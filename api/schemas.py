"""Request and response models of API v1."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from gristmill.embedding_models import MODEL_WINDOW_TOKENS
from gristmill.search_modes import DEFAULT_SEARCH_MODE, SearchMode
from gristmill.usecases.search import SearchFilter
from gristmill.usecases.shapes import SearchResult
from storage.tables import WebhookEventType


class Chunking(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(MODEL_WINDOW_TOKENS, ge=16, le=MODEL_WINDOW_TOKENS, description="Largest chunk, in model tokens.")
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
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunking: Chunking | None = None


class LibraryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None
    chunking: Chunking | None = Field(None, description="Applies to sources ingested from now on.")


class LibraryOut(BaseModel):
    id: str
    name: str
    description: str | None
    metadata: dict[str, Any]
    embedding_model: str
    embedding_dim: int
    chunking: Chunking
    source_count: int
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class LibraryList(BaseModel):
    data: list[LibraryOut]


class IngestItem(BaseModel):
    """One source: inline `content` or a `url`, exactly one."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(None, min_length=1, description="Text to ingest (at most 1 MB).")
    url: HttpUrl | None = Field(None, description="http(s) URL to fetch and ingest.")
    content_type: str | None = Field(None, max_length=200, description="MIME type; sniffed when omitted.")
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


class ErrorBody(BaseModel):
    type: str
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ItemResultOut(BaseModel):
    index: int
    source_id: str | None
    status: Literal["queued", "duplicate", "error"]
    duplicate_of: str | None = None
    error: ErrorBody | None = None


class IngestAccepted(BaseModel):
    job_id: str | None
    status: str
    source_ids: list[str]
    results: list[ItemResultOut]


class Progress(BaseModel):
    current: int
    total: int


class JobCounts(BaseModel):
    completed: int
    partial: int
    failed: int
    duplicate: int


class JobOut(BaseModel):
    id: str
    library_id: str
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
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    content: str | None = Field(None, description="Extracted text, with ?include=content.")


class SourcePage(BaseModel):
    data: list[SourceOut]
    next_cursor: str | None


class ChunkOut(BaseModel):
    chunk_id: str
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
    filter: SearchFilter | None = None


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
