"""The running service, started as users start it (`gristmill serve`), driven over HTTP."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from flows.ingest import flow_run_process_name
from storage import repository
from storage.db import session_scope
from storage.tables import Source, SourceStatus
from tests.http_server import LoopbackServer, RecordedRequest, Reply
from tests.running_service import Service, create_library, new_key, search, wait_for_job
from tests.test_webhooks import SECRET, readme_verify

pytestmark = pytest.mark.slow
# The whole file runs against a service on SQLite and one on PostgreSQL (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def test_health_and_openapi(service: Service) -> None:
    health = httpx.get(f"{service.base_url}/healthz")
    assert health.status_code == 200
    assert health.json()["checks"] == {"api": True, "database": True, "prefect": True, "embeddings": True}
    paths = httpx.get(f"{service.base_url}/openapi.json").json()["paths"]
    for path in ("/v1/libraries", "/v1/libraries/{library_id}/ingest", "/v1/libraries/{library_id}/files",
                 "/v1/jobs/{job_id}", "/v1/sources/{source_id}", "/v1/libraries/{library_id}/search"):
        assert path in paths
    assert (service.home / "admin.key").stat().st_mode & 0o777 == 0o600


def test_the_home_and_the_embeddings_server_are_private(service: Service) -> None:
    with service.client() as client:
        library = create_library(client, "home-permissions")
        job = client.post(f"/v1/libraries/{library['id']}/ingest", json={"content": "Only the service's user reads this."}).json()
        assert wait_for_job(client, job["job_id"])["status"] == "completed"
    opened = {}
    for root, folders, files in os.walk(service.home):
        for name in folders + files:
            path = Path(root) / name
            mode = path.lstat().st_mode & 0o777
            if mode not in (0o600, 0o700) and not path.is_symlink() and not path.is_socket():
                opened[str(path.relative_to(service.home))] = oct(mode)
    assert (service.home.stat().st_mode & 0o777, opened) == (0o700, {})
    assert any((service.home / "lancedb").rglob("*.lance")), "the ingest wrote no LanceDB files to check"

    key = (service.home / "embeddings.key").read_text().strip()
    body = {"input": ["hello"], "model": "all-MiniLM-L6-v2"}
    assert httpx.post(f"{service.embeddings_url}/embeddings", json=body, timeout=60).status_code == 401
    signed = httpx.post(f"{service.embeddings_url}/embeddings", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert signed.status_code == 200
    assert httpx.get(service.embeddings_url.removesuffix("/v1") + "/healthz").status_code == 200


def test_auth_errors_use_the_envelope(service: Service) -> None:
    missing = httpx.get(f"{service.base_url}/v1/libraries")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.get(f"{service.base_url}/v1/libraries", headers={"X-API-Key": "gm_nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == {
        "type": "authentication_error", "code": "invalid_api_key", "message": "invalid or revoked API key", "details": None
    }
    reader_key = new_key(service, "readers", "ingest.read")
    with service.client(reader_key) as reader:
        assert reader.get("/v1/libraries").status_code == 200
        denied = reader.post("/v1/libraries", json={"name": "nope"})
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_scope"


def test_library_crud(service: Service) -> None:
    with service.client() as client:
        library = create_library(client, "crud", description="d", metadata={"team": "docs"},
                                 chunking={"max_tokens": 128, "overlap_tokens": 16})
        assert library["chunking"] == {"max_tokens": 128, "overlap_tokens": 16}
        assert library["embedding_model"] == "all-MiniLM-L6-v2" and library["embedding_dim"] == 384
        again = client.post("/v1/libraries", json={"name": "crud"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "library_exists"
        patched = client.patch(f"/v1/libraries/{library['id']}", json={"description": "new"}).json()
        assert patched["description"] == "new" and patched["name"] == "crud"
        assert library["id"] in [lib["id"] for lib in client.get("/v1/libraries").json()["data"]]
        assert client.delete(f"/v1/libraries/{library['id']}").status_code == 204
        gone = client.get(f"/v1/libraries/{library['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"


def test_inline_url_and_file_are_ingested_and_found(service: Service, web: LoopbackServer) -> None:
    web.serve("/tides.html", "<html><head><title>Tides</title></head><body><article><h1>Tides</h1>"
              "<p>Spring tides happen when the sun and moon align, making high tides higher.</p>"
              "<p>Neap tides happen at the quarter moons.</p></article></body></html>",
              content_type="text/html; charset=utf-8")
    with service.client() as client:
        library = create_library(client, "mixed")
        answer = client.post(f"/v1/libraries/{library['id']}/ingest", json={"items": [
            {"content": "# Keys\n\nTo rotate API keys open Settings and press Regenerate.", "content_type": "text/markdown",
             "title": "keys.md", "metadata": {"team": "security"}},
            {"url": web.url("/tides.html")},
        ]})
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        assert [r["status"] for r in accepted["results"]] == ["queued", "queued"]
        upload = client.post(
            f"/v1/libraries/{library['id']}/files",
            files={"file": ("volcano.txt", b"Volcanoes erupt when magma pressure builds under the crust.", "text/plain")},
        )
        assert upload.status_code == 202, upload.text
        first = wait_for_job(client, accepted["job_id"])
        second = wait_for_job(client, upload.json()["job_id"])
        assert first["status"] == "completed" and first["counts"]["completed"] == 2, first
        assert second["status"] == "completed", second
        assert first["progress"] == {"current": 2, "total": 2}
        assert first["prefect_url"].endswith(f"/runs/flow-run/{first['flow_run_id']}")

        keys_id, tides_id = accepted["source_ids"]
        volcano_id = upload.json()["source_ids"][0]
        assert search(client, library["id"], "how do I rotate my API keys?")[0]["source_id"] == keys_id
        assert search(client, library["id"], "spring tides sun and moon")[0]["source_id"] == tides_id
        assert search(client, library["id"], "magma pressure volcano", mode="keyword")[0]["source_id"] == volcano_id
        filtered = search(client, library["id"], "tides", filter={"metadata": {"team": "security"}})
        assert {r["source_id"] for r in filtered} == {keys_id}

        source = client.get(f"/v1/sources/{tides_id}", params={"include": "content"}).json()
        assert source["status"] == "completed" and source["content_format"] == "html"
        assert "Spring tides happen" in source["content"]
        chunks = client.get(f"/v1/sources/{keys_id}/chunks").json()
        assert chunks["total"] == 1 and "Regenerate" in chunks["data"][0]["text"]
        listed = client.get(f"/v1/libraries/{library['id']}/sources", params={"limit": 2}).json()
        assert len(listed["data"]) == 2 and listed["next_cursor"]
        rest = client.get(f"/v1/libraries/{library['id']}/sources", params={"cursor": listed["next_cursor"]}).json()
        assert {s["id"] for s in listed["data"] + rest["data"]} == {keys_id, tides_id, volcano_id}


def test_duplicates_and_external_id_replacement(service: Service) -> None:
    with service.client() as client:
        library = create_library(client, "upserts")
        lib = library["id"]
        body = {"content": "The lighthouse keeper logs every passing ship.", "title": "log"}
        first = client.post(f"/v1/libraries/{lib}/ingest", json=body).json()
        wait_for_job(client, first["job_id"])
        duplicate = client.post(f"/v1/libraries/{lib}/ingest", json=body)
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["code"] == "duplicate_content"
        assert duplicate.json()["error"]["details"]["source_id"] == first["source_ids"][0]

        v1 = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "Ferry timetable: boats leave at nine.", "external_id": "ferry"}).json()
        wait_for_job(client, v1["job_id"])
        v2 = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "Ferry timetable: boats now leave at ten.", "external_id": "ferry"}).json()
        assert wait_for_job(client, v2["job_id"])["status"] == "completed"
        sources = client.get(f"/v1/libraries/{lib}/sources", params={"external_id": "ferry"}).json()["data"]
        assert [s["id"] for s in sources] == v2["source_ids"]
        texts = [r["text"] for r in search(client, lib, "ferry timetable", limit=10, filter={"external_ids": ["ferry"]})]
        assert texts == ["Ferry timetable: boats now leave at ten."]
        assert client.get(f"/v1/sources/{v1['source_ids'][0]}").status_code == 404

        unchanged = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "Ferry timetable: boats now leave at ten.", "external_id": "ferry"})
        assert unchanged.status_code == 202 and unchanged.json()["results"][0]["status"] == "duplicate"


def test_workspaces_are_isolated(service: Service) -> None:
    with service.client() as admin:
        library = create_library(admin, "private")
        job = admin.post(f"/v1/libraries/{library['id']}/ingest", json={"content": "Secret recipe: add cardamom."}).json()
        wait_for_job(admin, job["job_id"])
    other_key = new_key(service, "other-team", "ingest.read,ingest.write")
    with service.client(other_key) as other:
        assert other.get(f"/v1/libraries/{library['id']}").status_code == 404
        assert other.get(f"/v1/jobs/{job['job_id']}").status_code == 404
        assert other.get(f"/v1/sources/{job['source_ids'][0]}").status_code == 404
        assert other.post(f"/v1/libraries/{library['id']}/search", json={"query": "recipe"}).status_code == 404
        assert other.delete(f"/v1/sources/{job['source_ids'][0]}").status_code == 404
        assert library["id"] not in [lib["id"] for lib in other.get("/v1/libraries").json()["data"]]


def test_limits_and_malformed_bodies(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "limits")["id"]
        big = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "x" * (1024 * 1024 + 1)})
        assert big.status_code == 413 and big.json()["error"]["code"] == "content_too_large"
        png = client.post(f"/v1/libraries/{lib}/files", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")})
        assert png.status_code == 415
        assert "pdf" in png.json()["error"]["message"].lower()
        both = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "a", "url": "http://127.0.0.1/x"})
        assert both.status_code == 422 and both.json()["error"]["type"] == "invalid_request"
        too_many = client.post(f"/v1/libraries/{lib}/ingest", json={"items": [{"content": f"n{i}"} for i in range(101)]})
        assert too_many.status_code == 422
        assert too_many.json()["error"]["code"] == "validation_failed"
        long_id = client.post(f"/v1/libraries/{lib}/ingest", json={"content": "a", "external_id": "x" * 256})
        assert long_id.status_code == 422
        missing = client.post("/v1/libraries/nope/ingest", json={"content": "a"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "library_not_found"


def test_internal_addresses_are_refused_at_submission_and_on_every_redirect(service: Service, web: LoopbackServer) -> None:
    """The service allows only loopback (the test's web server) besides public addresses."""
    web.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/")
    with service.client() as client:
        lib = create_library(client, "outbound")["id"]
        metadata = client.post(f"/v1/libraries/{lib}/ingest", json={"url": "http://169.254.169.254/latest/meta-data/"})
        assert metadata.status_code == 400, metadata.text
        assert metadata.json()["error"]["code"] == "blocked_url"
        batch = client.post(f"/v1/libraries/{lib}/ingest", json={"items": [
            {"url": "http://10.0.0.7/"}, {"url": web.url("/to-metadata")},
        ]}).json()
        assert [r["status"] for r in batch["results"]] == ["error", "queued"]
        assert batch["results"][0]["error"]["code"] == "blocked_url"
        job = wait_for_job(client, batch["job_id"])
        source = client.get(f"/v1/sources/{batch['results'][1]['source_id']}").json()
    assert job["status"] == "failed"
    assert source["status"] == "failed" and source["error_code"] == "blocked_url"
    assert "169.254.169.254" in source["error"]


def test_a_killed_flow_run_is_replaced_and_its_job_completes_with_nothing_doubled(service: Service) -> None:
    paragraphs = "\n\n".join(
        f"## Part {i}\n\n" + " ".join(f"Harbour note {i}.{j}: the tide table changes with the season." for j in range(12))
        for i in range(60)
    )
    with service.client() as client:
        lib = create_library(client, "crashes")["id"]
        job = client.post(f"/v1/libraries/{lib}/ingest", json={"content": paragraphs, "content_type": "text/markdown"}).json()
        source_id = job["source_ids"][0]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/sources/{source_id}").json()["status"] != "embedding":
            assert time.monotonic() < deadline, "the source never reached the embedding stage"
            time.sleep(0.1)
        flow_run_id = client.get(f"/v1/jobs/{job['job_id']}").json()["flow_run_id"]
        _kill_flow_run_process(flow_run_id)

        done = wait_for_job(client, job["job_id"], timeout=180)
        assert done["status"] == "completed", done
        assert done["flow_run_id"] != flow_run_id
        source = client.get(f"/v1/sources/{source_id}").json()
        assert source["status"] == "completed" and source["chunk_count"] > 10
        assert client.get(f"/v1/sources/{source_id}/chunks").json()["total"] == source["chunk_count"]


def test_webhooks_announce_sources_and_jobs_and_a_failing_receiver_changes_nothing(
    service: Service, web: LoopbackServer
) -> None:
    arrivals: dict[str, list[tuple[float, RecordedRequest]]] = {"/hooks/good": [], "/hooks/broken": []}

    def receiver(status: int):
        def answer(request: RecordedRequest) -> Reply:
            arrivals[request.path].append((time.time(), request))
            return Reply(status, b"down" if status >= 500 else b"ok")
        return answer

    web.route("/hooks/good", receiver(200))
    web.route("/hooks/broken", receiver(500))
    with service.client() as client:
        lib = create_library(client, "announced")["id"]
        blocked = client.post("/v1/webhooks", json={"url": "http://169.254.169.254/hook", "events": ["job_finished"]})
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "blocked_url"
        unknown = client.post("/v1/webhooks", json={"url": web.url("/hooks/good"), "events": ["source_deleted"]})
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "validation_failed"
        good = client.post("/v1/webhooks", json={"url": web.url("/hooks/good"), "events": ["source_ingested", "job_finished"],
                                                  "library_id": lib, "secret": SECRET})
        assert good.status_code == 201, good.text
        good = good.json()
        broken = client.post("/v1/webhooks", json={"url": web.url("/hooks/broken"), "events": ["job_finished"]}).json()
        assert broken["secret"].startswith("whsec_") and broken["library_id"] is None
        shown = client.get(f"/v1/webhooks/{good['id']}").json()
        assert shown == {k: v for k, v in good.items() if k != "secret"}
        assert {good["id"], broken["id"]} <= {w["id"] for w in client.get("/v1/webhooks").json()["data"]}

        accepted = client.post(f"/v1/libraries/{lib}/ingest", json={"items": [
            {"content": "The granary opens at dawn.", "title": "granary"},
            {"content": "Millstones are dressed every spring.", "title": "millstones"},
        ]}).json()
        job = wait_for_job(client, accepted["job_id"])
        assert job["status"] == "completed" and job["counts"] == {"completed": 2, "partial": 0, "failed": 0, "duplicate": 0, "removed": 0, "cancelled": 0}

        announced = _wait_for_arrivals(arrivals["/hooks/good"], 3)
        verify = readme_verify()
        assert all(verify(SECRET, request.headers["gristmill-signature"], request.body) for _, request in announced)
        bodies = [json.loads(request.body) for _, request in announced]
        assert [b["type"] for b in bodies] == ["source_ingested", "source_ingested", "job_finished"]
        assert sorted(b["data"]["source_id"] for b in bodies[:2]) == sorted(accepted["source_ids"])
        assert {b["data"]["status"] for b in bodies[:2]} == {"completed"}
        assert bodies[2]["data"]["job_id"] == job["id"] and bodies[2]["data"]["counts"] == job["counts"]

        # The broken receiver: the job ended first, on its own, and was never told to wait.
        attempts = _wait_for_arrivals(arrivals["/hooks/broken"], 3)
        finished_at = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
        assert finished_at <= attempts[0][0]
        again = client.get(f"/v1/jobs/{job['id']}").json()
        assert (again["status"], again["counts"], again["error"]) == (job["status"], job["counts"], job["error"])
        log = client.get(f"/v1/webhooks/{broken['id']}/deliveries").json()
        latest = log["data"][0]
        assert (latest["subject_id"], latest["status"], latest["attempts"], latest["last_status_code"], latest["last_error"]) == (
            job["id"], "pending", 3, 500, "answered 500: down"
        )
        assert latest["next_attempt_at"] is not None

        # An event whose writer dies before starting a delivery run: the service's sweep sends it.
        with session_scope(service.database_url) as session:
            library = repository.find_library(session, lib)
            orphan = Source(workspace_id=library.workspace_id, library_id=lib, origin="inline", title="orphan",
                            status=SourceStatus.duplicate)
            orphan_job = repository.create_job(session, library, [orphan])
            repository.refresh_job_progress(session, orphan_job.id)
        late = [json.loads(r.body) for _, r in _wait_for_arrivals(arrivals["/hooks/good"], 5)[3:]]
        assert [(b["type"], b["data"].get("source_id") or b["data"]["job_id"]) for b in late] == [
            ("source_ingested", orphan.id), ("job_finished", orphan_job.id)
        ]

        page = client.get(f"/v1/webhooks/{good['id']}/deliveries", params={"page_size": 2}).json()
        assert page["total"] == 5 and [d["subject_id"] for d in page["data"]] == [orphan_job.id, orphan.id]
        assert [(d["status"], d["attempts"], d["last_status_code"], d["next_attempt_at"]) for d in page["data"]] == [
            ("delivered", 1, 200, None), ("delivered", 1, 200, None)
        ]
        # The Prefect UI tells the same story: completed deliver-webhooks runs that say what they sent.
        assert any(re.match(r"[1-9][0-9]* delivered", message) for message in _delivery_run_messages())

        reader_key = new_key(service, "default", "ingest.read")
        with service.client(reader_key) as reader:
            assert reader.get(f"/v1/webhooks/{good['id']}/deliveries").status_code == 200
            denied = reader.post("/v1/webhooks", json={"url": web.url("/hooks/good"), "events": ["job_finished"]})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
        with service.client(new_key(service, "outsiders", "ingest.read")) as outsider:
            assert outsider.get(f"/v1/webhooks/{good['id']}").json()["error"]["code"] == "webhook_not_found"

        for hook in (good, broken):
            assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert client.get(f"/v1/webhooks/{good['id']}").status_code == 404
        declared = httpx.get(f"{service.base_url}/openapi.json").json()["paths"]["/v1/webhooks"]["post"]["responses"]
        assert declared["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}


def _wait_for_arrivals(arrived: list, count: int, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while len(arrived) < count:
        assert time.monotonic() < deadline, f"{len(arrived)} of {count} webhook requests arrived"
        time.sleep(0.2)
    return list(arrived)


def _delivery_run_messages() -> list[str]:
    """The final messages of the completed deliver-webhooks flow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("deliver-webhooks/deliver-webhooks")
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
            state=FlowRunFilterState(type={"any_": ["COMPLETED"]}),
        ))
    return [run.state.message or "" for run in runs]


def _kill_flow_run_process(flow_run_id: str) -> None:
    """The flow run's process, found by the name the ingest flow gives it, forked from the runner's
    forkserver (not started fresh: that would cost each job seconds of imports), is killed."""
    name = flow_run_process_name(flow_run_id)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != name:
                continue
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            parent_command = Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        assert b"multiprocessing.forkserver" in parent_command, parent_command
        os.kill(int(pid), signal.SIGKILL)
        return
    raise AssertionError(f"no process runs flow run {flow_run_id}")


def test_cli_talks_to_the_running_service(service: Service, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nWater the tomatoes every evening in July.\n")
    (notes / "bikes.txt").write_text("The bike shed code is 4711.\n")
    env = {
        **os.environ,
        "GRISTMILL_URL": service.base_url,
        "GRISTMILL_API_KEY": service.admin_key,
        "GRISTMILL_HOME": str(tmp_path / "unused-home"),  # a client keeps no data of its own
    }

    def gristmill(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gristmill.cli", *args], env=env, capture_output=True, text=True, timeout=300)

    ingest = gristmill("ingest", str(notes), "--library", "remote-notes", "--json")
    assert ingest.returncode == 0, ingest.stderr
    summary = json.loads(ingest.stdout)
    assert summary["status"] == "completed" and summary["counts"]["completed"] == 2
    results = json.loads(gristmill("search", "when should I water the tomatoes", "--library", "remote-notes", "--json").stdout)["results"]
    assert results[0]["uri"] == "garden.md" and "tomatoes" in results[0]["text"]
    libraries = json.loads(gristmill("libraries", "--json").stdout)["libraries"]
    assert {"name": "remote-notes", "sources": 2} == {k: v for k, v in next(l for l in libraries if l["name"] == "remote-notes").items() if k in ("name", "sources")}
    assert not (tmp_path / "unused-home").exists()
    missing = gristmill("search", "x", "--library", "no-such-library")
    assert missing.returncode == 1 and "no library named 'no-such-library'" in missing.stderr
