"""Unfinished jobs checked against their leases and Prefect: a job whose flow run's process is gone
runs again (up to `job_max_attempts` runs), one whose flow run ended, vanished or never started is
failed with the reason, and jobs whose start was deferred are started (docs/job-states.md)."""

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from gristmill.settings import Settings
from gristmill.usecases.orchestration import WAITING_FOR_PREFECT, JobStarter
from storage import repository
from storage.db import session_scope
from storage.locks import SingletonLease
from storage.tables import IngestJob, JobKind, JobStatus, as_utc, utcnow

FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TRIGGER_RETRY_SECONDS = 2.0
NEVER_STARTED_AFTER = timedelta(minutes=10)
log = logging.getLogger("gristmill.reconciler")


@dataclass
class Reconciled:
    failed: list[str] = field(default_factory=list)  # jobs failed: their runs ended, or were lost too often
    rerun: list[str] = field(default_factory=list)  # jobs whose lost run was replaced by a new one


def reconcile_jobs(
    settings: Settings, starter: JobStarter, *, never_started_after: timedelta = NEVER_STARTED_AFTER
) -> Reconciled:
    """Run again the unfinished jobs whose flow run was lost, fail those whose run ended or vanished."""
    reconciled = Reconciled()
    with session_scope(settings.resolved_database_url) as session:
        jobs = repository.unfinished_jobs(session)
    if not jobs:
        return reconciled
    cutoff = utcnow() - timedelta(seconds=settings.job_lease_seconds)
    with get_client(sync_client=True) as client:
        for job in jobs:
            run = _read_run(client, job)
            if _is_lost(job, run, cutoff):
                outcome = _take_back_lost(settings, starter, client, job, run, cutoff)
                if outcome is not None:
                    getattr(reconciled, outcome).append(job.id)
                continue
            message = _why_dead(job, run, never_started_after)
            if message is None:
                continue
            with session_scope(settings.resolved_database_url) as session:
                current = repository.find_job(session, job.id)
                if current is None or current.status.is_final:
                    continue  # finished while we looked
                repository.fail_job(session, job.id, message)
            reconciled.failed.append(job.id)
    return reconciled


def _read_run(client: SyncPrefectClient, job: IngestJob) -> FlowRun | None:
    if not job.flow_run_id:
        return None
    try:
        return client.read_flow_run(UUID(job.flow_run_id))
    except ObjectNotFound:
        return None


def _is_lost(job: IngestJob, run: FlowRun | None, cutoff: datetime) -> bool:
    """A job's flow run is lost when its process stopped renewing the job's lease, or when Prefect
    says the run crashed (the runner saw its process exit, or a graceful stop handed the job back)."""
    if job.status == JobStatus.processing and repository.is_lease_expired(job, cutoff):
        return True
    return _crashed(run) and (job.status == JobStatus.processing or job.heartbeat_at is None)


def _crashed(run: FlowRun | None) -> bool:
    return run is not None and run.state is not None and run.state.type.value == "CRASHED"


def _take_back_lost(
    settings: Settings, starter: JobStarter, client: SyncPrefectClient, job: IngestJob, run: FlowRun | None, cutoff: datetime
) -> str | None:
    """Claim a lost job (one reconciler wins), mark its run Crashed, and start it again or, after
    `job_max_attempts` runs, fail it naming what happened. "rerun", "failed", or None: another won."""
    last_seen = f"last seen {as_utc(job.heartbeat_at).isoformat(timespec='seconds')}" if job.heartbeat_at else "handed back on a stop"
    run_name = run.name if run is not None else job.flow_run_id
    # A crashed run's process is gone for sure: its heartbeat, however recent, will not be renewed.
    cutoff = utcnow() if _crashed(run) else cutoff
    with session_scope(settings.resolved_database_url) as session:
        if not repository.claim_lost_job(session, job, cutoff, f"{WAITING_FOR_PREFECT}flow run {run_name} was lost"):
            return None
    if run is not None and run.state is not None and run.state.type.value not in FINAL_RUN_STATES:
        try:
            client.set_flow_run_state(run.id, Crashed(message=f"its process was lost ({last_seen})"), force=True)
        except Exception:  # noqa: BLE001 - the job's outcome does not wait for Prefect's record of it
            log.exception("could not mark flow run %s crashed", run.id)
    attempts = job.attempts + (0 if job.status == JobStatus.processing else 1)  # as claim_lost_job counts
    if attempts >= settings.job_max_attempts:
        message = f"the flow run's process was lost {attempts} times; {last_seen} (flow run {run_name})"
        with session_scope(settings.resolved_database_url) as session:
            repository.fail_job(session, job.id, message)
        return "failed"
    starter.start(job.id, JobKind(job.kind), attempts)
    return "rerun"


def _why_dead(job: IngestJob, run: FlowRun | None, never_started_after: timedelta) -> str | None:
    if not job.flow_run_id:
        if job.status == JobStatus.pending and utcnow() - as_utc(job.updated_at) > never_started_after:
            return "the job's flow run was never started"
        return None
    if run is None:
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
                if self.lease.held():
                    reconciled = reconcile_jobs(self.settings, self.starter)
                    if reconciled.failed:
                        log.warning("failed %d job(s) whose flow runs died: %s", len(reconciled.failed), ", ".join(reconciled.failed))
                    if reconciled.rerun:
                        log.warning("started again %d job(s) whose flow runs were lost: %s", len(reconciled.rerun), ", ".join(reconciled.rerun))
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
