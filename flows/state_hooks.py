"""Flow-run state hooks: when a run fails, crashes or is cancelled, its job must not stay `processing`."""

from typing import Any

from prefect import flow

from flows.run_story import job_run_name
from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope


def fail_job_on_crash(flow, flow_run, state) -> None:
    job_id = (flow_run.parameters or {}).get("job_id")
    if not job_id:
        return
    message = f"flow run {flow_run.name or flow_run.id} ended {state.type.value.lower()}: {state.message or 'no message'}"
    with session_scope(get_settings().resolved_database_url) as session:
        repository.fail_job(session, job_id, message)


def hand_back_job_on_crash(flow, flow_run, state) -> None:
    """A run that crashed (the process told to stop: a graceful stop of the service, an OOM's SIGTERM)
    gives its job back: the reconciler runs it again at once, as it would once the lease ran out."""
    job_id = (flow_run.parameters or {}).get("job_id")
    if not job_id:
        return
    with session_scope(get_settings().resolved_database_url) as session:
        repository.release_job(session, job_id, str(flow_run.id))


# How a runner that is being stopped marks the runs it still has (Prefect's
# prefect/runner/_cancellation_manager.py, `cancel_all`): their jobs were not cancelled by anyone.
RUNNER_SHUTDOWN_MESSAGE = "Runner is shutting down"


def cancel_job_on_cancellation(flow, flow_run, state) -> None:
    """A run cancelled in Prefect (by `POST /v1/jobs/{id}/cancel`, or from the Prefect UI) cancels its
    job: what it had not stored is `cancelled`. A run its runner cancels because the runner is being
    stopped hands its job back instead, as a crashed one does."""
    job_id = (flow_run.parameters or {}).get("job_id")
    if not job_id:
        return
    with session_scope(get_settings().resolved_database_url) as session:
        if RUNNER_SHUTDOWN_MESSAGE in (state.message or ""):
            repository.release_job(session, job_id, str(flow_run.id))
            return
        repository.cancel_job(session, job_id, f"cancelled: {state.message}" if state.message else "cancelled")


def job_flow(name: str, **options: Any):
    """The decorator of a flow that runs one job (`job_id` its parameter): every such flow carries the
    hooks that keep its job's state true whatever its run ends in, and is named after its job."""
    return flow(
        name=name,
        on_failure=[fail_job_on_crash],
        on_crashed=[hand_back_job_on_crash],
        on_cancellation=[cancel_job_on_cancellation],
        log_prints=True,
        flow_run_name=job_run_name,
        **options,
    )
