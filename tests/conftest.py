"""Shared fixtures: a real Prefect server per session, a test embeddings server, a fresh Gristmill home."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gristmill.environment import FORCED

# The loopback HTTP server tests fetch from is an internal address: allowed where a test fetches from it.
LOOPBACK = "127.0.0.0/8"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Prefect reads these when first used, so they are set before any test imports a flow.
_PREFECT_HOME = Path(os.environ.get("GRISTMILL_TEST_PREFECT_HOME", "/tmp")) / f"gristmill-test-prefect-{os.getpid()}"
_PREFECT_PORT = free_port()
os.environ.update(
    {
        "PREFECT_HOME": str(_PREFECT_HOME),
        "PREFECT_API_URL": f"http://127.0.0.1:{_PREFECT_PORT}/api",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        # Tests stop their Prefect server before the log handler flushes; flow-run logs are not needed here.
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        **FORCED,
    }
)


def wait_for_http(url: str, *, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server (its own SQLite under a temporary PREFECT_HOME) for the whole session."""
    _PREFECT_HOME.mkdir(parents=True, exist_ok=True)
    log = open(_PREFECT_HOME / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(_PREFECT_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        wait_for_http(f"http://127.0.0.1:{_PREFECT_PORT}/api/health", timeout=120, process=process)
        yield os.environ["PREFECT_API_URL"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def test_embeddings_url() -> Iterator[str]:
    from tests.embedder import serve_test_embedder

    with serve_test_embedder() as base_url:
        yield base_url


@pytest.fixture
def gristmill_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_embeddings_url: str) -> Path:
    """A fresh data folder, migrated, with settings pointing at it and at the test embedder."""
    from gristmill.settings import get_settings
    from storage.db import migrate

    home = tmp_path / "gristmill"
    monkeypatch.setenv("GRISTMILL_HOME", str(home))
    monkeypatch.setenv("GRISTMILL_EMBEDDINGS_URL", test_embeddings_url)
    monkeypatch.setenv("GRISTMILL_FETCH_ALLOWED_NETWORKS", LOOPBACK)
    get_settings.cache_clear()
    migrate(get_settings().resolved_database_url)
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def model_embeddings_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real embeddings server (all-MiniLM-L6-v2), started as `gristmill embeddings-server` is."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("embeddings") / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gristmill.embeddings", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=180, process=process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def second_model_url() -> Iterator[str]:
    """A second embedding model for the service: the hashing test embedder at 64 dimensions."""
    from tests.embedder import HashingEncoder, serve_test_embedder
    from tests.running_service import SECOND_MODEL, SECOND_MODEL_DIMENSIONS

    with serve_test_embedder(encoder=HashingEncoder(SECOND_MODEL_DIMENSIONS, SECOND_MODEL)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def service(prefect_server: str, second_model_url: str, tmp_path_factory: pytest.TempPathFactory):
    """The whole service, started as users start it (`gristmill serve`), shared by the session's tests."""
    from tests.running_service import running_service

    out_path = tmp_path_factory.mktemp("service-out") / "serve.out"
    with running_service(tmp_path_factory.mktemp("service-home"), second_model_url, out_path) as running:
        yield running


@pytest.fixture(scope="session")
def web():
    """A loopback web server for URL sources."""
    from tests.http_server import LoopbackServer

    with LoopbackServer() as server:
        yield server


@dataclass
class LocalApi:
    """The REST API (`api.app.create_app`) served by uvicorn on a free loopback port in this process."""

    base_url: str
    admin_key: str
    admin_key_id: str

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=60)


@contextmanager
def serve_local_api(monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[LocalApi]:
    """The API on the current GRISTMILL_HOME (see `gristmill_home`) with `env` set, and an admin key.

    No flow runner serves it: jobs are stored and wait, nothing is fetched.
    """
    from api.app import create_app
    from gristmill.settings import get_settings
    from storage.db import session_scope
    from storage.keys import create_key
    from storage.repository import ensure_workspace
    from tests.embedder import serve_app

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with session_scope(get_settings().resolved_database_url) as session:
        admin_key, record = create_key(session, ensure_workspace(session), ["admin", "ingest.read", "ingest.write"], name="admin")
    with serve_app(create_app(reconcile=False)) as base_url:
        yield LocalApi(base_url, admin_key, record.id)


@pytest.fixture
def local_api(gristmill_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalApi]:
    with serve_local_api(monkeypatch) as api:
        yield api
