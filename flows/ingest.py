"""The ingest flow: every source of a job goes fetch → parse → chunk → embed → upsert.

A source's failure is recorded on that source and never fails the others; the job ends completed,
partial or failed from its sources' outcomes. If the flow run itself dies, its state hooks (and the
reconciler, for runs that die too hard to run hooks) fail the job's unfinished sources.
"""

import hashlib
import threading
from collections.abc import Callable, Iterable

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote, unmapped

from flows.heartbeat import keep_heartbeat
from flows.progress import SourceProgress
from flows.run_story import final_state, log_source_outcome
from flows.state_hooks import job_flow
from flows.webhooks import request_deliveries
from gristmill.errors import GristmillError, ParseError, SourceCancelled
from gristmill.lifetime import FLOW_RUN_PROCESS_PREFIX
from gristmill.settings import Settings, get_settings
from storage import repository
from storage.blobs import open_blob_store
from storage.db import session_scope
from storage.tables import SourceStatus
from tasks.chunk import chunk_task
from tasks.embed import embed_task
from tasks.fetch import fetch_task
from tasks.index import index_task, needs_vector_index
from tasks.parse import parse_task, sandbox
from tasks.upsert import upsert_task

# Sources of one job processed at once: parsing runs in child processes and the embeddings
# server serialises model calls, so a few in flight keep both busy without thrashing 2 cores.
SOURCE_CONCURRENCY = 4
# Documents, chunk lists and vectors go to tasks quoted: Prefect would otherwise walk every element
# of them looking for futures, which for a 10 MB CSV (72,773 rows, 22,488 chunks) cost seconds and
# ~300 MB (bench/bench_memory.py). Nothing in them is a future.


class ParsesLeft:
    """The sources of a job that may still parse; when the last is past parsing, `on_last` runs
    (a flow-run process of its own stops the parse sandbox: ~100 MB it would hold to the end)."""

    def __init__(self, source_ids: Iterable[str], on_last: Callable[[], None] | None) -> None:
        self._left = set(source_ids)
        self._on_last = on_last
        self._lock = threading.Lock()

    def finished(self, source_id: str) -> None:
        with self._lock:
            if source_id not in self._left:
                return
            self._left.remove(source_id)
            last = not self._left
        if last and self._on_last is not None:
            self._on_last()


@task(name="process-source", cache_policy=NO_CACHE, task_run_name="source-{source_id}")
def process_source(source_id: str, parses: ParsesLeft, settings: Settings) -> SourceStatus:
    try:
        status = _ingest_source(source_id, parses, settings)
    finally:
        parses.finished(source_id)  # however it ended, it parses no more
    log_source_outcome(source_id, status)
    return status


def _ingest_source(source_id: str, parses: ParsesLeft, settings: Settings) -> SourceStatus:
    progress = SourceProgress(settings.resolved_database_url, source_id, open_blob_store(settings), keep_originals=settings.keep_originals)
    with session_scope(settings.resolved_database_url) as session:
        source = repository.find_source(session, source_id)
        library = repository.find_library(session, source.library_id) if source else None
    if source is None or library is None:  # deleted while queued
        return SourceStatus.failed
    if source.status.is_final:  # e.g. a duplicate decided when the job was created
        return source.status
    try:
        progress.stage(SourceStatus.fetching)
        fetched = fetch_task(
            source.origin,
            uri=source.uri,
            blob_path=source.blob_path,
            content_type=source.content_type,
            filename=source.filename,
            settings=settings,
        )
        content_hash = hashlib.sha256(fetched.data).hexdigest()
        kept = {"blob_path": open_blob_store(settings).write(source.id, fetched.data)} if _keeps_fetched(source, settings) else {}
        source = progress.stage(SourceStatus.parsing, content_hash=content_hash, size_bytes=len(fetched.data), **kept)
        original = progress.stored_original(source)
        if original is not None:
            return progress.duplicate(source, original)
        document = parse_task(fetched, settings)
        parses.finished(source_id)  # a failed parse is counted by process_source on its way out
        progress.parsed(document, fetched)
        model = settings.library_model(library.embedding_model)
        chunks = chunk_task(
            quote(document),
            library.chunk_max_tokens,
            library.chunk_overlap_tokens,
            model.tokenizer_path or settings.resolved_tokenizer_path,
            model.window_tokens,
        )
        with_warnings = bool(document.warnings)
        # From here on the chunks hold all that is stored. A 10 MB CSV's content and document (~90 MB)
        # go back to Python's arenas for embedding and the upsert to reuse; the process's peak did
        # not move measurably (bench/README.md), but nothing holds them to the end of the source.
        del fetched, document
        if not chunks:
            raise ParseError("the document has no text to index", code="no_text")
        progress.stage(SourceStatus.embedding, progress_total=len(chunks), progress_current=0)
        vectors = embed_task(
            library.chunk_table,
            quote([c.indexed_text for c in chunks]),
            settings,
            on_progress=progress.embedded,
            model=model.name,
        )
        embedded = progress.reload()
        if embedded.status == SourceStatus.cancelled:  # the last moment at which the cancel can keep it out
            return SourceStatus.cancelled
        upsert_task(library, embedded, quote(chunks), quote(vectors), settings)
        return progress.stored(chunks, with_warnings=with_warnings)
    except SourceCancelled:
        return SourceStatus.cancelled
    except GristmillError as error:
        return progress.fail(error)
    except Exception as error:  # a bug must fail this source, not the job's others
        get_run_logger().exception("source %s failed unexpectedly", source_id)
        return progress.fail(GristmillError(f"internal error: {type(error).__name__}: {error}"))


@job_flow(
    "ingest",
    task_runner=ThreadPoolTaskRunner(max_workers=SOURCE_CONCURRENCY),
)
def ingest_job(job_id: str) -> State:
    """Ingest every source of job `job_id` and record the outcome on the job; the run's final state
    is the job's (flows/run_story.py), with the counts as its result. Callers that must not raise
    on a failed job call it with `return_state=True`."""
    own_process = name_own_process()
    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        job = repository.start_job(session, job_id, flow_run_id=runtime.flow_run.id)
        source_ids = [source.id for source in repository.job_sources(session, job)]
    keep_heartbeat(settings, job_id, str(runtime.flow_run.id))
    parses = ParsesLeft(source_ids, on_last=sandbox.stop if own_process else None)
    process_source.map(source_ids, parses=unmapped(parses), settings=unmapped(settings)).result()
    with session_scope(settings.resolved_database_url) as session:
        job = repository.refresh_job_progress(session, job_id)
    request_deliveries(settings, "after-jobs")  # the job's webhooks; it never waits for them
    if job.chunk_count:
        with session_scope(settings.resolved_database_url) as session:
            library = repository.find_library(session, job.library_id)
        if library is not None:  # the job's outcome is recorded: nobody waits
            build_vector_index_if_due(library.chunk_table, settings)
    return final_state(job, {
        "status": job.status.value,
        "completed": job.completed_count,
        "partial": job.partial_count,
        "failed": job.failed_count,
        "duplicate": job.duplicate_count,
        "chunks": job.chunk_count,
    })


def _keeps_fetched(source, settings: Settings) -> bool:
    """A URL or local file's bytes are kept as its original once fetched (uploads and inline content
    were written to the blob folder when they were submitted)."""
    return settings.keep_originals and not source.blob_path


def build_vector_index_if_due(library_id: str, settings: Settings) -> None:
    """Index the library once it has outgrown exact vector search; a failure never fails the flow run
    (the job is done, searches stay exact meanwhile, and the next job tries again)."""
    try:
        if not needs_vector_index(library_id, settings):
            return
    except GristmillError as error:
        get_run_logger().warning("could not check the indexes of library %s: %s", library_id, error.message)
        return
    built = index_task(library_id, settings, return_state=True)
    if built.is_failed():
        get_run_logger().warning("building the vector index of library %s failed: %s", library_id, built.message)


def flow_run_process_name(flow_run_id: str) -> str:
    """The name a flow-run process shows in ps and top (/proc/<pid>/comm, at most 15 characters).

    Runs forked from the runner's forkserver share its command line and environment, so the name is
    how an operator (or a test) tells which process runs which flow run.
    """
    return FLOW_RUN_PROCESS_PREFIX + flow_run_id.replace("-", "")[:12]


def name_own_process() -> bool:
    """Name this flow run's process after it (see `flow_run_process_name`) when it has one of its own
    (started by the runner, not run in the CLI's process); whether it has."""
    if not runtime.deployment.id:
        return False
    _name_process(flow_run_process_name(str(runtime.flow_run.id)))
    return True


def _name_process(name: str) -> None:
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:  # not Linux: the name is only a convenience
        pass
