"""Starting ingest flow runs from the API's side, against a real Prefect server (no runner needed)."""

import json
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from gristmill.internals import QUICK_RETRY_DELAYS_SECONDS
from gristmill.settings import get_settings
from gristmill.usecases.orchestration import WAITING_FOR_PREFECT, JobStarter
from storage.db import session_scope
from storage.tables import IngestJob, JobStatus
from tests import builders
from tests.conftest import free_port
from tests.http_server import LoopbackServer, Reply

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def ingest_deployment(prefect_server: str) -> str:
    """The ingest deployment registered with Prefect, as the runner registers it; no runner serves it."""
    from flows.ingest import ingest_job

    return str(ingest_job.to_deployment(name="ingest").apply())


def queued_job(note: str) -> IngestJob:
    return builders.queued_job(note, "orchestration")


def start_flow_run(job_id: str) -> str:
    return JobStarter(get_settings()).create_flow_run(job_id)


def stored_job(job_id: str) -> IngestJob:
    with session_scope(get_settings().resolved_database_url) as session:
        return session.get(IngestJob, job_id)


def test_a_start_prefect_refuses_waits_and_is_made_once_prefect_answers(
    gristmill_home: Path, ingest_deployment: str
) -> None:
    job = queued_job("The mill wheel turns when the sluice opens.")
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        assert JobStarter(get_settings()).start(job.id) is None
    waiting = stored_job(job.id)
    assert waiting.status == JobStatus.pending and waiting.flow_run_id is None
    assert waiting.error.startswith(WAITING_FOR_PREFECT)

    assert JobStarter(get_settings()).start_waiting() == ([job.id], 0)
    started = stored_job(job.id)
    assert started.status == JobStatus.pending and started.error is None
    # The job id is the run's idempotency key: starting it again (an answer lost on the way) makes no second run.
    assert start_flow_run(job.id) == started.flow_run_id
    assert JobStarter(get_settings()).start_waiting() == ([], 0)


def test_a_job_started_at_once_records_its_flow_run(gristmill_home: Path, ingest_deployment: str) -> None:
    job = queued_job("Grain is ground between two stones.")
    flow_run_id = JobStarter(get_settings()).start(job.id)
    assert flow_run_id is not None
    assert stored_job(job.id).flow_run_id == flow_run_id and stored_job(job.id).error is None


def test_a_conflict_prefect_answers_503_is_retried_at_once_with_the_same_idempotency_key() -> None:
    """Prefect's SQLite answers 503 when two writes collide; a loopback server plays that Prefect."""
    run_id = "4f6c1b5e-0000-4000-8000-000000000001"
    with LoopbackServer() as prefect:
        prefect.serve("/api/deployments/name/ingest/ingest", json.dumps({"id": "dep-1"}), content_type="application/json")
        prefect.sequence("/api/deployments/dep-1/create_flow_run", [
            Reply(503, b'{"detail": "database is locked"}'),
            Reply(503, b'{"detail": "database is locked"}'),
            Reply(201, json.dumps({"id": run_id}).encode(), content_type="application/json"),
        ])
        with temporary_settings(updates={PREFECT_API_URL: prefect.url("/api")}):
            assert start_flow_run("job-7") == run_id
        creates = [r for r in prefect.requests if r.path.endswith("/create_flow_run")]
    bodies = [json.loads(r.body) for r in creates]
    assert len(bodies) == 3
    assert all(b["idempotency_key"] == "ingest-job-7" and b["parameters"] == {"job_id": "job-7"} for b in bodies)
    assert bodies[0]["state"]["type"] == "SCHEDULED"


def test_prefect_busy_for_longer_than_the_quick_retries_raises() -> None:
    with LoopbackServer() as prefect:
        prefect.serve("/api/deployments/name/ingest/ingest", json.dumps({"id": "dep-2"}), content_type="application/json")
        prefect.serve("/api/deployments/dep-2/create_flow_run", b'{"detail": "busy"}', status=503)
        with temporary_settings(updates={PREFECT_API_URL: prefect.url("/api")}), pytest.raises(httpx.HTTPStatusError):
            start_flow_run("job-8")
        assert prefect.hits("/api/deployments/dep-2/create_flow_run") == len(QUICK_RETRY_DELAYS_SECONDS) + 1
