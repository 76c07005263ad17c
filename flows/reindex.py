"""The reindex flow: every stored source of a library is chunked and embedded again, source by source,
with the library's chunking and the model the job names, while search keeps answering.

Same model: each source's chunks are replaced in place, one commit per source (a reader sees its old
chunks or its new ones). Another model: the vectors cannot share a table, so the sources fill the
library's other table and, once every one is in, the library switches to it in one SQL commit; until
then search reads the old table, and if any source fails the new table is dropped and the library
keeps its model. Either way the library takes no new sources while the job runs (the routes answer
409 library_reindexing), and the job waits for ingest jobs that were already running to finish.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote, unmapped

from flows.heartbeat import keep_heartbeat
from flows.ingest import SOURCE_CONCURRENCY, build_vector_index_if_due, name_own_process
from flows.state_hooks import job_flow
from gristmill.errors import GristmillError, ParseError
from gristmill.settings import Settings, get_settings
from storage import repository
from storage.chunks import open_chunk_store
from storage.db import session_scope
from storage.tables import IngestJob, JobKind, Library
from tasks.chunk import chunk_task
from tasks.embed import embed_task
from tasks.fetch import original_content
from tasks.parse import parse_task, sandbox
from tasks.upsert import upsert_chunks

# How long a reindex waits for the library's running ingest jobs before it gives up.
EARLIER_JOBS_TIMEOUT_SECONDS = 900.0
# A search that read the library row just before the switch still reads the old table: it is dropped
# this long after (a search on 2 busy cores measured over 2 s; the job is finished by then).
OLD_TABLE_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class ReindexPlan:
    """What every source of the job is re-indexed with, and into which table."""

    job_id: str
    table: str
    model: str
    dimensions: int
    window_tokens: int
    tokenizer_path: Path
    max_tokens: int
    overlap_tokens: int
    in_place: bool  # same model and table: each source replaced where it is


def plan_for(job: IngestJob, library: Library, settings: Settings) -> ReindexPlan:
    model = settings.embedding_model_named(job.parameters.get("embedding_model") or library.embedding_model)
    in_place = model.name == library.embedding_model and model.dimensions == library.embedding_dim
    return ReindexPlan(
        job_id=job.id,
        table=library.chunk_table if in_place else library.next_chunk_table,
        model=model.name,
        dimensions=model.dimensions,
        window_tokens=model.window_tokens,
        tokenizer_path=model.tokenizer_path or settings.resolved_tokenizer_path,
        max_tokens=job.parameters.get("chunk_max_tokens", library.chunk_max_tokens),
        overlap_tokens=job.parameters.get("chunk_overlap_tokens", library.chunk_overlap_tokens),
        in_place=in_place,
    )


@task(name="reindex-source", cache_policy=NO_CACHE, task_run_name="reindex-{source_id}")
def reindex_source(source_id: str, plan: ReindexPlan, settings: Settings) -> tuple[int, int] | None:
    """Chunk and embed one stored source again; (chunks, tokens), or None when it is not stored any
    more. A failure is counted on the job and raised no further: the other sources go on."""
    database_url = settings.resolved_database_url
    try:
        with session_scope(database_url) as session:
            source = repository.find_source(session, source_id)
            library = repository.find_library(session, source.library_id) if source else None
        if source is None or library is None or source.status.value not in ("completed", "partial"):
            return None
        fetched = original_content(
            blob_path=source.blob_path, extracted_text=source.extracted_text, content_type=source.content_type,
            content_format=source.content_format, filename=source.filename, uri=source.uri, settings=settings,
        )
        document = parse_task(fetched, settings)
        del fetched
        chunks = chunk_task(quote(document), plan.max_tokens, plan.overlap_tokens, plan.tokenizer_path, plan.window_tokens)
        del document
        if not chunks:
            raise ParseError("the document has no text to index", code="no_text")
        vectors = embed_task(plan.table, quote([c.text for c in chunks]), settings, model=plan.model)
        upsert_chunks(
            open_chunk_store(settings), library, source, chunks, vectors,
            table=plan.table, dim=plan.dimensions,
        )
        counts = (len(chunks), sum(c.token_count for c in chunks))
        with session_scope(database_url) as session:
            if plan.in_place:
                repository.update_source(session, source_id, chunk_count=counts[0], token_count=counts[1])
            repository.count_job_step(session, plan.job_id, completed=1, chunks=counts[0])
        return counts
    except Exception as error:  # noqa: BLE001 - one source's failure, whatever it is, is that source's
        if not isinstance(error, GristmillError):
            get_run_logger().exception("re-indexing source %s failed unexpectedly", source_id)
        message = error.message if isinstance(error, GristmillError) else f"{type(error).__name__}: {error}"
        with session_scope(database_url) as session:
            repository.count_job_step(session, plan.job_id, failed=1, error=f"source {source_id}: {message}")
        return None


@job_flow(
    "reindex-library",
    task_runner=ThreadPoolTaskRunner(max_workers=SOURCE_CONCURRENCY),
)
def reindex_library(job_id: str) -> dict[str, int | str]:
    """Re-chunk and re-embed every stored source of the job's library and record the outcome on the job."""
    own_process = name_own_process()
    settings = get_settings()
    database_url = settings.resolved_database_url
    with session_scope(database_url) as session:
        job = repository.start_job(session, job_id, flow_run_id=runtime.flow_run.id)
        library = repository.find_library(session, job.library_id)
    keep_heartbeat(settings, job_id, str(runtime.flow_run.id))
    try:
        _wait_for_earlier_jobs(job, settings)
        plan = plan_for(job, library, settings)
        store = open_chunk_store(settings)
        if not plan.in_place:
            store.delete_library(plan.table)  # what a run that died left half filled
        with session_scope(database_url) as session:
            source_ids = repository.stored_source_ids(session, library.id)
            repository.set_job_total(session, job_id, len(source_ids))
        counts = reindex_source.map(source_ids, plan=unmapped(plan), settings=unmapped(settings)).result()
    finally:
        if own_process:
            sandbox.stop()
    with session_scope(database_url) as session:
        job = repository.find_job(session, job_id)
    if plan.in_place or job.failed_count:
        if not plan.in_place:
            store.delete_library(plan.table)
            error = (
                f"{job.failed_count} of {job.progress_total} sources could not be re-indexed with {plan.model} "
                f"(first: {job.error}); the library keeps {library.embedding_model}"
            )
        with session_scope(database_url) as session:
            job = repository.finish_job(session, job_id, error=None if plan.in_place else error)
    else:
        done = {source_id: c for source_id, c in zip(source_ids, counts, strict=True) if c is not None}
        with session_scope(database_url) as session:
            repository.switch_chunk_table(
                session, library.id, table=plan.table, embedding_model=plan.model, embedding_dim=plan.dimensions, counts=done
            )
            job = repository.finish_job(session, job_id)
    if job.chunk_count:
        build_vector_index_if_due(plan.table, settings)
    if not plan.in_place and not job.failed_count:
        time.sleep(OLD_TABLE_GRACE_SECONDS)  # the job is done: nobody waits for this
        _drop_old_table(library.id, library.chunk_table, settings)
    print(f"re-indexed {job.completed_count} of {job.progress_total} sources with {plan.model}: {job.status.value}")
    return {"status": job.status.value, "completed": job.completed_count, "failed": job.failed_count, "chunks": job.chunk_count}


def _drop_old_table(library_id: str, old_table: str, settings: Settings) -> None:
    """Drop the table a switch left behind, unless a re-index started since is filling it (it begins
    by dropping it anyway) or the library is gone (its tables with it)."""
    with session_scope(settings.resolved_database_url) as session:
        library = repository.find_library(session, library_id)
        if library is None or library.chunk_table == old_table:
            return
        if repository.unfinished_job_of_kind(session, library_id, JobKind.reindex):
            return
    open_chunk_store(settings).delete_library(old_table)


def _wait_for_earlier_jobs(job: IngestJob, settings: Settings) -> None:
    """Ingest jobs of the library that started before this one finish first (they may still write)."""
    deadline = time.monotonic() + EARLIER_JOBS_TIMEOUT_SECONDS
    while True:
        with session_scope(settings.resolved_database_url) as session:
            running = repository.unfinished_ingest_jobs_before(session, job.library_id, job)
        if not running:
            return
        if time.monotonic() > deadline:
            raise GristmillError(f"ingest jobs {', '.join(running)} of the library did not finish in time", code="library_busy")
        time.sleep(1.0)
