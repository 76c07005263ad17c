"""Prefect from the API's side: trigger the ingest deployment, link to runs, reconcile dead runs."""

import logging
import os
import threading
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from gristmill.errors import ServiceUnavailable
from gristmill.settings import Settings
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob, JobStatus, utcnow

INGEST_DEPLOYMENT = "ingest/ingest"
FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
log = logging.getLogger("gristmill.orchestration")


def trigger_ingest(settings: Settings, job: IngestJob) -> str:
    """Start the job's flow run and record its id; the runner picks it up within its poll interval."""
    try:
        flow_run = run_deployment(name=INGEST_DEPLOYMENT, parameters={"job_id": job.id}, timeout=0)
    except Exception as error:  # Prefect unreachable or the deployment missing
        with session_scope(settings.resolved_database_url) as session:
            repository.fail_job(session, job.id, f"could not start the ingest flow: {error}")
        raise ServiceUnavailable(
            f"could not start the ingest flow run: {error}", code="orchestrator_unavailable"
        ) from error
    with session_scope(settings.resolved_database_url) as session:
        stored = session.get(IngestJob, job.id)
        stored.flow_run_id = str(flow_run.id)
        session.add(stored)
        session.commit()
    return str(flow_run.id)


def prefect_ui_url() -> str | None:
    api_url = os.environ.get("PREFECT_API_URL")
    return api_url.removesuffix("/").removesuffix("/api") if api_url else None


def prefect_run_url(flow_run_id: str | None) -> str | None:
    base = prefect_ui_url()
    return f"{base}/runs/flow-run/{flow_run_id}" if base and flow_run_id else None


def reconcile_jobs(settings: Settings, *, never_started_after: timedelta = timedelta(minutes=10)) -> list[str]:
    """Fail unfinished jobs whose flow run ended, vanished or never started; return their ids."""
    reconciled: list[str] = []
    with session_scope(settings.resolved_database_url) as session:
        jobs = repository.unfinished_jobs(session)
    if not jobs:
        return reconciled
    with get_client(sync_client=True) as client:
        for job in jobs:
            message = _why_dead(client, job, never_started_after)
            if message is None:
                continue
            with session_scope(settings.resolved_database_url) as session:
                current = session.get(IngestJob, job.id)
                if current is None or current.status.is_final:
                    continue  # finished while we looked
                repository.fail_job(session, job.id, message)
            reconciled.append(job.id)
    return reconciled


def _why_dead(client, job: IngestJob, never_started_after: timedelta) -> str | None:
    if not job.flow_run_id:
        if job.status == JobStatus.pending and utcnow() - _aware(job.created_at) > never_started_after:
            return "the job's flow run was never started"
        return None
    try:
        run = client.read_flow_run(UUID(job.flow_run_id))
    except ObjectNotFound:
        return f"flow run {job.flow_run_id} no longer exists in Prefect"
    state = run.state
    if state is None or state.type.value not in FINAL_RUN_STATES:
        return None
    return f"flow run {run.name} ended {state.type.value.lower()} before the job finished: {state.message or 'no message'}"


def _aware(moment):
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Reconciler:
    """Runs `reconcile_jobs` at start-up and then every `interval` seconds, in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gristmill-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                failed = reconcile_jobs(self.settings)
                if failed:
                    log.warning("reconciled %d job(s) whose flow runs died: %s", len(failed), ", ".join(failed))
            except Exception:  # Prefect briefly unreachable: try again next round
                log.exception("job reconciliation failed")
            if self._stop.wait(self.settings.reconcile_interval_seconds):
                return
