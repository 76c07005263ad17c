"""Request and response models of API v1."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, UploadFile
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    HttpUrl,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import core_schema

from gristmill.embedding_models import MAX_CHUNK_TOKENS, MODEL_WINDOW_TOKENS
from gristmill.errors import InvalidRequest
from gristmill.http_errors import UNION_TAG_PREFIX
from gristmill.metadata import CONTROL_CHARACTERS_PATTERN, check_metadata, check_plain_text
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
# The path segment pydantic puts before the fields of one branch of a tagged union: the error
# handler leaves it out of the field path it shows.
UNION_TAG = UNION_TAG_PREFIX


# --- what may be typed into a field ---------------------------------------------------------------


class _NoControlCharacters:
    """A string refused with a clear message when it holds a control character, declared in the
    OpenAPI as the pattern it must match (gristmill/metadata.py makes the one check)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_plain_text, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "pattern": CONTROL_CHARACTERS_PATTERN}


class _NoNul:
    """Free text (a description, a query): any character but NUL, which PostgreSQL cannot store."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_no_nul, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "pattern": "^[^\\x00]*$"}


def _plain_text(value: str) -> str:
    try:
        return check_plain_text(value, "the text")
    except InvalidRequest as error:
        raise ValueError(error.message) from None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"the text holds a NUL character at position {value.index(chr(0))}")
    return value


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_metadata(value)
    except InvalidRequest as error:
        raise ValueError(error.message) from None


def plain_text(*, min_length: int = 0, max_length: int) -> Any:
    """A name, title, id or type: bounded, without control characters."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), _NoControlCharacters()]


def free_text(*, min_length: int = 0, max_length: int) -> Any:
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), _NoNul()]


Name = plain_text(min_length=1, max_length=200)
Title = plain_text(max_length=500)
ExternalId = plain_text(min_length=1, max_length=255)
ContentType = plain_text(max_length=200)
Description = free_text(max_length=2000)
Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_metadata),
    Field(description="Free JSON object: at most 8 levels deep, 100 keys, 16 KB; keys without control characters."),
]


# --- the answers every operation declares ----------------------------------------------------------


class ErrorBody(BaseModel):
    type: str
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


ERROR_DESCRIPTIONS = {
    400: "The body cannot be parsed (not UTF-8, nested too deep), or a URL is one Gristmill does not fetch (`blocked_url`).",
    401: "Missing, unknown, revoked or expired API key.",
    403: "The API key lacks the scope this operation needs.",
    404: "Not found in the API key's workspace.",
    409: "Clashes with what is stored.",
    413: "The request body is over GRISTMILL_MAX_REQUEST_BYTES (GRISTMILL_MAX_UPLOAD_REQUEST_BYTES for uploads), or content is over its size limit.",
    415: "Unsupported content type.",
    422: "Invalid parameters or body; `details` names each problem.",
    429: "The API key's rate limit is spent; retry after `Retry-After` seconds.",
    502: "The embeddings endpoint refused the query.",
    503: "A service Gristmill depends on cannot be reached (embeddings, the rate-limit store).",
}

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests this API key may make per window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time when the oldest counted request leaves the window.", "schema": {"type": "integer"}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


# Past this, OFFSET overflows SQLite's 64-bit integer; 10,000 pages of 100 reach a million rows.
MAX_PAGE = 10_000
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def errors(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation can give, each in the one envelope: `responses=errors(401, 404)`."""
    described = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {status: {"model": ErrorEnvelope, "description": described[status]} for status in statuses}


def rate_limited(success: int, responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """`responses` of an operation that spends a rate limit: every answer may carry the quota's
    headers (all but those refused before the key is known), a 429 says when to retry."""
    declared: dict[int | str, dict[str, Any]] = {success: {"headers": RATE_LIMIT_HEADERS}}
    for status, response in responses.items():
        headers = {**RATE_LIMIT_HEADERS, **(RETRY_AFTER if status == 429 else {})}
        declared[status] = {**response, "headers": headers} if status not in (401, 403) else response
    return declared


CATEGORY = plain_text(min_length=1, max_length=100)
MemoryId = plain_text(min_length=1, max_length=255)
Role = plain_text(min_length=1, max_length=100)
ModelName = plain_text(max_length=200)
Instructions = free_text(max_length=20_000)


# --- libraries -----------------------------------------------------------------------------------



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

    name: Name
    description: Description | None = None
    instructions: Instructions | None = Field(None, description="How an agent should use the library.")
    metadata: Metadata = Field(default_factory=dict)
    embedding_model: ModelName | None = Field(
        None, description="One of GET /v1/embedding-models; default: the service's default model."
    )
    chunking: Chunking | None = None


class LibraryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    instructions: Instructions | None = None
    metadata: Metadata | None = None
    embedding_model: ModelName | None = Field(
        None, description="Must be the library's model: another one is set by POST .../reindex (409)."
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

    embedding_model: ModelName | None = Field(
        None, description="Re-embed with this model (one of GET /v1/embedding-models); default: the library's own."
    )


class PruneRequest(BaseModel):
    """The full set of external ids the library holds (or, with `prefix`, of those that start with it)."""

    model_config = ConfigDict(extra="forbid")

    external_ids: list[ExternalId] = Field(max_length=100_000)
    prefix: ExternalId | None = Field(
        None,
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

    user_id: MemoryId | None = Field(None, description="The user the source is about or from.")
    agent_id: MemoryId | None = Field(None, description="The agent the source belongs to.")
    role: Role | None = Field(None, description="Speaker role, e.g. user or assistant.")
    categories: list[CATEGORY] = Field(default_factory=list, max_length=20, description="Filterable labels.")


class IngestItem(MemoryFields):
    """One source: inline `content` or a `url`, exactly one."""

    # Exactly one of the two, as the OpenAPI says too (a JSON null is not offered: it means "absent").
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["content"]}, {"required": ["url"]}]})

    content: str | SkipJsonSchema[None] = Field(None, min_length=1, description="Text to ingest (at most 1 MB).")
    url: HttpUrl | SkipJsonSchema[None] = Field(
        None,
        description="http(s) URL to fetch and ingest. Without an external_id, a URL the library has already is "
        "answered with its source (`existing`) and not fetched again; with one it is an upsert (fetched again).",
        json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    )
    content_type: ContentType | None = Field(
        None,
        description="MIME type, or a short name: text, markdown, html, json, csv, pdf, docx; sniffed when omitted.",
    )
    title: Title | None = None
    external_id: ExternalId | None = Field(None, description="Upsert key: replaces the source with this id.")
    metadata: Metadata = Field(default_factory=dict)

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
    content_type: ContentType | None = Field(None, description="As for items; applies to every file.")
    external_id: ExternalId | None = None
    title: Title | None = None
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
    cancelled: int = Field(0, description="Sources the job's cancel kept from being stored.")


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

    title: Title | None = None
    metadata: Metadata | None = Field(None, description="Merged into the metadata; a key set to null is removed.")
    user_id: MemoryId | None = None
    agent_id: MemoryId | None = None
    role: Role | None = None
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

    query: free_text(min_length=1, max_length=4000)
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
    secret: plain_text(min_length=16, max_length=256) | None = Field(
        None, description="Key that signs each delivery; one is made when omitted."
    )
    library_id: str | None = Field(None, description="Only this library's events; the whole workspace's when omitted.")
    description: free_text(max_length=500) | None = None

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


# --- keys and workspaces (admin) -------------------------------------------------------------------


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class WorkspaceOut(BaseModel):
    id: str
    name: str
    created_at: datetime


class WorkspaceList(BaseModel):
    data: list[WorkspaceOut]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: str | None = Field(None, description="The workspace the key acts in; default the caller's own.")
    scopes: list[Literal["ingest.read", "ingest.write", "admin"]] = Field(min_length=1, max_length=3)
    name: Title | None = Field(None, description="What the key is for, shown in listings.")
    expires_at: datetime | None = Field(None, description="When the key stops working (in the future); none: until revoked.")


class KeyOut(BaseModel):
    id: str
    prefix: str = Field(description="The key's first characters, to tell keys apart; the key itself is never stored.")
    name: str | None
    workspace_id: str
    workspace_name: str
    scopes: list[str]
    state: Literal["active", "revoked", "expired"]
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute.")
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The new key, shown this once.")


class KeyList(BaseModel):
    data: list[KeyOut]


# --- health --------------------------------------------------------------------------------------


class HealthChecks(BaseModel):
    api: bool
    database: bool
    prefect: bool
    embeddings: bool


class Health(BaseModel):
    status: Literal["ok"]
    checks: HealthChecks


class HealthDown(BaseModel):
    status: Literal["unavailable"]
    checks: HealthChecks
    error: ErrorBody
