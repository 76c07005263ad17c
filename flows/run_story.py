"""What a flow run shows in the Prefect UI, so that it tells the job's story as the API does: a name
that says which job it is, one log line per source outcome, and a final state that matches the job's
(a failed job's run is Failed with the job's error; a partial one is Completed and says how many
sources failed)."""

from prefect import get_run_logger, runtime
from prefect.client.schemas.objects import State
from prefect.states import Cancelled, Completed, Failed

from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob, JobStatus, Source, SourceStatus, utcnow


def job_run_name() -> str:
    """`<kind> <library name> <job id>`, e.g. `ingest handbook 6f1c...`: the run of which job."""
    job_id = (runtime.flow_run.parameters or {}).get("job_id", "")
    try:
        with session_scope(get_settings().resolved_database_url) as session:
            job = repository.find_job(session, job_id)
            library = repository.find_library(session, job.library_id) if job else None
            if job is not None:
                return f"{job.kind} {library.name if library else job.library_id} {job_id}"
    except Exception:  # noqa: BLE001 - a name is a convenience: the run goes on without it
        pass
    return f"job {job_id}"


def sync_run_name() -> str:
    return f"sync {utcnow():%Y-%m-%d %H:%M} UTC"


def log_source_outcome(source_id: str, status: SourceStatus) -> None:
    """One line per source: what it was and how it ended (with its error, if it has one)."""
    with session_scope(get_settings().resolved_database_url) as session:
        source = repository.find_source(session, source_id)
    what = _describe(source) if source is not None else "(deleted)"
    error = f": {source.error}" if source is not None and source.error and status.is_final else ""
    logger = get_run_logger()
    (logger.warning if status == SourceStatus.failed else logger.info)("source %s %s %s%s", source_id, what, status.value, error)


def _describe(source: Source) -> str:
    name = source.title or source.uri or source.filename or source.origin
    return f"({name}, {source.chunk_count} chunks)" if source.status.is_final and source.chunk_count else f"({name})"


def final_state(job: IngestJob, result: dict) -> State:
    """The flow run's final state for the job as recorded: Failed, Cancelled or Completed, with a
    message a reader of the Prefect UI does not have to look elsewhere for."""
    if job.status == JobStatus.failed:
        return Failed(message=job.error or "every source failed", data=result)
    if job.status == JobStatus.cancelled:
        return Cancelled(message=f"cancelled: {job.cancelled_count} of {job.progress_total} sources not stored", data=result)
    stored = job.completed_count + job.partial_count
    message = f"{stored} of {job.progress_total} sources stored"
    if job.failed_count:
        message = f"{job.failed_count} of {job.progress_total} sources failed; first: {_first_error(job)}"
    elif job.partial_count:
        message += f", {job.partial_count} with warnings"
    return Completed(message=message, data=result)


def _first_error(job: IngestJob) -> str:
    return (job.error or "").split("first: ", 1)[-1] or "see the job"
