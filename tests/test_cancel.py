"""Cancelling a job, and the way out for a source nothing works on any more. The REST API on a real
SQLite home with no runner, so jobs wait where the test leaves them; the CLI standalone on the same home."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob, SourceStatus, utcnow
from tests.conftest import LocalApi
from tests.http_server import LoopbackServer
from tests.running_service import Service, create_library, ingest, search, wait_for_job


def _queue(api: LocalApi, *contents: str) -> dict:
    with api.client() as client:
        library = client.post("/v1/libraries", json={"name": "cancels"}).json()
        answer = client.post(f"/v1/libraries/{library['id']}/ingest", json={"items": [{"content": c} for c in contents]})
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_cancelled_job_ends_cancelled_with_its_sources_and_a_second_cancel_is_a_conflict(local_api: LocalApi) -> None:
    queued = _queue(local_api, "The hopper feeds the stones.", "The stones grind the grain.")
    with local_api.client() as client:
        cancelled = client.post(f"/v1/jobs/{queued['job_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        job = cancelled.json()
        assert job["status"] == "cancelled" and job["finished_at"]
        assert job["counts"] == {"completed": 0, "partial": 0, "failed": 0, "duplicate": 0, "removed": 0, "cancelled": 2}
        source = client.get(f"/v1/sources/{queued['source_ids'][0]}").json()
        assert (source["status"], source["error_code"], source["error"]) == ("cancelled", "cancelled", "cancelled by the caller")

        again = client.post(f"/v1/jobs/{queued['job_id']}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "job_finished"
        assert client.post("/v1/jobs/no-such-job/cancel").status_code == 404

        retried = client.post(f"/v1/sources/{queued['source_ids'][0]}/retry")
        assert retried.status_code == 202, retried.text
        assert client.get(f"/v1/sources/{queued['source_ids'][0]}").json()["status"] == "pending"
        assert client.delete(f"/v1/sources/{queued['source_ids'][1]}").status_code == 204


def test_a_cancelled_source_is_not_moved_on_by_its_flow_run_unless_its_chunks_were_committed(local_api: LocalApi) -> None:
    from gristmill.errors import SourceCancelled

    queued = _queue(local_api, "The miller dresses the stones.")
    source_id = queued["source_ids"][0]
    with local_api.client() as client:
        assert client.post(f"/v1/jobs/{queued['job_id']}/cancel").status_code == 200
    with session_scope(get_settings().resolved_database_url) as session:
        try:
            repository.update_source(session, source_id, status=SourceStatus.embedding)
        except SourceCancelled as error:
            assert error.code == "source_cancelled"
        else:
            raise AssertionError("a cancelled source took a stage update")
        stored = repository.update_source(session, source_id, status=SourceStatus.completed, chunk_count=1)
        assert stored.status == SourceStatus.completed


def test_a_source_stuck_in_a_lost_job_can_be_deleted_and_one_in_a_live_job_cannot(local_api: LocalApi) -> None:
    queued = _queue(local_api, "The sack hoist lifts the grain.", "The meal spout fills the sacks.")
    stuck, other = queued["source_ids"]
    with session_scope(get_settings().resolved_database_url) as session:
        repository.start_job(session, queued["job_id"], "run-a")
        repository.update_source(session, stuck, status=SourceStatus.embedding)
    with local_api.client() as client:
        busy = client.delete(f"/v1/sources/{stuck}")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "source_busy"
        not_yet = client.post(f"/v1/sources/{stuck}/retry")
        assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "not_retryable"
        with session_scope(get_settings().resolved_database_url) as session:  # the run's process dies
            job = session.get(IngestJob, queued["job_id"])
            job.heartbeat_at = utcnow() - timedelta(seconds=get_settings().job_lease_seconds + 1)
            session.add(job)
            session.commit()
        assert client.post(f"/v1/sources/{other}/retry").status_code == 202
        assert client.delete(f"/v1/sources/{stuck}").status_code == 204


def test_the_cli_cancels_a_job_standalone(local_api: LocalApi, gristmill_home: Path) -> None:
    queued = _queue(local_api, "The tentering gear sets the gap.")
    env = {**os.environ, "GRISTMILL_HOME": str(gristmill_home)}
    env.pop("GRISTMILL_URL", None)
    command = [sys.executable, "-m", "gristmill.cli", "jobs", "cancel", queued["job_id"]]
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": queued["job_id"], "status": "cancelled", "cancelled": 1}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "(job_finished)" in again.stderr


def test_the_cli_cancels_a_job_through_a_running_service(local_api: LocalApi, tmp_path: Path) -> None:
    queued = _queue(local_api, "The damsel shakes the shoe.")
    env = {**os.environ, "GRISTMILL_HOME": str(tmp_path / "elsewhere"), "GRISTMILL_URL": local_api.base_url,
           "GRISTMILL_API_KEY": local_api.admin_key}
    done = subprocess.run([sys.executable, "-m", "gristmill.cli", "jobs", "cancel", queued["job_id"]],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"job {queued['job_id']} cancelled; 1 source(s) cancelled before they were stored"


@pytest.mark.slow
def test_cancelling_a_running_replacement_leaves_the_old_version_whole(service: Service, web: LoopbackServer) -> None:
    web.serve("/cancelled-ferry.md", b"# Ferry\n\nThe new timetable nobody will see.", content_type="text/markdown", delay=8)
    with service.client() as client:
        library = create_library(client, "cancel-running")["id"]
        old = ingest(client, library, {"content": "The old ferry timetable: boats at nine.", "external_id": "cancel-ferry"})
        assert wait_for_job(client, old["job_id"])["status"] == "completed"
        new = ingest(client, library, {"items": [{"url": web.url("/cancelled-ferry.md"), "external_id": "cancel-ferry"}]})
        deadline = time.monotonic() + 60
        while (job := client.get(f"/v1/jobs/{new['job_id']}").json())["status"] != "processing":
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        cancelled = client.post(f"/v1/jobs/{new['job_id']}/cancel").json()
        assert (cancelled["status"], cancelled["counts"]["cancelled"]) == ("cancelled", 1)
        with get_client(sync_client=True) as prefect:
            deadline = time.monotonic() + 60
            while (state := prefect.read_flow_run(UUID(job["flow_run_id"])).state.type.value) != "CANCELLED":
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
        assert client.get(f"/v1/sources/{new['source_ids'][0]}").json()["status"] == "cancelled"
        hits = search(client, library, "ferry timetable", limit=10, filter={"external_ids": ["cancel-ferry"]})
        assert [hit["text"] for hit in hits] == ["The old ferry timetable: boats at nine."]
