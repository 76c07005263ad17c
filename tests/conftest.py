"""Shared fixtures: a real Prefect server per session, a test embeddings server, a fresh Gristmill home."""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
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


# The machine's PostgreSQL and Redis (docs/scaling-out.md); .ci/run makes a test that needs one fail
# instead of skipping when it is not there.
POSTGRES_ADMIN_URL = os.environ.get("GRISTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GRISTMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("GRISTMILL_TEST_REQUIRE_SERVICES") == "1"


def require_service(name: str, url: str, probe: Callable[[], object]) -> None:
    """Skip the test when `probe` cannot reach the server at `url`, or fail under GRISTMILL_TEST_REQUIRE_SERVICES=1."""
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - whatever the client raises, the server is not there
        if REQUIRE_SERVICES:
            raise AssertionError(f"{name} at {url} is required (GRISTMILL_TEST_REQUIRE_SERVICES=1) and not reachable: {error}") from error
        pytest.skip(f"{name} at {url} is not reachable ({error}); GRISTMILL_TEST_REQUIRE_SERVICES=1 makes this a failure")


def require_redis() -> str:
    import redis

    require_service("Redis", REDIS_URL, lambda: redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    return REDIS_URL


def _postgres_admin():
    from sqlalchemy import create_engine

    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def require_postgres() -> None:
    from sqlalchemy import text

    def probe() -> None:
        engine = _postgres_admin()
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()

    require_service("PostgreSQL", POSTGRES_ADMIN_URL.split("@")[-1], probe)


@contextmanager
def fresh_postgres_database(label: str = "t") -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (its URL), dropped afterwards with whatever
    still holds a connection to it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    require_postgres()
    name = f"gristmill_{label}_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        from storage.db import dispose_engine

        url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        dispose_engine(url)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


DATABASE_BACKENDS_DEFAULT = ("sqlite",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Gristmill's own database: SQLite, and PostgreSQL too in a module that sets
    `DATABASE_BACKENDS = ("sqlite", "postgresql")` (each test that reaches `database_backend` runs on each)."""
    if "database_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "DATABASE_BACKENDS", DATABASE_BACKENDS_DEFAULT)
        metafunc.parametrize("database_backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def database_backend(request: pytest.FixtureRequest) -> str:
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        require_postgres()
    return backend


@contextmanager
def database_for(backend: str, label: str) -> Iterator[str | None]:
    """The GRISTMILL_DATABASE_URL a test on `backend` runs with: None (SQLite in the home) or a fresh PostgreSQL database."""
    if backend == "postgresql":
        with fresh_postgres_database(label) as url:
            yield url
    else:
        yield None


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


@contextmanager
def _prefect_server_on(home: Path, port: int) -> Iterator[str]:
    """A real Prefect server on loopback `port`, keeping its SQLite under `home`; its API URL."""
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server (its own SQLite under a temporary PREFECT_HOME) for the whole session."""
    with _prefect_server_on(_PREFECT_HOME, _PREFECT_PORT) as url:
        assert url == os.environ["PREFECT_API_URL"]
        yield url


@pytest.fixture(scope="session")
def lone_prefect_server() -> Iterator[str]:
    """A second Prefect server, for tests that start and kill a `gristmill serve` of their own while
    the session's services run: runners serving the same deployments on one Prefect server take each
    other's flow runs, and a run taken by a service with another database fails there."""
    with _prefect_server_on(_PREFECT_HOME.with_name(_PREFECT_HOME.name + "-lone"), free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def test_embeddings_url() -> Iterator[str]:
    from tests.embedder import serve_test_embedder

    with serve_test_embedder() as base_url:
        yield base_url


@pytest.fixture
def gristmill_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_embeddings_url: str, database_backend: str
) -> Iterator[Path]:
    """A fresh data folder, migrated, with settings pointing at it and at the test embedder; its
    database is SQLite in the folder or a fresh PostgreSQL database (`database_backend`)."""
    from gristmill.settings import get_settings
    from storage.db import migrate

    home = tmp_path / "gristmill"
    monkeypatch.setenv("GRISTMILL_HOME", str(home))
    monkeypatch.setenv("GRISTMILL_EMBEDDINGS_URL", test_embeddings_url)
    monkeypatch.setenv("GRISTMILL_FETCH_ALLOWED_NETWORKS", LOOPBACK)
    with database_for(database_backend, "home") as database_url:
        if database_url:
            monkeypatch.setenv("GRISTMILL_DATABASE_URL", database_url)
        else:
            monkeypatch.delenv("GRISTMILL_DATABASE_URL", raising=False)
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
def service(prefect_server: str, second_model_url: str, tmp_path_factory: pytest.TempPathFactory, database_backend: str):
    """The whole service, started as users start it (`gristmill serve`), shared by the session's tests
    on one database backend."""
    from tests.running_service import running_service

    out_path = tmp_path_factory.mktemp("service-out") / "serve.out"
    with database_for(database_backend, "service") as database_url:
        home = tmp_path_factory.mktemp("service-home")
        with running_service(home, second_model_url, out_path, database_url=database_url) as running:
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


@dataclass
class S3Store:
    """moto's S3 server on a loopback port, with one bucket: what GRISTMILL_* needs to reach it."""

    endpoint: str
    bucket: str

    def settings_env(self, prefix: str) -> dict[str, str]:
        return {
            "GRISTMILL_S3_ENDPOINT": self.endpoint,
            "GRISTMILL_S3_ALLOW_HTTP": "true",
            "GRISTMILL_S3_REGION": "us-east-1",
            "GRISTMILL_S3_ACCESS_KEY_ID": "testing",
            "GRISTMILL_S3_SECRET_ACCESS_KEY": "testing",
            "GRISTMILL_BLOB_URI": f"s3://{self.bucket}/{prefix}/blobs",
            "GRISTMILL_LANCEDB_URI": f"s3://{self.bucket}/{prefix}/lancedb",
        }

    def keys(self, prefix: str = "") -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Store]:
    """An S3-compatible server (moto's) started by the tests on loopback, with a bucket `gristmill-test`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="gristmill-test")
        yield S3Store(endpoint, "gristmill-test")
    finally:
        server.stop()
