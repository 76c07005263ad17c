"""Several "machines" on one: processes that share only what a scaled-out Gristmill shares (PostgreSQL,
an S3-compatible store, the embeddings URL, the Prefect API), each with a home of its own.
Used by tests/test_scale_out.py and bench/bench_worker_latency.py."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.conftest import LOOPBACK, free_port, wait_for_http

WORK_POOL = "gristmill-test-pool"


@dataclass
class Cluster:
    prefect_api_url: str
    api_url: str
    admin_key: str
    shared_env: dict[str, str]
    worker_logs: list[Path] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=60)

    def runs_by_worker(self) -> list[set[str]]:
        """The flow-run ids each worker's log says it submitted."""
        pattern = re.compile(r"submitting flow run '([0-9a-f-]{36})'")
        return [set(pattern.findall(log.read_text(errors="replace"))) for log in self.worker_logs]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def prefect_server_on(database_url: str, folder: Path) -> Iterator[str]:
    """Prefect's server on the PostgreSQL database `database_url` (asyncpg, as Prefect wants it)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect"),
           "PREFECT_API_DATABASE_CONNECTION_URL": make_url(database_url).set(drivername="postgresql+asyncpg")
           .render_as_string(hide_password=False)}
    process = _start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                     env, folder / "prefect-server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=180, process=process)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        _stop(process)


@contextmanager
def cluster(folder: Path, *, prefect_api_url: str, database_url: str, embeddings_url: str, extra_env: dict[str, str],
            workers: int) -> Iterator[Cluster]:
    """An API process and `workers` workers of one work pool, each in a home of its own under `folder`."""
    from storage.db import migrate, session_scope
    from storage.keys import create_key
    from storage.repository import ensure_workspace

    migrate(database_url)  # what `serve` does before its API starts; an upgrade does it once, from one machine
    with session_scope(database_url) as session:
        admin_key, _ = create_key(session, ensure_workspace(session), ["admin", "ingest.read", "ingest.write"], name="admin")
    shared = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_") and k != "PREFECT_HOME"},
        "PREFECT_API_URL": prefect_api_url,
        "GRISTMILL_DATABASE_URL": database_url,
        "GRISTMILL_EMBEDDINGS_URL": embeddings_url,
        "GRISTMILL_FETCH_ALLOWED_NETWORKS": LOOPBACK,
        "GRISTMILL_WORK_POOL": WORK_POOL,
        "GRISTMILL_RECONCILE_INTERVAL_SECONDS": "2",
        "GRISTMILL_RATE_LIMIT_WRITES": "100000/minute",
        **extra_env,
    }
    api_port = free_port()
    with ExitStack() as stack:
        for home in ["api-home", *(f"worker-{n}-home" for n in range(1, workers + 1))]:
            (folder / home / "prefect").mkdir(parents=True)
        api_env = {**shared, "GRISTMILL_HOME": str(folder / "api-home"), "PREFECT_HOME": str(folder / "api-home" / "prefect")}
        api = _start([sys.executable, "-m", "api.app", "--host", "127.0.0.1", "--port", str(api_port)], api_env, folder / "api.log")
        stack.callback(_stop, api)
        logs, processes = [], []
        for number in range(1, workers + 1):
            log = folder / f"worker-{number}.log"
            # INFO: the worker logs each flow run it submits, which is how a test tells who ran what.
            home = folder / f"worker-{number}-home"
            env = {**shared, "GRISTMILL_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO"}
            worker = _start([sys.executable, "-m", "gristmill.cli", "worker", "--name", f"worker-{number}"], env, log)
            stack.callback(_stop, worker)
            logs.append(log)
            processes.append(worker)
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz", timeout=120, process=api)
        _wait_for_deployment(prefect_api_url, "ingest/ingest")
        yield Cluster(prefect_api_url, f"http://127.0.0.1:{api_port}", admin_key, shared, logs, processes)


def _wait_for_deployment(prefect_api_url: str, name: str, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{prefect_api_url}/deployments/name/{name}", timeout=5)
            if answer.status_code == 200 and answer.json().get("work_pool_name") == WORK_POOL:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no worker registered {name} in {WORK_POOL} within {timeout} s")
