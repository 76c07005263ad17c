"""An accepted job survives a graceful stop of `gristmill serve`: its run is stopped after the grace
period, handed back, and run again on the next start, to completion with nothing doubled."""

import os
import signal
import time
from pathlib import Path

import pytest

from tests.http_server import LoopbackServer
from tests.running_service import create_library, ingest, running_service, wait_for_job


@pytest.mark.slow
def test_a_job_running_when_serve_is_stopped_completes_after_the_next_start(
    lone_prefect_server: str, second_model_url: str, web: LoopbackServer, tmp_path: Path
) -> None:
    home, out = tmp_path / "home", tmp_path / "serve.out"
    settings = {"GRISTMILL_SHUTDOWN_GRACE_SECONDS": "1", "PREFECT_API_URL": lone_prefect_server}
    page = b"# Weirs\n\nA weir raises the water upstream of the mill."
    web.serve("/weirs.md", page, content_type="text/markdown", delay=60)
    with running_service(home, second_model_url, out, extra_env=settings) as service, service.client() as client:
        library = create_library(client, "weirs")
        job = ingest(client, library["id"], {"items": [
            {"content": "The mill race carries water to the wheel.", "title": "race"},
            {"url": web.url("/weirs.md")},
        ]})
        note_id = job["source_ids"][0]
        _wait_until(lambda: client.get(f"/v1/sources/{note_id}").json()["status"] == "completed")
        assert client.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "processing"
        os.killpg(service.process.pid, signal.SIGTERM)
        assert service.process.wait(timeout=60) == 0
    said = out.read_text()
    assert "flow runs still running after 1 s are stopped; their jobs run again on the next start" in said
    web.serve("/weirs.md", page, content_type="text/markdown")
    with running_service(home, second_model_url, out, extra_env=settings) as again, again.client() as client:
        done = wait_for_job(client, job["job_id"], timeout=60)
        assert done["status"] == "completed", done
        assert done["counts"]["completed"] == 2
        assert done["chunk_count"] == 2
        assert client.get(f"/v1/sources/{note_id}/chunks").json()["total"] == 1  # stored once, not twice


def _wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.2)
