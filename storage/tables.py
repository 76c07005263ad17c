"""SQLModel tables: workspaces, API keys, libraries, sources, ingest jobs and webhooks.

Schema changes go through an Alembic migration in `storage/migrations/versions/` as well.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from gristmill.metadata import MEMORY_FIELDS


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time made timezone-aware again (SQLite keeps no zone; every time we store is UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class SourceStatus(StrEnum):
    pending = "pending"
    fetching = "fetching"
    parsing = "parsing"
    chunking = "chunking"
    embedding = "embedding"
    completed = "completed"
    partial = "partial"  # stored, with warnings (e.g. pages without text)
    failed = "failed"
    duplicate = "duplicate"  # same content already in the library; nothing stored
    removed = "removed"  # was stored; removed with its chunks by a sync or a full-set declaration (`error` says why)
    cancelled = "cancelled"  # its job was cancelled before it was stored; nothing of it is stored

    @property
    def is_final(self) -> bool:
        return self in FINAL_SOURCE_STATUSES


FINAL_SOURCE_STATUSES = frozenset(
    {
        SourceStatus.completed,
        SourceStatus.partial,
        SourceStatus.failed,
        SourceStatus.duplicate,
        SourceStatus.removed,
        SourceStatus.cancelled,
    }
)
STORED_SOURCE_STATUSES = (SourceStatus.completed, SourceStatus.partial)


class JobKind(StrEnum):
    ingest = "ingest"  # fetch, parse, chunk, embed and store the job's sources
    reindex = "reindex"  # re-chunk and re-embed every stored source of the library
    prune = "prune"  # remove the sources a full-set declaration leaves out


class JobStatus(StrEnum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    partial = "partial"  # some sources failed or finished with warnings
    failed = "failed"
    cancelled = "cancelled"  # a caller cancelled it; the sources it had not stored are `cancelled`

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.completed, JobStatus.partial, JobStatus.failed, JobStatus.cancelled)


class JobTrigger(StrEnum):
    request = "request"  # a caller submitted it (API, CLI, a retry)
    sync = "sync"  # the scheduled URL re-sync: unchanged sources are forgotten and announce nothing


class KeyState(StrEnum):
    active = "active"
    revoked = "revoked"
    expired = "expired"


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    prefix: str = Field(max_length=16)  # shown in listings so users can tell keys apart
    key_hash: str = Field(index=True, unique=True, max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    name: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None  # none: valid until revoked

    def state(self, now: datetime) -> "KeyState":
        if self.revoked_at is not None:
            return KeyState.revoked
        if self.expires_at is not None and as_utc(self.expires_at) <= now:
            return KeyState.expired
        return KeyState.active


class Library(SQLModel, table=True):
    __tablename__ = "libraries"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_library_workspace_name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    name: str = Field(max_length=200)
    description: str | None = None
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    instructions: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    embedding_model: str
    embedding_dim: int
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    # The chunk store table holding the library's vectors; a re-index to another model fills a new one
    # and switches to it when done. None: the first table, named by the library id.
    chunk_table_key: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def chunk_table(self) -> str:
        """The key the chunk store knows this library's current table by."""
        return self.chunk_table_key or self.id

    @property
    def chunk_tables(self) -> tuple[str, str]:
        """Both tables a library may own: its first, and the one a re-index to another model fills."""
        return self.id, f"{self.id}_r"

    @property
    def next_chunk_table(self) -> str:
        """The table a re-index to another model fills: whichever of the two is not current."""
        first, second = self.chunk_tables
        return second if self.chunk_table == first else first


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    library_id: str = Field(foreign_key="libraries.id", index=True)
    # The job that last processed it; a job's sources are the ones that name it here.
    job_id: str | None = Field(default=None, index=True)
    title: str | None = None
    origin: str  # inline | file | url
    uri: str | None = None  # file path or URL as given
    blob_path: str | None = None  # where inline or uploaded bytes wait for the flow run
    content_type: str | None = None  # declared or detected MIME type
    content_format: str | None = None  # pdf, docx, html, markdown, text, csv, json, code
    external_id: str | None = Field(default=None, index=True, max_length=255)
    content_hash: str | None = Field(default=None, index=True, max_length=64)
    size_bytes: int | None = None
    status: SourceStatus = Field(default=SourceStatus.pending, index=True)
    progress_current: int = 0
    progress_total: int = 0
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    error_code: str | None = None
    duplicate_of: str | None = None  # the source whose content this one repeats
    replaces: str | None = None  # the source this one replaces once stored (an upload with duplicate_handling=replace)
    token_count: int | None = None
    chunk_count: int | None = None
    page_count: int | None = None
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    # Agent memory: whose it is and what it is about; stored on the chunks (as tags) and filterable.
    user_id: str | None = Field(default=None, max_length=255)
    agent_id: str | None = Field(default=None, max_length=255)
    role: str | None = Field(default=None, max_length=100)
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Consecutive scheduled syncs on which this URL source's page answered 404 or 410.
    gone_syncs: int = 0
    extracted_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None

    @property
    def memory_fields(self) -> dict[str, Any]:
        """user_id, agent_id, role and categories, those that are set: what the chunks carry besides metadata."""
        return {name: getattr(self, name) for name in MEMORY_FIELDS if getattr(self, name)}

    @property
    def filename(self) -> str | None:
        """The name that hints at the format: a file's own name, else the title an inline source was given."""
        return file_name(self.origin, self.uri, self.title)


def file_name(origin: str, uri: str | None, title: str | None) -> str | None:
    if origin == "file" and uri:
        return PurePosixPath(uri).name
    return title


class IngestJob(SQLModel, table=True):
    __tablename__ = "ingest_jobs"

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    library_id: str = Field(foreign_key="libraries.id", index=True)
    kind: JobKind = Field(default=JobKind.ingest, sa_column=Column(String(20), nullable=False, server_default="ingest"))
    # What a reindex or prune job was asked to do (the target model, the declared external ids).
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: JobStatus = Field(default=JobStatus.pending, index=True)
    progress_current: int = 0
    progress_total: int = 0
    completed_count: int = 0
    partial_count: int = 0
    failed_count: int = 0
    duplicate_count: int = 0
    removed_count: int = 0
    cancelled_count: int = 0
    chunk_count: int = 0
    flow_run_id: str | None = Field(default=None, index=True)
    # Renewed by the running flow run (flows/heartbeat.py); a processing job whose heartbeat is older
    # than the lease lost its process, and the reconciler runs it again (docs/job-states.md).
    heartbeat_at: datetime | None = None
    attempts: int = 0  # flow runs that have started working on the job
    error: str | None = None
    trigger: JobTrigger = Field(default=JobTrigger.request)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


# --- webhooks: subscriptions, the outbox of events, one delivery per event and subscription ---------


class WebhookEventType(StrEnum):
    source_ingested = "source_ingested"  # a source reached a final state
    job_finished = "job_finished"  # a job reached a final state


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its first or next attempt
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # given up: every attempt failed, or the receiver's address is refused


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    library_id: str | None = Field(default=None, foreign_key="libraries.id", index=True)  # None: the whole workspace
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Kept as given: signing needs it back, so it cannot be hashed like an API key; the API never shows it again.
    secret: str = Field(max_length=256)
    description: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """The outbox: written in the transaction that records the final state it announces."""

    __tablename__ = "webhook_events"

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = Field(index=True)
    library_id: str | None = None  # no foreign key: an event outlives the library it came from
    type: WebhookEventType
    subject_id: str = Field(index=True)  # the source's or the job's id
    body: str = Field(sa_column=Column(Text, nullable=False))  # the JSON sent, byte for byte, on every attempt
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_log", "subscription_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    subscription_id: str = Field(foreign_key="webhook_subscriptions.id")
    event_id: str = Field(foreign_key="webhook_events.id", index=True)
    event_type: WebhookEventType
    status: DeliveryStatus = Field(default=DeliveryStatus.pending)
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime = Field(default_factory=utcnow)
    # Who is sending it (a delivery run's claim) and until when; a claim that lapses is anyone's again.
    claim_token: str | None = None
    claimed_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
