"""`gristmill serve`: Prefect server, embeddings server, flow runner and REST API as supervised children."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gristmill.environment import child_environment, uses_own_prefect
from gristmill.errors import ServiceUnavailable
from gristmill.home import PREFECT_AUTH_FILE, embeddings_key, make_private
from gristmill.lifetime import FLOW_RUN_PROCESS_PREFIX
from gristmill.probes import answers_ok, basic_auth, is_reachable
from gristmill.settings import Settings, get_settings
from gristmill.supervisor.processes import ChildProcess, descendants, embeddings_server_process
from gristmill.supervisor.restarts import RestartBackoff


def ensure_admin_key(settings: Settings) -> str | None:
    """On first start, an admin key: printed once and written to $GRISTMILL_HOME/admin.key (0600)."""
    from storage.db import session_scope
    from storage.keys import any_key_exists, create_key
    from storage.repository import ensure_workspace

    with session_scope(settings.resolved_database_url) as session:
        if any_key_exists(session):
            return None
        plain, _ = create_key(session, ensure_workspace(session), ["admin", "ingest.read", "ingest.write"], name="admin")
    path = settings.home / "admin.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(plain + "\n")
    os.chmod(path, 0o600)
    return plain


def build_children(settings: Settings) -> list[ChildProcess]:
    env = child_environment(settings)
    start_embeddings = not is_reachable(settings.embeddings_url.rstrip("/") + "/models")
    if start_embeddings:
        # The server we start requires a bearer key; every child sends it.
        env["GRISTMILL_EMBEDDINGS_API_KEY"] = settings.embeddings_api_key or embeddings_key(settings.home)
    logs = settings.home / "logs"
    children: list[ChildProcess] = []
    prefect_api = env["PREFECT_API_URL"]
    prefect_auth = basic_auth(env["PREFECT_API_AUTH_STRING"]) if env.get("PREFECT_API_AUTH_STRING") else None
    if "PREFECT_API_URL" not in os.environ:
        children.append(
            ChildProcess(
                name="Prefect server",
                command=[sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(settings.prefect_port)],
                ready_url=f"{prefect_api}/health",
                log_path=logs / "prefect.log",
                env=prefect_server_environment(settings, env),
                listens_on=("127.0.0.1", settings.prefect_port, "GRISTMILL_PREFECT_PORT"),
            )
        )
    if start_embeddings:
        embeddings = embeddings_server_process(settings, settings.embeddings_host, settings.embeddings_port)
        embeddings.env = env
        children.append(embeddings)
    # With a work pool, `gristmill worker` processes run the flow runs (they register the deployments).
    if not settings.work_pool:
        children.append(
            ChildProcess(
                name="flow runner",
                command=[sys.executable, "-m", "flows.runner"],
                ready_url=f"{prefect_api}/health",
                log_path=logs / "runner.log",
                env=env,
                # Ready once the ingest deployment is registered, so the first ingest request can trigger it.
                ready_check=lambda: answers_ok(f"{prefect_api}/deployments/name/ingest/ingest", headers=prefect_auth),
                busy=runs_flows,
            )
        )
    children.append(
        ChildProcess(
            name="REST API",
            command=[sys.executable, "-m", "api.app", "--host", settings.api_host, "--port", str(settings.api_port)],
            ready_url=f"http://{settings.api_host}:{settings.api_port}/openapi.json",
            log_path=logs / "api.log",
            env=env,
            listens_on=(settings.api_host, settings.api_port, "GRISTMILL_API_PORT"),
        )
    )
    return children


def runs_flows(runner: ChildProcess) -> list[int]:
    """The pids of the runner's live flow-run processes (forked a level or two below it)."""
    if runner.process is None:
        return []
    return [pid for pid, name in descendants(runner.process.pid) if name.startswith(FLOW_RUN_PROCESS_PREFIX)]


def prefect_server_environment(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The Prefect server's environment: its database is GRISTMILL_PREFECT_DATABASE_URL when set (PostgreSQL
    for a service of several machines), else Prefect's own choice (a PREFECT_API_DATABASE_CONNECTION_URL
    in the environment, or SQLite under PREFECT_HOME)."""
    if settings.prefect_database_url:
        return {**env, "PREFECT_API_DATABASE_CONNECTION_URL": settings.prefect_database_url}
    return env


def prepare_home() -> None:
    """Migrate the database and create the first admin key; prints the new key, if one was made."""
    from storage.db import migrate

    settings = get_settings()
    migrate(settings.resolved_database_url)
    print(ensure_admin_key(settings) or "", flush=True)


def _prepare_home_in_child() -> str | None:
    """`prepare_home` in a short-lived child: the models, Alembic and the chunk store it imports
    would otherwise stay in the supervisor for the service's life (191 MB resident instead of
    ~45 MB, bench/bench_memory.py), and the supervisor needs none of them."""
    done = subprocess.run(
        [sys.executable, "-c", "from gristmill.supervisor.serve import prepare_home; prepare_home()"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ServiceUnavailable(f"could not prepare {get_settings().home}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else None


def serve() -> int:
    settings = get_settings()
    make_private(settings.home)
    (settings.home / "logs").mkdir(exist_ok=True)
    try:
        children = build_children(settings)
        for child in children:
            child.check_port_free()
        admin_key = _prepare_home_in_child()
    except ServiceUnavailable as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    started: list[ChildProcess] = []
    try:
        for child in children:
            print(f"starting {child.name} ...", flush=True)
            started.append(child.start())
            child.wait_ready(timeout=180)
            if stopping:
                return 130
        _print_addresses(settings, child_environment(settings)["PREFECT_API_URL"], admin_key)
        return keep_alive(started, lambda: stopping)
    except ServiceUnavailable as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        stop_in_order(started, settings.shutdown_grace_seconds)


def keep_alive(children: list[ChildProcess], stopping: Callable[[], bool]) -> int:
    """Restart each child that exits, after its back-off, until `stopping()`; 1 once one keeps crashing."""
    backoffs = {child.name: RestartBackoff() for child in children}
    restart_at: dict[str, float] = {}
    while not stopping():
        now = time.monotonic()
        for child in children:
            if child.name in restart_at:
                if now >= restart_at[child.name]:
                    del restart_at[child.name]
                    _say(f"restarting {child.name}")
                    child.start()
                continue
            if child.alive():
                continue
            assert child.process is not None
            delay = backoffs[child.name].delay_after_exit(now - child.started_at)
            exited = f"{child.name} exited with code {child.process.returncode} (see {child.log_path})"
            if delay is None:
                _say(f"{exited}; it exited {backoffs[child.name].quick_crashes} times in a row, each within "
                     "a minute of its start, so Gristmill stops")
                return 1
            _say(f"{exited}; restarting it in {delay:.0f} s")
            restart_at[child.name] = now + delay
        time.sleep(0.5)
    return 0


def stop_in_order(started: list[ChildProcess], grace_seconds: float) -> None:
    """Stop the last started first: the API stops taking requests, then running flow runs get
    `grace_seconds` to finish; what is still running then is stopped, and its jobs run again on the
    next start (docs/job-states.md)."""
    for child in reversed(started):
        if child.busy is not None and (still_busy := child.wait_idle(grace_seconds)):
            _say(f"flow runs still running after {grace_seconds:.0f} s are stopped; their jobs run again on the next start")
            child.stop_work(still_busy)
        child.stop()


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _print_addresses(settings: Settings, prefect_api: str, admin_key: str | None) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    print(f"Gristmill is running (data in {Path(settings.home).resolve()})")
    print(f"  REST API       {api}   (OpenAPI docs: {api}/docs)")
    print(f"  Prefect UI     {prefect_api.removesuffix('/api')}")
    if uses_own_prefect():
        print(f"                 (log in with the contents of {settings.home / PREFECT_AUTH_FILE})")
    print(f"  embeddings     {settings.embeddings_url}")
    if admin_key:
        print(f"  admin API key  {admin_key}   (shown once; also in {settings.home / 'admin.key'})")
    print("Press Ctrl-C to stop.", flush=True)
