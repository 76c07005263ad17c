"""The shapes callers hand to the use cases and get back, kept light (standard dataclasses, no
storage, no Prefect) so that the CLI's client mode can use them as they are."""

from dataclasses import dataclass, field
from typing import Any

from gristmill.documents import Origin


@dataclass
class SourceSpec:
    """One thing to ingest, as a caller submits it."""

    origin: Origin
    uri: str | None = None  # URL or local path
    data: bytes | None = None  # inline content or an uploaded file's bytes
    content_type: str | None = None
    title: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    inline: bool = False  # typed in a request body (the inline size limit applies) rather than uploaded
    # Agent memory: whose it is, who said it, what it is about (stored on its chunks, filterable).
    user_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    categories: list[str] = field(default_factory=list)
    replaces: str | None = None  # the source it replaces once stored (an upload's duplicate_handling=replace)


@dataclass
class SearchResult:
    """One chunk found by a search, best first."""

    chunk_id: str
    source_id: str
    title: str | None
    uri: str | None
    text: str
    score: float
    metadata: dict[str, Any]
