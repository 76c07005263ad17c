"""Child processes Gristmill starts and stops: the embeddings server, Prefect, the runner, the API."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from gristmill.errors import ServiceUnavailable
from gristmill.home import embeddings_key
from gristmill.lifetime import dies_with_this_process
from gristmill.probes import is_reachable, port_in_use
from gristmill.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ChildProcess:
    name: str
    command: Sequence[str]
    ready_url: str
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_check: Callable[[], bool] | None = None  # readiness beyond answering HTTP
    listens_on: tuple[str, int, str] | None = None  # host, port and the setting that names the port
    # The pids of work it should finish before it is stopped (the runner's flow runs).
    busy: Callable[["ChildProcess"], list[int]] | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0  # time.monotonic() of the last start

    def check_port_free(self) -> None:
        """Refuse to start beside another server on our port: its answers would pass for ours."""
        if self.listens_on is None:
            return
        host, port, setting = self.listens_on
        if port_in_use(host, port):
            raise ServiceUnavailable(
                f"cannot start the {self.name}: {host}:{port} is already in use; stop what listens there "
                f"or choose another port with {setting}",
                code="port_in_use",
            )

    def start(self) -> "ChildProcess":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            list(self.command),
            stdout=log,
            stderr=subprocess.STDOUT if self.log_path else subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            preexec_fn=dies_with_this_process(),  # ... and a supervisor killed outright takes them with it
        )
        self.started_at = time.monotonic()
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                hint = f"; see {self.log_path}" if self.log_path else ""
                raise ServiceUnavailable(f"{self.name} exited with code {self.process.returncode}{hint}")
            if is_reachable(self.ready_url) and (self.ready_check is None or self.ready_check()):
                return
            time.sleep(0.25)
        raise ServiceUnavailable(f"{self.name} did not answer at {self.ready_url} within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_idle(self, grace_seconds: float) -> list[int]:
        """Wait up to `grace_seconds` for the child's `busy` work to end; the pids still busy then."""
        deadline = time.monotonic() + grace_seconds
        while self.busy is not None and self.alive() and (working := self.busy(self)):
            if time.monotonic() >= deadline:
                return working
            time.sleep(0.25)
        return []

    def stop_work(self, pids: list[int], timeout: float = 10) -> None:
        """SIGTERM the child's busy work itself and wait for it to end, before the child is stopped.

        A flow run told to stop this way crashes and hands its job back; stopped by its runner's
        shutdown instead, it would be cancelled (the runner marks its runs so), and so its job."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while self.busy is not None and self.busy(self) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, name) of every live descendant of `pid`, read from /proc (empty where there is none)."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (name) state ppid ...": the name may hold spaces and parentheses, so split at the last ")".
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if state == "Z":  # exited, not yet reaped
            continue
        parents.setdefault(int(parent), []).append((int(stat_path.parent.name), name))
    found: list[tuple[int, str]] = []
    waiting = [pid]
    while waiting:
        for child in parents.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child[0])
    return found


def embeddings_server_process(settings: Settings, host: str, port: int) -> ChildProcess:
    return ChildProcess(
        name="embeddings server",
        command=[sys.executable, "-m", "gristmill.embeddings", "--host", host, "--port", str(port)],
        ready_url=f"http://{host}:{port}/healthz",
        log_path=settings.home / "logs" / "embeddings.log",
        listens_on=(host, port, "GRISTMILL_EMBEDDINGS_PORT"),
    )


@contextmanager
def embeddings_available(settings: Settings) -> Iterator[None]:
    """Make sure the embeddings endpoint answers; start the local model server for this command if not.

    Only a loopback URL is started here: a remote endpoint that is down is the user's to fix.
    """
    models_url = settings.embeddings_url.rstrip("/") + "/models"
    if is_reachable(models_url):
        yield
        return
    parsed = urlparse(settings.embeddings_url)
    if parsed.hostname not in LOOPBACK_HOSTS or parsed.port is None:
        raise ServiceUnavailable(f"the embeddings endpoint {settings.embeddings_url} is not reachable")
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    child = embeddings_server_process(settings, parsed.hostname, parsed.port)
    # Nothing local is open, for the length of one command either: this process sends the key it reads
    # from the home (Settings.resolved_embeddings_api_key).
    child.env = {"GRISTMILL_EMBEDDINGS_API_KEY": settings.embeddings_api_key or embeddings_key(settings.home)}
    child.start()
    try:
        child.wait_ready(timeout=180)
        yield
    finally:
        child.stop()
