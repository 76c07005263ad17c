"""The running service for benchmarks: `gristmill serve` as users start it, and what its processes use.

`running_service()` starts `python -m gristmill.cli serve` (what the `gristmill serve` script runs) in a
temporary GRISTMILL_HOME with free ports for the API, the embeddings server and its own Prefect
server, waits until it says it is ready, yields a `Service` (base URL, admin key, home) and stops it
with Ctrl-C as a user would. `MemorySampler` follows the whole process tree (supervisor, Prefect
server, embeddings server, runner, API, flow-run children and parsing sandboxes) through /proc.
The rest are small helpers the benchmarks share: percentiles, waiting for jobs, JSON lines.
"""

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
FINAL_JOB_STATES = ("completed", "partial", "failed")

# Set by a developer's shell or by the test suite; the benchmark's service must start its own Prefect.
_INHERITED_PREFECT = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE")


def free_ports(count: int) -> list[int]:
    """`count` different ports free now (all bound at once, so the kernel cannot hand one out twice)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Service:
    base_url: str
    admin_key: str
    home: Path
    process: subprocess.Popen
    prefect_api_url: str
    embeddings_url: str

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=timeout
        )

    def prefect_client(self, timeout: float = 30) -> httpx.Client:
        """The service's own Prefect server, with the credentials `serve` made for it in the home."""
        auth = tuple((self.home / "prefect-auth").read_text().strip().split(":", 1))
        return httpx.Client(base_url=self.prefect_api_url, auth=auth, timeout=timeout)

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def running_service(
    *, env: dict[str, str] | None = None, home: Path | None = None, keep_home: bool = False, timeout: float = 300
) -> Iterator[Service]:
    """`gristmill serve` in a fresh home on free ports; `env` adds GRISTMILL_* (or other) variables."""
    own_home = home is None
    home = Path(tempfile.mkdtemp(prefix="gristmill-bench-home-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    api_port, embeddings_port, prefect_port = free_ports(3)
    child_env = {k: v for k, v in os.environ.items() if k not in _INHERITED_PREFECT}
    child_env.update(
        {
            "GRISTMILL_HOME": str(home),
            "GRISTMILL_API_PORT": str(api_port),
            "GRISTMILL_EMBEDDINGS_PORT": str(embeddings_port),
            "GRISTMILL_EMBEDDINGS_URL": f"http://127.0.0.1:{embeddings_port}/v1",
            "GRISTMILL_PREFECT_PORT": str(prefect_port),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # The benchmarks measure what the pipeline can take, not what one key may send.
            "GRISTMILL_RATE_LIMIT_WRITES": "",
            "GRISTMILL_RATE_LIMIT_SEARCHES": "",
            **(env or {}),
        }
    )
    out_path = home / "serve.out"
    out = open(out_path, "wb")  # noqa: SIM115 - open for as long as the service runs
    process = subprocess.Popen(
        [sys.executable, "-m", "gristmill.cli", "serve"],
        cwd=ROOT,
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + timeout
        while not ((home / "admin.key").exists() and b"Press Ctrl-C" in out_path.read_bytes()):
            if process.poll() is not None:
                raise RuntimeError(f"gristmill serve exited with {process.returncode}:\n{out_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gristmill serve was not ready within {timeout:.0f} s:\n{out_path.read_text()}")
            time.sleep(0.25)
        yield Service(
            base_url=base_url,
            admin_key=(home / "admin.key").read_text().strip(),
            home=home,
            process=process,
            prefect_api_url=f"http://127.0.0.1:{prefect_port}/api",
            embeddings_url=f"http://127.0.0.1:{embeddings_port}/v1",
        )
    finally:
        _stop(process)
        out.close()
        if own_home and not keep_home:
            shutil.rmtree(home, ignore_errors=True)
        elif keep_home:
            print(f"service home kept at {home}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # Children run in sessions of their own and are re-parented once the supervisor exits: note them now.
    tree = [(pid, _start_time(pid)) for pid in _descendants(process.pid)]
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the supervisor stops its children in order
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid, started in tree:  # any the supervisor could not stop (the start time guards against pid reuse)
        if started is not None and _start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


# --- processes and memory ------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name before it may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children_map()
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def process_tree(pid: int) -> list[int]:
    return [pid, *_descendants(pid)]


def _cmdline(pid: int) -> str:
    try:
        return " ".join(a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a)
    except OSError:
        return ""


_BY_COMMAND = (
    ("gristmill.cli serve", "supervisor"),
    ("prefect server start", "prefect-server"),
    ("gristmill.embeddings", "embeddings-server"),
    ("flows.runner", "flow-runner"),
    ("api.app", "rest-api"),
    ("multiprocessing.resource_tracker", "resource-tracker"),
)


def _child_role(parent_role: str, cmd: str) -> str:
    # Forked children keep their parent's command line, so a forkserver's children are told by
    # where they sit in the tree: runner -> flow-run forkserver -> flow run -> parse forkserver -> parse.
    if "multiprocessing.forkserver" in cmd or "forkserver import main" in cmd:
        if parent_role == "flow-runner":
            return "flow-run-forkserver"
        if parent_role == "flow-run-forkserver":
            return "flow-run"
        if parent_role == "flow-run":
            return "parse-forkserver"
        if parent_role == "parse-forkserver":
            return "parse-child"
    if "multiprocessing.spawn" in cmd and parent_role == "flow-runner":
        return "flow-run"
    for needle, name in _BY_COMMAND:
        if needle in cmd:
            return name
    return f"{parent_role}-child" if parent_role else (cmd.split(" ")[0].rsplit("/", 1)[-1] or "other")


def tree_roles(root_pid: int) -> dict[int, str]:
    """Every process of the tree under `root_pid`, with what it is (supervisor, flow-run, ...)."""
    children = _children_map()
    roles = {root_pid: _child_role("", _cmdline(root_pid))}
    todo = [root_pid]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            roles[child] = _child_role(roles[parent], _cmdline(child))
            todo.append(child)
    return roles


def _status_kb(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return fields


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class ProcessPeak:
    pid: int
    role: str
    peak_rss_mb: float  # the kernel's high-water mark (VmHWM), so spikes between samples count too


@dataclass
class MemorySampler:
    """Samples the service's process tree every `interval` seconds in a thread.

    Per process: its peak RSS (VmHWM, read at every sample, so a flow-run child that exits still
    left its last high-water mark). For the whole tree: the largest sum of RSS seen at one sample
    (an upper bound: pages shared after a fork count once per process) and of PSS (shared pages
    split between their processes: what the service really holds), read every `pss_every`-th
    sample: the kernel walks every page table for it, and sampling it 10 times a second the
    benchmark took a third of a core from the service it measured.
    """

    root_pid: int
    interval: float = 0.1
    pss_every: int = 10
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    peak_total_rss_mb: float = 0.0
    peak_total_pss_mb: float = 0.0
    pss_at_peak_by_role: dict[str, float] = field(default_factory=dict)  # what each role held at that moment
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        total_rss = total_pss = 0
        pss_by_role: dict[str, float] = defaultdict(float)
        with_pss = self.samples % self.pss_every == 0
        for pid, name in tree_roles(self.root_pid).items():
            status = _status_kb(pid)
            if "VmRSS" not in status:
                continue  # a kernel thread or already gone
            total_rss += status["VmRSS"]
            if with_pss:
                pss_kb = _pss_kb(pid)
                total_pss += pss_kb
                pss_by_role[name] += pss_kb / 1024
            peak = self.peaks.get(pid)
            hwm_mb = status.get("VmHWM", status["VmRSS"]) / 1024
            if peak is None:
                self.peaks[pid] = ProcessPeak(pid, name, round(hwm_mb, 1))
            else:
                peak.peak_rss_mb = round(max(peak.peak_rss_mb, hwm_mb), 1)
        self.peak_total_rss_mb = round(max(self.peak_total_rss_mb, total_rss / 1024), 1)
        if total_pss / 1024 > self.peak_total_pss_mb:
            self.peak_total_pss_mb = round(total_pss / 1024, 1)
            self.pss_at_peak_by_role = {role: round(mb, 1) for role, mb in sorted(pss_by_role.items())}
        self.samples += 1

    def by_role(self) -> dict[str, float]:
        """The largest peak RSS of any one process of each role, in MB."""
        roles: dict[str, float] = {}
        for peak in self.peaks.values():
            roles[peak.role] = max(roles.get(peak.role, 0.0), peak.peak_rss_mb)
        return dict(sorted(roles.items()))


def current_rss_mb(root_pid: int) -> dict[str, float]:
    """RSS now of each process of the tree, summed by role."""
    roles: dict[str, float] = {}
    for pid, name in tree_roles(root_pid).items():
        status = _status_kb(pid)
        if "VmRSS" in status:
            roles[name] = round(roles.get(name, 0.0) + status["VmRSS"] / 1024, 1)
    return roles


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_role(root_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each role of the tree, children already reaped included.

    A finished flow-run process's time shows under the process that reaped it (the runner, or the
    flow-run forkserver): take differences of two calls to see where the time between them went.
    """
    roles: dict[str, float] = {}
    for pid, name in tree_roles(root_pid).items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the command name).
        ticks = sum(int(v) for v in fields[11:15])
        roles[name] = roles.get(name, 0.0) + ticks / _CLOCK_TICKS
    return roles


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in sorted(set(before) | set(after))}


# --- the API, as the benchmarks use it -----------------------------------------------------------


def create_library(client: httpx.Client, name: str, **extra) -> str:
    answer = client.post("/v1/libraries", json={"name": name, **extra})
    answer.raise_for_status()
    return answer.json()["id"]


def wait_for_jobs(
    client: httpx.Client, job_ids: Sequence[str], *, timeout: float = 3600, poll: float = 0.5
) -> dict[str, dict]:
    """Poll until every job is final; returns the jobs by id."""
    pending, done = set(job_ids), {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} job(s) did not finish within {timeout:.0f} s")
        for job_id in sorted(pending):
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in FINAL_JOB_STATES:
                done[job_id] = job
                pending.discard(job_id)
        if pending:
            time.sleep(poll)
    return done


def source_chunk_texts(client: httpx.Client, source_id: str) -> list[str]:
    """The stored chunk texts of one source, in chunk order, paged through the API."""
    texts: list[str] = []
    while True:
        page = client.get(f"/v1/sources/{source_id}/chunks", params={"offset": len(texts), "limit": 500})
        page.raise_for_status()
        body = page.json()
        texts += [c["text"] for c in body["data"]]
        if not body["data"] or len(texts) >= body["total"]:
            return texts


# --- figures ------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually measured."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def p50_p95(samples: Sequence[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 95)


def machine() -> dict[str, object]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {
        "cpu": model,
        "cpus": len(os.sched_getaffinity(0)),
        "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def record(name: str, line: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """Append one JSON line (with the time and the machine) to bench/results/<name>.jsonl."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.jsonl"
    with path.open("a") as out:
        out.write(json.dumps({"when": datetime.now(UTC).isoformat(timespec="seconds"), **line,
                              "machine": machine()}) + "\n")
    return path
