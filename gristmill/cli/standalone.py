"""The CLI's standalone backend: the same submission, flow and search as the service, in this process.

Each command imports what only it needs when it runs (Prefect and the flows for an ingest, LanceDB
and the embeddings client for a search): a listing must not wait seconds for imports it never uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from gristmill.cli.backend import IngestSummary, ItemError, JobLine, LibraryLine, SourceLine
from gristmill.errors import NotFound
from gristmill.home import make_private
from gristmill.settings import Settings
from gristmill.usecases import libraries as library_cases
from gristmill.usecases.shapes import SearchResult, SourceSpec
from storage import repository
from storage.db import migrate, session_scope
from storage.tables import Library, Source

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class StandaloneBackend:
    """Works on the data under GRISTMILL_HOME in the default workspace, as `gristmill serve` would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        make_private(settings.home)
        migrate(settings.resolved_database_url)

    def ingest(self, library: str, specs: list[SourceSpec], *, show_progress: bool) -> IngestSummary:
        from gristmill.supervisor.processes import embeddings_available
        from gristmill.usecases.submission import submit

        target = self._library(library, create=True)
        with session_scope(self.settings.resolved_database_url) as session:
            submission = submit(session, self.settings, target, specs)
        errors = [
            ItemError(index=r.index, input=specs[r.index].uri or specs[r.index].title, error=r.error.to_dict())
            for r in submission.results
            if r.error is not None
        ]
        job_id = submission.job.id if submission.job else None
        if submission.queued_source_ids and job_id:
            from flows.ingest import ingest_job  # Prefect is imported only when a job runs (~2 s)

            with embeddings_available(self.settings):
                if show_progress:
                    self._run_with_progress(job_id, lambda: ingest_job(job_id, return_state=True))
                else:
                    ingest_job(job_id, return_state=True)  # the summary says how it ended
        return self._summary(job_id, errors)

    def search(self, library: str, query: str, *, limit: int, mode: str) -> list[SearchResult]:
        from gristmill.supervisor.processes import embeddings_available
        from gristmill.usecases.search import search_library
        from storage.chunks import open_chunk_store

        target = self._library(library, create=False)
        store = open_chunk_store(self.settings)
        if mode == "keyword":
            results = search_library(self.settings, store, target, query, mode="keyword", limit=limit)
        else:
            with embeddings_available(self.settings):
                results = search_library(self.settings, store, target, query, mode=mode, limit=limit)
        return [result for result in results]

    def libraries(self) -> list[LibraryLine]:
        with session_scope(self.settings.resolved_database_url) as session:
            workspace = repository.ensure_workspace(session)
            rows = sorted(repository.list_libraries(session, workspace.id)[0], key=lambda lib: lib.name)
            counts = library_cases.counts_of(session, rows)
        return [
            LibraryLine(
                id=lib.id,
                name=lib.name,
                description=lib.description,
                sources=counts[lib.id].sources,
                chunks=counts[lib.id].chunks,
                embedding_model=lib.embedding_model,
            )
            for lib in rows
        ]

    def cancel_job(self, job_id: str) -> JobLine:
        from gristmill.usecases.jobs import cancel_job

        with session_scope(self.settings.resolved_database_url) as session:
            workspace = repository.ensure_workspace(session)
            job = cancel_job(session, workspace.id, job_id, cancel_flow_run_in_prefect=False)
            return JobLine(id=job.id, status=job.status.value, cancelled=job.cancelled_count)

    def _library(self, name: str, *, create: bool) -> Library:
        with session_scope(self.settings.resolved_database_url) as session:
            workspace = repository.ensure_workspace(session)
            library = repository.find_library_by_name(session, workspace.id, name)
            if library is None and create:
                library = library_cases.create_library(session, self.settings, workspace.id, name)
            if library is None:
                raise NotFound(f"no library named {name!r}", code="library_not_found")
            return library

    def _run_with_progress(self, job_id: str, run: Callable[[], object]) -> None:
        from gristmill.cli.printer import progress_bars

        done = threading.Event()
        with progress_bars() as progress:
            sources = progress.add_task("sources done", total=None)
            chunks = progress.add_task("chunks embedded", total=None)

            def poll() -> None:
                while not done.wait(0.5):
                    self._refresh_progress(job_id, progress, sources, chunks)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                run()
            finally:
                done.set()
                poller.join()
                self._refresh_progress(job_id, progress, sources, chunks)

    def _refresh_progress(self, job_id: str, progress: Progress, sources: TaskID, chunks: TaskID) -> None:
        with session_scope(self.settings.resolved_database_url) as session:
            job = repository.find_job(session, job_id)
            rows = repository.job_sources(session, job)
        progress.update(sources, completed=job.progress_current, total=job.progress_total)
        progress.update(
            chunks,
            completed=sum(s.progress_current for s in rows),
            total=sum(s.progress_total for s in rows) or None,
        )

    def _summary(self, job_id: str | None, errors: list[ItemError]) -> IngestSummary:
        summary = IngestSummary(job_id=job_id, status="failed" if errors else "completed", errors=errors)
        if job_id:
            with session_scope(self.settings.resolved_database_url) as session:
                job = repository.find_job(session, job_id)
                summary.status = job.status.value
                for source in repository.job_sources(session, job):
                    summary.counts[source.status.value] = summary.counts.get(source.status.value, 0) + 1
                    summary.sources.append(_source_line(source))
        return summary


def _source_line(source: Source) -> SourceLine:
    return SourceLine(
        source_id=source.id,
        input=source.uri or source.title,
        status=source.status.value,
        chunks=source.chunk_count,
        error=source.error,
        warnings=source.warnings,
        duplicate_of=source.duplicate_of,
    )
