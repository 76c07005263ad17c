"""What the CLI asks of whoever does the work (this process, or a running service), and the answers.

Both backends give the same dataclasses, so one printer renders them and `--json` prints them as they are.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol

from gristmill.usecases.shapes import SearchResult, SourceSpec

SOURCE_OUTCOMES = ("completed", "partial", "failed", "duplicate")


@dataclass
class SourceLine:
    """One source of an ingest, as it ended."""

    source_id: str
    input: str | None  # the path or URL given, else the title
    status: str
    chunks: int | None
    error: str | None
    warnings: list[str]
    duplicate_of: str | None


@dataclass
class ItemError:
    """An input refused before it became a source."""

    index: int  # its position among the inputs
    input: str | None
    error: dict[str, Any]  # the error envelope's body: type, code, message, details


@dataclass
class IngestSummary:
    job_id: str | None  # comma-separated when a client sent several requests
    status: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCE_OUTCOMES, 0))
    sources: list[SourceLine] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files of folders that are of no supported type

    @property
    def succeeded(self) -> bool:
        return self.counts["failed"] == 0 and not self.errors


@dataclass
class LibraryLine:
    id: str
    name: str
    description: str | None
    sources: int
    chunks: int
    embedding_model: str


@dataclass
class JobLine:
    id: str
    status: str
    cancelled: int  # sources the cancel kept from being stored


class Backend(Protocol):
    def ingest(self, library: str, specs: list[SourceSpec], *, show_progress: bool) -> IngestSummary:
        """Ingest into the library (created if missing) and wait until every source has ended."""
        ...

    def search(self, library: str, query: str, *, limit: int, mode: str) -> list[SearchResult]: ...

    def libraries(self) -> list[LibraryLine]: ...

    def cancel_job(self, job_id: str) -> JobLine:
        """Cancel an unfinished job; a finished one is a Conflict (`job_finished`)."""
        ...
