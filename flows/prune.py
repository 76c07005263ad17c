"""The prune flow: a caller declared the full set of a library's external ids (or of those under a
prefix); every finished source it leaves out is removed with its chunks, one by one, each recorded
as `removed` under this job. Sources still being processed are left alone."""

from prefect import runtime

from flows.heartbeat import keep_heartbeat
from flows.ingest import name_own_process
from flows.state_hooks import job_flow
from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from tasks.remove import remove_task


@job_flow("prune-library")
def prune_library(job_id: str) -> dict[str, int | str]:
    """Remove the sources of the job's library that its declared set of external ids leaves out."""
    name_own_process()
    database_url = get_settings().resolved_database_url
    with session_scope(database_url) as session:
        job = repository.start_job(session, job_id, flow_run_id=runtime.flow_run.id)
        keep, prefix = set(job.parameters.get("external_ids", [])), job.parameters.get("prefix")
        left_out = repository.sources_left_out(session, job.library_id, keep, prefix)
        repository.set_job_total(session, job_id, len(left_out))
    keep_heartbeat(get_settings(), job_id, str(runtime.flow_run.id))
    scope = f"external ids starting with {prefix!r}" if prefix else "the library"
    reason = f"not among the {len(keep)} external ids declared as the full set of {scope}"
    total = len(left_out)
    for source_id in left_out:
        removed = remove_task(source_id, reason, job_id, get_settings())
        with session_scope(database_url) as session:
            if removed:
                repository.count_job_step(session, job_id, removed=1)
            else:  # deleted, replaced or re-submitted meanwhile: not this job's to remove
                total -= 1
                repository.set_job_total(session, job_id, total)
    with session_scope(database_url) as session:
        job = repository.finish_job(session, job_id)
    print(f"removed {job.removed_count} sources left out of {scope}")
    return {"status": job.status.value, "removed": job.removed_count}
