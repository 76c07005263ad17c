"""How long a `gristmill search` and a `gristmill libraries` take, start to exit, standalone and against a service.

    python -m bench.bench_cli [--calls 15]

Starts `gristmill serve` (bench/service.py), ingests this repository's documentation into one
library through the API, then runs the CLI as a user would, `--calls` times per variant, the
variants in turn (A/B/C/A/B/C...) so that a noisy neighbour slows them alike:

- against the service: GRISTMILL_URL and GRISTMILL_API_KEY name it (the remote backend);
- standalone: GRISTMILL_HOME is the service's home and GRISTMILL_EMBEDDINGS_URL its running
  embeddings server, so the command reads SQLite and LanceDB in its own process;
- `gristmill --help`, the floor: the interpreter and the argument parser.

Prints the median and p90 wall time of each and the median CPU time (user + system) of the
command's process, which a busy machine inflates far less than wall time. Appends one JSON line to
bench/results/cli.jsonl.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.service import ROOT, create_library, percentile, record, running_service, wait_for_jobs

DOCS = ("README.md", "docs/architecture.md", "bench/README.md")
QUERY = "how are chunks replaced when a document changes"


def gristmill_command() -> list[str]:
    """The `gristmill` script pip installed beside this interpreter (what a user runs), else the module."""
    script = Path(sys.executable).parent / "gristmill"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gristmill.cli"]


def timed_call(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of the command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15, help="runs of each variant")
    args = parser.parse_args(argv)

    gristmill = gristmill_command()
    with running_service() as service:
        with service.client() as client:
            create_library(client, "docs")
            library_id = next(lib["id"] for lib in client.get("/v1/libraries").json()["data"] if lib["name"] == "docs")
            files = [("file", (Path(p).name, (ROOT / p).read_bytes())) for p in DOCS]
            job_id = client.post(f"/v1/libraries/{library_id}/files", files=files).json()["job_id"]
            job = wait_for_jobs(client, [job_id])[job_id]
            print(f"ingested {DOCS}: job {job['status']}")

        # The user's own settings must not leak in: each variant says where it works.
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRISTMILL_", "PREFECT_"))}
        remote = {**clean, "GRISTMILL_URL": service.base_url, "GRISTMILL_API_KEY": service.admin_key}
        standalone = {**clean, "GRISTMILL_HOME": str(service.home), "GRISTMILL_EMBEDDINGS_URL": service.embeddings_url}
        search = [*gristmill, "search", QUERY, "--library", "docs", "--limit", "5"]
        libraries = [*gristmill, "libraries"]
        variants = {
            "search, against the service": (search, remote),
            "libraries, against the service": (libraries, remote),
            "search, standalone (embeddings server running)": (search, standalone),
            "libraries, standalone": (libraries, standalone),
            "--help": ([*gristmill, "--help"], clean),
        }
        for command, env in variants.values():  # warm-up: file caches, the service's first queries
            timed_call(command, env)

        load_before = os.getloadavg()
        walls: dict[str, list[float]] = {name: [] for name in variants}
        cpus: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.calls):
            for name, (command, env) in variants.items():
                wall, cpu = timed_call(command, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
        load_after = os.getloadavg()

    print(f"\n{args.calls} calls each, interleaved; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'command':50s} {'wall p50':>9s} {'wall p90':>9s} {'CPU p50':>8s}")
    line: dict = {"calls": args.calls, "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2)}
    for name in variants:
        p50, p90, cpu = statistics.median(walls[name]), percentile(walls[name], 90), statistics.median(cpus[name])
        print(f"{name:50s} {p50:8.2f}s {p90:8.2f}s {cpu:7.2f}s")
        line[name] = {"wall_p50_s": round(p50, 3), "wall_p90_s": round(p90, 3), "cpu_p50_s": round(cpu, 3)}
    print(f"appended to {record('cli', line).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
