"""How the CLI shows its answers: tables on stdout, progress on stderr, the same for both backends."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gristmill.cli.backend import IngestSummary, LibraryLine
from gristmill.usecases.shapes import SearchResult

progress_console = Console(stderr=True)


@dataclass
class KeyRow:
    """A key as `gristmill keys list` shows it."""

    id: str
    prefix: str
    name: str | None
    workspace: str
    scopes: list[str]
    state: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, key: Any, workspace: str, now: datetime) -> "KeyRow":  # a storage ApiKey (standalone only)
        return cls(
            id=key.id, prefix=key.prefix, name=key.name, workspace=workspace, scopes=key.scopes, state=key.state(now).value,
            created_at=key.created_at, last_used_at=key.last_used_at, expires_at=key.expires_at,
        )


def print_keys(rows: list[KeyRow]) -> None:
    table = Table()
    for column in ("prefix", "workspace", "scopes", "name", "state", "created", "last used", "expires", "id"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.prefix + "...", row.workspace, ",".join(row.scopes), row.name or "", row.state,
            _minute(row.created_at), _minute(row.last_used_at), _minute(row.expires_at), row.id,
        )
    Console().print(table)


def _minute(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


def progress_bars(*, enabled: bool = True) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=progress_console, transient=False, disable=not enabled)


def print_summary(summary: IngestSummary) -> None:
    table = Table(title=f"job {summary.job_id or '-'}: {summary.status}")
    for column in ("input", "status", "chunks", "detail"):
        table.add_column(column, overflow="fold")  # a user must see the whole path and the whole error
    for line in summary.sources:
        detail = line.error or "; ".join(line.warnings) or (
            f"same content as {line.duplicate_of}" if line.duplicate_of else ""
        )
        table.add_row(str(line.input), line.status, str(line.chunks or 0), detail)
    for error in summary.errors:
        table.add_row(str(error.input), "error", "0", error.error["message"])
    Console().print(table)
    counts = ", ".join(f"{n} {name}" for name, n in summary.counts.items())
    skipped = f", {len(summary.skipped)} skipped (unsupported type)" if summary.skipped else ""
    Console().print(f"{counts}{skipped}")


def print_results(results: list[SearchResult]) -> None:
    table = Table()
    for column in ("#", "score", "title", "where", "text"):
        table.add_column(column)
    for rank, result in enumerate(results, 1):
        where = []
        if result.metadata.get("page_start"):
            where.append(f"p. {result.metadata['page_start']}")
        if result.metadata.get("heading_path"):
            where.append(" > ".join(result.metadata["heading_path"]))
        text = " ".join(result.text.split())
        table.add_row(str(rank), f"{result.score:.3f}", result.title or "", ", ".join(where), text[:160])
    Console().print(table)


def print_libraries(rows: list[LibraryLine]) -> None:
    table = Table()
    for column in ("name", "sources", "chunks", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, str(row.sources), str(row.chunks), row.description or "")
    Console().print(table)
