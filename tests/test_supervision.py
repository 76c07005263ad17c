"""`gristmill serve` under faults: a crashed child is restarted, a killed supervisor takes its children
with it, and the next start works."""

import os
import signal
import time
from pathlib import Path

import pytest

from gristmill.probes import port_in_use
from gristmill.supervisor.processes import descendants
from gristmill.supervisor.restarts import MAX_QUICK_CRASHES, RestartBackoff
from tests.conftest import free_port
from tests.http_server import LoopbackServer
from tests.running_service import Service, create_library, ingest, running_service, wait_for_job


def test_a_child_that_keeps_crashing_quickly_is_given_up_after_a_bounded_number_of_restarts() -> None:
    backoff = RestartBackoff()
    delays = [backoff.delay_after_exit(ran_for_seconds=2) for _ in range(MAX_QUICK_CRASHES + 1)]
    assert delays == [1, 2, 4, 8, 16, None]


def test_a_child_that_ran_a_while_before_crashing_starts_its_back_off_again() -> None:
    backoff = RestartBackoff()
    assert [backoff.delay_after_exit(ran_for_seconds=2) for _ in range(3)] == [1, 2, 4]
    assert backoff.delay_after_exit(ran_for_seconds=3600) == 1


def _pid_of(service: Service, command_part: str) -> int:
    for pid, _name in descendants(service.process.pid):
        if command_part in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return pid
    raise AssertionError(f"no child of serve runs {command_part}")


@pytest.mark.slow
def test_a_killed_embeddings_server_is_restarted_and_the_job_completes(
    prefect_server: str, second_model_url: str, web: LoopbackServer, tmp_path: Path
) -> None:
    web.serve("/slow-herons.md", b"# Herons\n\nHerons stand still in shallow water for hours.", content_type="text/markdown", delay=3)
    out = tmp_path / "serve.out"
    with running_service(tmp_path / "home", second_model_url, out) as service, service.client() as client:
        library = create_library(client, "herons")
        job = ingest(client, library["id"], {"items": [{"url": web.url("/slow-herons.md")}]})
        embeddings = _pid_of(service, "gristmill.embeddings")
        os.kill(embeddings, signal.SIGKILL)  # while the job still waits for its page
        done = wait_for_job(client, job["job_id"], timeout=120)
        assert done["status"] == "completed", done
        assert done["chunk_count"] == 1
        assert _pid_of(service, "gristmill.embeddings") != embeddings
        assert service.process.poll() is None
    said = out.read_text()
    assert "embeddings server exited with code -9" in said
    assert "restarting embeddings server" in said


@pytest.mark.slow
def test_a_supervisor_killed_outright_leaves_no_child_and_the_next_start_works(
    prefect_server: str, second_model_url: str, tmp_path: Path
) -> None:
    ports = (free_port(), free_port())
    home, out = tmp_path / "home", tmp_path / "serve.out"
    with running_service(home, second_model_url, out, ports=ports) as service:
        children = [pid for pid, _ in descendants(service.process.pid)]
        assert len(children) >= 3  # embeddings server, runner (and its forkserver), API
        service.process.kill()
        service.process.wait()
        deadline = time.monotonic() + 10
        while (alive := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == []
        assert not any(port_in_use("127.0.0.1", port) for port in ports)
    with running_service(home, second_model_url, out, ports=ports) as again, again.client() as client:
        assert client.get("/v1/libraries").status_code == 200


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
