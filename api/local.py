"""The CLI's standalone mode: the same submission, flow and search as the service, in this process."""

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.processes import embeddings_available
from api.search_service import SearchResult, search_library
from api.submission import SourceSpec, submit
from gristmill.errors import NotFound
from gristmill.settings import Settings, get_settings
from storage import repository
from storage.chunks import open_chunk_store
from storage.db import migrate, session_scope
from storage.tables import IngestJob, Library, Source
from tasks.parse import SUPPORTED_EXTENSIONS

console = Console(stderr=True)


def collect_specs(
    inputs: list[str], *, external_id: str | None, title: str | None, metadata: dict[str, Any]
) -> tuple[list[SourceSpec], list[str]]:
    """Files, folders (recursively, supported extensions only, hidden entries skipped) and URLs."""
    specs: list[SourceSpec] = []
    skipped: list[str] = []
    for item in inputs:
        if urlparse(item).scheme in ("http", "https"):
            specs.append(SourceSpec(origin="url", uri=item, title=title, external_id=external_id, metadata=metadata))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if file.suffix.lower() not in SUPPORTED_EXTENSIONS:
                    skipped.append(str(file))
                    continue
                specs.append(SourceSpec(origin="file", uri=str(file.resolve()), metadata=metadata))
        else:
            # A missing or unsupported file is reported as a failed source with its reason.
            specs.append(
                SourceSpec(
                    origin="file",
                    uri=str(path.resolve()),
                    title=title,  # else the document's own title, else its file name
                    external_id=external_id,
                    metadata=metadata,
                )
            )
    return specs, skipped


def _open(settings: Settings) -> None:
    migrate(settings.resolved_database_url)


def _library(settings: Settings, name: str, *, create: bool) -> Library:
    with session_scope(settings.resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        library = repository.find_library_by_name(session, workspace.id, name)
        if library is None and create:
            library = repository.create_library(
                session,
                workspace.id,
                name=name,
                embedding_model=settings.embedding_model,
                embedding_dim=settings.embedding_dim,
                chunk_max_tokens=settings.chunk_max_tokens,
                chunk_overlap_tokens=settings.chunk_overlap_tokens,
            )
        if library is None:
            raise NotFound(f"no library named {name!r}", code="library_not_found")
        return library


def ingest(library_name: str, specs: list[SourceSpec], *, show_progress: bool) -> dict[str, Any]:
    settings = get_settings()
    _open(settings)
    library = _library(settings, library_name, create=True)
    with session_scope(settings.resolved_database_url) as session:
        submission = submit(session, settings, library, specs)
    errors = [
        {"index": r.index, "input": specs[r.index].uri or specs[r.index].title, "error": r.error.to_dict()}
        for r in submission.results
        if r.error is not None
    ]
    job_id = submission.job.id if submission.job else None
    if submission.queued_source_ids and job_id:
        from flows.ingest import ingest_job  # Prefect is imported only when a job runs

        with embeddings_available(settings):
            if show_progress:
                _run_with_progress(settings, job_id, lambda: ingest_job(job_id))
            else:
                ingest_job(job_id)
    return _summary(settings, job_id, errors)


def _run_with_progress(settings: Settings, job_id: str, run) -> None:
    done = threading.Event()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        sources = progress.add_task("sources done", total=None)
        chunks = progress.add_task("chunks embedded", total=None)

        def poll() -> None:
            while not done.wait(0.5):
                _refresh_progress(settings, job_id, progress, sources, chunks)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            run()
        finally:
            done.set()
            poller.join()
            _refresh_progress(settings, job_id, progress, sources, chunks)


def _refresh_progress(settings: Settings, job_id: str, progress: Progress, sources_task, chunks_task) -> None:
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(IngestJob, job_id)
        rows = repository.job_sources(session, job)
    progress.update(sources_task, completed=job.progress_current, total=job.progress_total)
    progress.update(
        chunks_task,
        completed=sum(s.progress_current for s in rows),
        total=sum(s.progress_total for s in rows) or None,
    )


def _summary(settings: Settings, job_id: str | None, errors: list[dict]) -> dict[str, Any]:
    counts = {"completed": 0, "partial": 0, "failed": 0, "duplicate": 0}
    sources: list[dict[str, Any]] = []
    status = "failed" if errors else "completed"
    if job_id:
        with session_scope(settings.resolved_database_url) as session:
            job = session.get(IngestJob, job_id)
            status = job.status.value
            for source in repository.job_sources(session, job):
                counts[source.status.value] = counts.get(source.status.value, 0) + 1
                sources.append(_source_line(source))
    return {"job_id": job_id, "status": status, "counts": counts, "sources": sources, "errors": errors}


def _source_line(source: Source) -> dict[str, Any]:
    return {
        "source_id": source.id,
        "input": source.uri or source.title,
        "status": source.status.value,
        "chunks": source.chunk_count,
        "error": source.error,
        "warnings": source.warnings,
        "duplicate_of": source.duplicate_of,
    }


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"job {summary['job_id'] or '-'}: {summary['status']}")
    for column in ("input", "status", "chunks", "detail"):
        table.add_column(column, overflow="fold")  # a user must see the whole path and the whole error
    for line in summary["sources"]:
        detail = line["error"] or "; ".join(line["warnings"]) or (
            f"same content as {line['duplicate_of']}" if line["duplicate_of"] else ""
        )
        table.add_row(str(line["input"]), line["status"], str(line["chunks"] or 0), detail)
    for error in summary["errors"]:
        table.add_row(str(error["input"]), "error", "0", error["error"]["message"])
    Console().print(table)
    counts = ", ".join(f"{n} {name}" for name, n in summary["counts"].items())
    skipped = f", {len(summary['skipped'])} skipped (unsupported type)" if summary.get("skipped") else ""
    Console().print(f"{counts}{skipped}")


def search(library_name: str, query: str, *, limit: int, mode: str) -> list[SearchResult]:
    settings = get_settings()
    _open(settings)
    library = _library(settings, library_name, create=False)
    store = open_chunk_store(settings.resolved_lancedb_uri)
    if mode == "keyword":
        return search_library(settings, store, library, query, mode="keyword", limit=limit)
    with embeddings_available(settings):
        return search_library(settings, store, library, query, mode=mode, limit=limit)


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


def libraries() -> list[dict[str, Any]]:
    settings = get_settings()
    _open(settings)
    with session_scope(settings.resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        rows = repository.list_libraries(session, workspace.id)
        counts = repository.library_source_counts(session, [lib.id for lib in rows])
    return [
        {
            "id": lib.id,
            "name": lib.name,
            "description": lib.description,
            "sources": counts[lib.id][0],
            "chunks": counts[lib.id][1],
            "embedding_model": lib.embedding_model,
        }
        for lib in rows
    ]


def print_libraries(rows: list[dict[str, Any]]) -> None:
    table = Table()
    for column in ("name", "sources", "chunks", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], str(row["sources"]), str(row["chunks"]), row["description"] or "")
    Console().print(table)

