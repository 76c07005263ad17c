"""Prefect from the API's side: trigger the ingest deployment (retrying later when Prefect is busy),
link to runs, reconcile dead runs."""

import logging
import os
import threading
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from api.flow_runs import start_flow_run
from gristmill.settings import Settings
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob, JobStatus, as_utc, utcnow

FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAITING_FOR_PREFECT = "waiting for Prefect to accept the flow run: "
TRIGGER_RETRY_SECONDS = 2.0
log = logging.getLogger("gristmill.orchestration")
_retry_soon = threading.Event()  # set when a start was deferred: the reconciler retries soon


def trigger_ingest(settings: Settings, job: IngestJob) -> str | None:
    """Start the job's flow run and record its id; the runner picks it up within its poll interval.

    The job and its sources are stored before this is called, so when Prefect cannot take the run
    now (unreachable, or its SQLite database busy for longer than `start_flow_run` retries) the
    job is not failed: it stays pending, the reason in its `error`, and the reconciler starts it
    later (`start_waiting_jobs`), or fails it as never started after `never_started_after`. Under
    20 concurrent clients on 2 cores Prefect's SQLite answered some create_flow_run calls 503 for
    a minute, and failing those jobs lost 2-5 of 100 (bench/bench_latency.py). Returns the flow run
    id, or None when the start was deferred.
    """
    try:
        flow_run_id = start_flow_run(job.id)
    except Exception as error:  # noqa: BLE001 - Prefect unreachable, overloaded, or the deployment missing
        log.warning("could not start the flow run of job %s yet; the reconciler will retry: %s", job.id, error)
        _record_trigger(settings, job.id, error=f"{WAITING_FOR_PREFECT}{error}"[:1000])
        _retry_soon.set()
        return None
    _record_trigger(settings, job.id, flow_run_id=flow_run_id)
    return flow_run_id


def _record_trigger(settings: Settings, job_id: str, *, flow_run_id: str | None = None, error: str | None = None) -> None:
    with session_scope(settings.resolved_database_url) as session:
        stored = session.get(IngestJob, job_id)
        if stored is None:
            return
        if flow_run_id:
            stored.flow_run_id = flow_run_id
            if (stored.error or "").startswith(WAITING_FOR_PREFECT):
                stored.error = None  # only our own note: a finished run's error stays
        elif error and not stored.flow_run_id:
            stored.error = error
        session.add(stored)
        session.commit()


def start_waiting_jobs(settings: Settings) -> tuple[list[str], int]:
    """Start the flow runs of jobs whose start was deferred; returns (started job ids, jobs still waiting)."""
    with session_scope(settings.resolved_database_url) as session:
        waiting = [
            job.id
            for job in repository.unfinished_jobs(session)
            if job.status == JobStatus.pending
            and not job.flow_run_id
            and (job.error or "").startswith(WAITING_FOR_PREFECT)
        ]
    started: list[str] = []
    for job_id in waiting:
        try:
            flow_run_id = start_flow_run(job_id)
        except Exception as error:  # noqa: BLE001 - still unavailable: the rest wait for the next round too
            _record_trigger(settings, job_id, error=f"{WAITING_FOR_PREFECT}{error}"[:1000])
            break
        _record_trigger(settings, job_id, flow_run_id=flow_run_id)
        started.append(job_id)
    return started, len(waiting) - len(started)


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
        if job.status == JobStatus.pending and utcnow() - as_utc(job.created_at) > never_started_after:
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


class Reconciler:
    """Runs `reconcile_jobs` and `start_waiting_jobs` at start-up and then every `interval` seconds,
    in a daemon thread; every `TRIGGER_RETRY_SECONDS` while deferred jobs wait."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gristmill-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        _retry_soon.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            waiting = 0
            try:
                failed = reconcile_jobs(self.settings)
                if failed:
                    log.warning("reconciled %d job(s) whose flow runs died: %s", len(failed), ", ".join(failed))
                started, waiting = start_waiting_jobs(self.settings)
                if started:
                    log.info("started the deferred flow runs of %d job(s)", len(started))
            except Exception:  # Prefect briefly unreachable: try again next round
                log.exception("job reconciliation failed")
            # A start deferred meanwhile wakes the loop early; it then gives Prefect a moment.
            woken = _retry_soon.wait(TRIGGER_RETRY_SECONDS if waiting else self.settings.reconcile_interval_seconds)
            _retry_soon.clear()
            if self._stop.is_set() or (woken and self._stop.wait(TRIGGER_RETRY_SECONDS)):
                return
