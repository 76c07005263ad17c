"""Jobs whose flow run's process is gone: the lease on the job row, one claim per lost run, a new run,
and after `job_max_attempts` a failure that names what happened. Real SQLite, a real Prefect server
(no runner: the tests play the flow run's part with the repository calls it makes)."""

from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client

from gristmill.settings import get_settings
from gristmill.usecases.orchestration import DEPLOYMENTS, JobStarter
from gristmill.usecases.reconciler import reconcile_jobs
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob, JobKind, JobStatus, SourceStatus, utcnow
from tests import builders


@pytest.fixture
def ingest_deployment(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ingest deployment that no runner serves: the session's running service serves `ingest/ingest`
    on the same Prefect server and would otherwise run (and end) these tests' flow runs."""
    from flows.ingest import ingest_job

    monkeypatch.setitem(DEPLOYMENTS, JobKind.ingest, "ingest/unserved")
    return str(ingest_job.to_deployment(name="unserved").apply())


def queued_job(note: str) -> IngestJob:
    return builders.queued_job(note, "leases")


def stored_job(job_id: str) -> IngestJob:
    with session_scope(get_settings().resolved_database_url) as session:
        return session.get(IngestJob, job_id)


def run_starts(job_id: str, flow_run_id: str) -> IngestJob:
    """What a flow run does first: it starts the job (an attempt, a first heartbeat)."""
    with session_scope(get_settings().resolved_database_url) as session:
        return repository.start_job(session, job_id, flow_run_id)


def heartbeat_stops(job_id: str, *, seconds_ago: float = 3600) -> None:
    """The run's process died `seconds_ago`: its last heartbeat is that old."""
    with session_scope(get_settings().resolved_database_url) as session:
        job = session.get(IngestJob, job_id)
        job.heartbeat_at = utcnow() - timedelta(seconds=seconds_ago)
        session.add(job)
        session.commit()


def test_a_heartbeat_is_renewed_only_by_the_run_that_holds_the_job(gristmill_home: Path) -> None:
    job = queued_job("The miller's heartbeat.")
    run_starts(job.id, "run-a")
    heartbeat_stops(job.id, seconds_ago=30)
    with session_scope(get_settings().resolved_database_url) as session:
        assert repository.renew_heartbeat(session, job.id, "run-b") is False
        assert repository.renew_heartbeat(session, job.id, "run-a") is True
    assert utcnow() - stored_job(job.id).heartbeat_at.replace(tzinfo=utcnow().tzinfo) < timedelta(seconds=5)
    assert stored_job(job.id).attempts == 1


def test_of_two_reconcilers_that_find_a_job_lost_exactly_one_claims_it(gristmill_home: Path) -> None:
    job = queued_job("Two millers, one sack.")
    run_starts(job.id, "run-a")
    heartbeat_stops(job.id)
    seen_by_first, seen_by_second = stored_job(job.id), stored_job(job.id)
    cutoff = utcnow() - timedelta(seconds=60)
    with session_scope(get_settings().resolved_database_url) as session:
        assert repository.claim_lost_job(session, seen_by_first, cutoff, "lost") is True
        assert repository.claim_lost_job(session, seen_by_second, cutoff, "lost") is False
    claimed = stored_job(job.id)
    assert (claimed.status, claimed.flow_run_id, claimed.attempts) == (JobStatus.pending, None, 1)


def test_a_job_with_a_fresh_heartbeat_is_not_claimed(gristmill_home: Path) -> None:
    job = queued_job("Still turning.")
    run_starts(job.id, "run-a")
    with session_scope(get_settings().resolved_database_url) as session:
        assert repository.claim_lost_job(session, stored_job(job.id), utcnow() - timedelta(seconds=60), "lost") is False
    assert stored_job(job.id).status == JobStatus.processing


def test_a_lost_run_is_marked_crashed_and_the_job_runs_again_until_its_attempts_are_spent(
    gristmill_home: Path, ingest_deployment: str
) -> None:
    settings = get_settings()
    starter = JobStarter(settings)
    job = queued_job("The sluice gate sticks.")
    runs = [starter.start(job.id)]
    for attempt in range(1, settings.job_max_attempts + 1):
        run_starts(job.id, runs[-1])
        heartbeat_stops(job.id)
        reconciled = reconcile_jobs(settings, starter)
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(UUID(runs[-1])).state.type.value == "CRASHED"
        if attempt < settings.job_max_attempts:
            assert reconciled.rerun == [job.id], reconciled
            again = stored_job(job.id)
            assert again.status == JobStatus.pending and again.flow_run_id not in (None, *runs)
            runs.append(again.flow_run_id)
    assert reconciled.failed == [job.id] and reconciled.rerun == []
    failed = stored_job(job.id)
    assert failed.status == JobStatus.failed
    with session_scope(settings.resolved_database_url) as session:
        sources = repository.job_sources(session, failed)
    assert [s.status for s in sources] == [SourceStatus.failed]
    assert sources[0].error.startswith(f"the flow run's process was lost {settings.job_max_attempts} times; last seen 20")
    assert len(set(runs)) == settings.job_max_attempts


def test_a_run_its_runner_cancels_on_shutdown_hands_its_job_back_and_a_cancel_cancels_it(gristmill_home: Path) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Cancelling

    from flows.state_hooks import RUNNER_SHUTDOWN_MESSAGE, cancel_job_on_cancellation

    stopped, cancelled = queued_job("The runner stops."), queued_job("The caller cancels.")
    for job in (stopped, cancelled):
        run = FlowRun(id=uuid4(), flow_id=uuid4(), parameters={"job_id": job.id})
        run_starts(job.id, str(run.id))
        message = f"{RUNNER_SHUTDOWN_MESSAGE}." if job is stopped else "cancelled by the caller"
        cancel_job_on_cancellation(None, run, Cancelling(message=message))
    handed_back = stored_job(stopped.id)
    assert (handed_back.status, handed_back.heartbeat_at) == (JobStatus.processing, None)
    assert stored_job(cancelled.id).status == JobStatus.cancelled
