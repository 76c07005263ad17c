"""`gristmill serve` under faults: a crashed child is restarted, a killed supervisor takes its children
with it, and the next start works and finishes the job that was running."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from gristmill.probes import port_in_use
from gristmill.supervisor.processes import descendants
from gristmill.supervisor.restarts import MAX_QUICK_CRASHES, RestartBackoff
from tests.conftest import free_port
from tests.http_server import LoopbackServer
from tests.running_service import Service, create_library, ingest, running_service, search, wait_for_job


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
    lone_prefect_server: str, second_model_url: str, web: LoopbackServer, tmp_path: Path
) -> None:
    web.serve("/slow-herons.md", b"# Herons\n\nHerons stand still in shallow water for hours.", content_type="text/markdown", delay=3)
    out = tmp_path / "serve.out"
    on_lone = {"PREFECT_API_URL": lone_prefect_server}
    with running_service(tmp_path / "home", second_model_url, out, extra_env=on_lone) as service, service.client() as client:
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
def test_a_supervisor_killed_outright_mid_replacement_leaves_no_child_and_the_next_start_finishes_the_job(
    lone_prefect_server: str, second_model_url: str, web: LoopbackServer, tmp_path: Path
) -> None:
    ports = (free_port(), free_port())
    home, out = tmp_path / "home", tmp_path / "serve.out"
    new_version = b"# Ferry\n\nBoats now leave at ten from the north pier."
    web.serve("/ferry.md", new_version, content_type="text/markdown", delay=60)
    lease = {"GRISTMILL_JOB_LEASE_SECONDS": "3", "PREFECT_API_URL": lone_prefect_server}
    with running_service(home, second_model_url, out, ports=ports, extra_env=lease) as service, service.client() as client:
        library = create_library(client, "ferries")
        old = ingest(client, library["id"], {"content": "Ferry timetable: boats leave at nine.", "external_id": "ferry"})
        assert wait_for_job(client, old["job_id"])["status"] == "completed"
        new = ingest(client, library["id"], {"items": [{"url": web.url("/ferry.md"), "external_id": "ferry"}]})
        lost_run = _wait_for_processing(client, new["job_id"])["flow_run_id"]
        children = [pid for pid, _ in descendants(service.process.pid)]
        assert len(children) >= 4  # embeddings server, runner, its forkserver, the flow run, API
        service.process.kill()
        service.process.wait()
        deadline = time.monotonic() + 10
        while (alive := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == []
        assert not any(port_in_use("127.0.0.1", port) for port in ports)
    web.serve("/ferry.md", new_version, content_type="text/markdown", delay=5)  # the re-run's fetch: still slow
    with running_service(home, second_model_url, out, ports=ports, extra_env=lease) as again, again.client() as client:
        assert _texts(client, library["id"]) == ["Ferry timetable: boats leave at nine."]  # the old version, whole
        done = wait_for_job(client, new["job_id"], timeout=60)
        assert done["status"] == "completed", done
        assert done["flow_run_id"] != lost_run
        [text] = _texts(client, library["id"])  # one version, one chunk: nothing doubled
        assert text.endswith("Boats now leave at ten from the north pier."), text
        with temporary_settings(updates={PREFECT_API_URL: lone_prefect_server}), get_client(sync_client=True) as prefect:
            assert prefect.read_flow_run(UUID(lost_run)).state.type.value == "CRASHED"


def _wait_for_processing(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] != "processing":
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def _texts(client: httpx.Client, library_id: str) -> list[str]:
    """Every chunk text of the library's `ferry` source(s), as search finds them."""
    hits = search(client, library_id, "ferry boats leave", limit=10, filter={"external_ids": ["ferry"]})
    return [hit["text"] for hit in hits]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
def test_an_api_killed_mid_request_stores_nothing_of_it_and_the_job_it_accepted_completes(
    lone_prefect_server: str, second_model_url: str, tmp_path: Path
) -> None:
    on_lone = {"PREFECT_API_URL": lone_prefect_server}
    out = tmp_path / "serve.out"
    with running_service(tmp_path / "home", second_model_url, out, extra_env=on_lone) as service, service.client() as client:
        library = create_library(client, "sluices")["id"]
        accepted = ingest(client, library, {"content": "The sluice gate opens at high tide.", "external_id": "gate"})
        api = _pid_of(service, "api.app")
        body_started, resume = threading.Event(), threading.Event()

        def half_a_body() -> Iterator[bytes]:
            yield b'{"items": [{"content": "Half of a note abou'
            body_started.set()
            resume.wait(30)
            yield b't eels."}]}'

        failures: list[Exception] = []

        def send() -> None:
            try:
                with service.client() as sender:
                    sender.post(f"/v1/libraries/{library}/ingest", content=half_a_body(), headers={"Content-Type": "application/json"})
            except httpx.HTTPError as error:
                failures.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        assert body_started.wait(10)
        time.sleep(0.5)  # the API is reading the body now
        os.kill(api, signal.SIGKILL)
        resume.set()
        sender.join(60)
        assert len(failures) == 1, failures  # the caller sees the request fail, never a false 202

        deadline = time.monotonic() + 60  # the supervisor starts a new API after its back-off
        while _answers(client) is False:
            assert time.monotonic() < deadline, "the API was not restarted"
            time.sleep(0.5)
        assert _pid_of(service, "api.app") != api
        done = wait_for_job(client, accepted["job_id"])
        assert done["status"] == "completed" and done["chunk_count"] == 1, done
        sources = client.get(f"/v1/libraries/{library}/sources").json()["data"]
        assert [s["external_id"] for s in sources] == ["gate"]  # nothing of the cut request
        jobs = client.get("/v1/jobs", params={"library_id": library}).json()["data"]
        assert [j["id"] for j in jobs] == [accepted["job_id"]]
    assert "REST API exited with code -9" in out.read_text()


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
