"""Prefect from the API's side: start a job's flow run (or, when Prefect is busy, leave it for later),
and link to runs in the Prefect UI."""

import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.settings import PREFECT_API_URL

from gristmill.errors import ServiceUnavailable
from gristmill.internals import DeploymentRuns
from gristmill.settings import Settings
from storage import repository
from storage.db import session_scope
from storage.tables import JobKind

# The deployment (flow name/deployment name, as prefect.yaml registers it) that runs each kind of job.
DEPLOYMENTS = {
    JobKind.ingest: "ingest/ingest",
    JobKind.reindex: "reindex-library/reindex-library",
    JobKind.prune: "prune-library/prune-library",
}
INGEST_DEPLOYMENT = DEPLOYMENTS[JobKind.ingest]
WAITING_FOR_PREFECT = "waiting for Prefect to accept the flow run: "
log = logging.getLogger("gristmill.orchestration")


class JobStarter:
    """Starts the flow runs of stored jobs; one per process, shared by its requests and its reconciler.

    The job and its sources are stored before a start is asked for, so when Prefect cannot take the
    run now (unreachable, or its SQLite busy for longer than `DeploymentRuns` retries), the job is
    not failed: it stays pending with the reason in its `error`, `on_deferred` is told (the
    reconciler then retries soon), and `start_waiting` starts it later. Under 20 concurrent clients
    on 2 cores Prefect's SQLite answered some create_flow_run calls 503 for a minute, and failing
    those jobs lost 2-5 of 100 (bench/bench_latency.py).
    """

    def __init__(self, settings: Settings, *, on_deferred: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_deferred = on_deferred
        self._runs: dict[str, DeploymentRuns] = {}
        self._runs_lock = threading.Lock()

    def start(self, job_id: str, kind: JobKind = JobKind.ingest, attempts: int = 0) -> str | None:
        """Start the flow run of a job of `kind` that `attempts` runs have worked on before, and record
        its id (the runner picks it up within its poll interval); None when the start was deferred."""
        try:
            flow_run_id = self.create_flow_run(job_id, kind, attempts)
        except Exception as error:  # noqa: BLE001 - Prefect unreachable, overloaded, or the deployment missing
            log.warning("could not start the flow run of job %s yet; the reconciler will retry: %s", job_id, error)
            self._record_deferred(job_id, error)
            if self.on_deferred is not None:
                self.on_deferred()
            return None
        self._record_started(job_id, flow_run_id)
        return flow_run_id

    def start_waiting(self) -> tuple[list[str], int]:
        """Start the flow runs of jobs whose start was deferred; returns (started job ids, jobs still waiting)."""
        with session_scope(self.settings.resolved_database_url) as session:
            waiting = repository.jobs_waiting_for_a_run(session, WAITING_FOR_PREFECT)
        started: list[str] = []
        for job_id, kind, attempts in waiting:
            try:
                flow_run_id = self.create_flow_run(job_id, kind, attempts)
            except Exception as error:  # noqa: BLE001 - still unavailable: the rest wait for the next round too
                self._record_deferred(job_id, error)
                break
            self._record_started(job_id, flow_run_id)
            started.append(job_id)
        return started, len(waiting) - len(started)

    def create_flow_run(self, job_id: str, kind: JobKind = JobKind.ingest, attempts: int = 0) -> str:
        """A run of the deployment for jobs of `kind`, for `job_id`. The kind, job id and attempts so
        far are the idempotency key, so starting it again after an answer that got lost returns the
        same run instead of a second one, while a job whose run was lost gets a new one."""
        key = f"{kind.value}-{job_id}" + (f"-{attempts}" if attempts else "")
        return self.create_deployment_run(DEPLOYMENTS[kind], {"job_id": job_id}, idempotency_key=key)

    def create_deployment_run(self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str) -> str:
        """A run of any deployment ("flow/deployment") with `parameters`."""
        api_url = PREFECT_API_URL.value()
        if not api_url:
            raise ServiceUnavailable(f"PREFECT_API_URL is not set: no Prefect server to start {deployment} on")
        with self._runs_lock:  # one client per Prefect, so its creates queue behind one lock
            runs = self._runs.get(api_url) or self._runs.setdefault(api_url, DeploymentRuns(api_url))
        return runs.create(deployment, parameters, idempotency_key=idempotency_key)

    def _record_started(self, job_id: str, flow_run_id: str) -> None:
        with session_scope(self.settings.resolved_database_url) as session:
            repository.record_flow_run(session, job_id, flow_run_id, clear_error_starting=WAITING_FOR_PREFECT)

    def _record_deferred(self, job_id: str, error: Exception) -> None:
        with session_scope(self.settings.resolved_database_url) as session:
            repository.record_start_deferred(session, job_id, f"{WAITING_FOR_PREFECT}{error}"[:1000])


def cancel_flow_run(flow_run_id: str, message: str) -> None:
    """Cancel a flow run in Prefect: a running one is set Cancelling, which its runner answers by
    stopping the process (its cancellation hook then records the job's end); one not yet running is
    Cancelled outright. A run already final is left alone."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if run.state is None or run.state.is_final():
            return
        state = Cancelling(message=message) if run.state.is_running() else Cancelled(message=message)
        client.set_flow_run_state(run.id, state, force=True)


def prefect_ui_url() -> str | None:
    api_url = os.environ.get("PREFECT_API_URL")
    return api_url.removesuffix("/").removesuffix("/api") if api_url else None


def prefect_run_url(flow_run_id: str | None) -> str | None:
    base = prefect_ui_url()
    return f"{base}/runs/flow-run/{flow_run_id}" if base and flow_run_id else None
