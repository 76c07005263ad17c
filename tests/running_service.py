"""The running service as tests drive it: `gristmill serve` in a process group of its own, reached over
HTTP, with a second embedding model (the hashing test embedder, 64 dimensions) configured beside the
packaged one. Its fixtures (`service`, `web`) live in conftest.py; test modules use these helpers."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import LOOPBACK, free_port, wait_for_http

SECOND_MODEL = "hashing-64"
SECOND_MODEL_DIMENSIONS = 64
SECOND_MODEL_WINDOW = 512


@dataclass
class Service:
    base_url: str
    admin_key: str
    home: Path
    process: subprocess.Popen
    embeddings_url: str
    database_url: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    @property
    def api_port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])


@contextmanager
def running_service(
    home: Path,
    second_model_url: str,
    out_path: Path,
    database_url: str | None = None,
    *,
    ports: tuple[int, int] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """`gristmill serve` on `home` (and `database_url`, default SQLite in the home); its output goes to
    `out_path`, outside the home, which must stay private.

    `ports` (API, embeddings) are free ones unless given, as a restart on the same ports is;
    `extra_env` sets more of the service's environment.
    """
    api_port, embeddings_port = ports or (free_port(), free_port())
    env = {
        **os.environ,
        "GRISTMILL_HOME": str(home),
        "GRISTMILL_API_PORT": str(api_port),
        "GRISTMILL_EMBEDDINGS_PORT": str(embeddings_port),
        "GRISTMILL_EMBEDDINGS_URL": f"http://127.0.0.1:{embeddings_port}/v1",
        "GRISTMILL_RECONCILE_INTERVAL_SECONDS": "1",
        "GRISTMILL_WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
        "GRISTMILL_FETCH_ALLOWED_NETWORKS": LOOPBACK,
        "GRISTMILL_EMBEDDING_MODELS": json.dumps([{
            "name": SECOND_MODEL, "dimensions": SECOND_MODEL_DIMENSIONS, "url": second_model_url,
            "window_tokens": SECOND_MODEL_WINDOW,
        }]),
        # These tests write far more than a key may by default; tests/test_limits.py tests the limits.
        "GRISTMILL_RATE_LIMIT_WRITES": "100000/minute",
        "GRISTMILL_RATE_LIMIT_SEARCHES": "100000/minute",
        **(extra_env or {}),
    }
    env.pop("GRISTMILL_DATABASE_URL", None)
    if database_url:
        env["GRISTMILL_DATABASE_URL"] = database_url
    resolved_database_url = database_url or f"sqlite:///{(home / 'gristmill.db').resolve()}"
    starts = out_path.read_bytes().count(b"Press Ctrl-C") if out_path.exists() else 0  # earlier starts' output stays
    log = open(out_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "gristmill.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 300
        while not (home / "admin.key").exists() or out_path.read_bytes().count(b"Press Ctrl-C") == starts:
            assert process.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.5)
        wait_for_http(f"{base_url}/healthz", timeout=30, process=process)
        yield Service(
            base_url, (home / "admin.key").read_text().strip(), home, process, env["GRISTMILL_EMBEDDINGS_URL"], resolved_database_url
        )
    finally:
        if process.poll() is None:  # a test may have stopped it already
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def create_library(client: httpx.Client, name: str, **extra) -> dict:
    answer = client.post("/v1/libraries", json={"name": name, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "partial", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def search(client: httpx.Client, library_id: str, query: str, **extra) -> list[dict]:
    answer = client.post(f"/v1/libraries/{library_id}/search", json={"query": query, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def ingest(client: httpx.Client, library_id: str, body: dict, expect: int = 202) -> dict:
    answer = client.post(f"/v1/libraries/{library_id}/ingest", json=body)
    assert answer.status_code == expect, answer.text
    return answer.json()


def new_key(service: Service, workspace: str, scopes: str) -> str:
    env = {**os.environ, "GRISTMILL_HOME": str(service.home), "GRISTMILL_DATABASE_URL": service.database_url}
    result = subprocess.run(
        [sys.executable, "-m", "gristmill.cli", "keys", "create", "--workspace", workspace, "--scopes", scopes],
        env=env, capture_output=True, text=True, check=True,
    )
    key = result.stdout.strip()
    assert key.startswith("gm_")
    return key
