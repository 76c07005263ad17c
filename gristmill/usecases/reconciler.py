"""Unfinished jobs checked against Prefect: a job whose flow run ended, vanished or never started is
failed with the reason, and jobs whose start was deferred are started."""

import logging
import threading
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from gristmill.settings import Settings
from gristmill.usecases.orchestration import JobStarter
from storage import repository
from storage.db import session_scope
from storage.locks import SingletonLease
from storage.tables import IngestJob, JobStatus, as_utc, utcnow

FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TRIGGER_RETRY_SECONDS = 2.0
NEVER_STARTED_AFTER = timedelta(minutes=10)
log = logging.getLogger("gristmill.reconciler")


def reconcile_jobs(settings: Settings, *, never_started_after: timedelta = NEVER_STARTED_AFTER) -> list[str]:
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
                current = repository.find_job(session, job.id)
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
    """Runs `reconcile_jobs` and the starter's `start_waiting` at start-up and then every
    `reconcile_interval_seconds`, in a daemon thread; every `TRIGGER_RETRY_SECONDS` while deferred
    jobs wait. A start deferred meanwhile (`wake`) brings the next round forward."""

    def __init__(self, settings: Settings, starter: JobStarter) -> None:
        self.settings = settings
        self.starter = starter
        # Every API process runs a reconciler; on PostgreSQL one of them at a time fails dead jobs.
        self.lease = SingletonLease(settings.resolved_database_url, "gristmill.reconciler")
        starter.on_deferred = self.wake
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gristmill-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.lease.release()

    def _loop(self) -> None:
        while True:
            waiting = 0
            try:
                failed = reconcile_jobs(self.settings) if self.lease.held() else []
                if failed:
                    log.warning("reconciled %d job(s) whose flow runs died: %s", len(failed), ", ".join(failed))
                started, waiting = self.starter.start_waiting()
                if started:
                    log.info("started the deferred flow runs of %d job(s)", len(started))
            except Exception:  # Prefect briefly unreachable: try again next round
                log.exception("job reconciliation failed")
            # A start deferred meanwhile wakes the loop early; it then gives Prefect a moment.
            woken = self._wake.wait(TRIGGER_RETRY_SECONDS if waiting else self.settings.reconcile_interval_seconds)
            self._wake.clear()
            if self._stop.is_set() or (woken and self._stop.wait(TRIGGER_RETRY_SECONDS)):
                return
