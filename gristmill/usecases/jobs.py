"""What a caller may do to a job beyond reading it: cancel it."""

import logging

from sqlmodel import Session

from gristmill.errors import Conflict
from gristmill.usecases.orchestration import cancel_flow_run
from storage import repository
from storage.tables import IngestJob

CANCEL_REASON = "cancelled by the caller"
log = logging.getLogger("gristmill.jobs")


def cancel_job(session: Session, workspace_id: str, job_id: str, *, cancel_flow_run_in_prefect: bool = True) -> IngestJob:
    """Cancel an unfinished job: its sources not yet stored end `cancelled` at once (a source whose
    chunks are already committed stays stored; a replacement not yet committed leaves the old version
    whole), then its Prefect flow run is cancelled. 409 `job_finished` for a final job.

    The standalone CLI leaves Prefect out: its runs ran on a temporary server of their own process,
    and a run still going there stops at its next stage, when it reads that its source is cancelled."""
    job = repository.get_job(session, workspace_id, job_id)
    if job.status.is_final:
        raise Conflict(f"job {job_id} has already finished ({job.status.value}); there is nothing to cancel", code="job_finished")
    job = repository.cancel_job(session, job_id, CANCEL_REASON)
    if job.flow_run_id and cancel_flow_run_in_prefect:
        try:
            cancel_flow_run(job.flow_run_id, CANCEL_REASON)
        except Exception as error:  # noqa: BLE001 - the job is cancelled; its run stops storing at its next stage
            log.warning("could not cancel flow run %s of job %s in Prefect: %s", job.flow_run_id, job_id, error)
    return job
