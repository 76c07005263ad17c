"""Small-note latency through `serve`'s local runner and through a `gristmill worker` of a work pool.

    .venv/bin/python -m bench.bench_worker_latency [--notes 10]

Starts `gristmill serve` (bench/service.py) with the embedded defaults and ingests `--notes` short
notes one after another (POST to found by a keyword search, as bench/bench_latency.py does); then
starts it again with GRISTMILL_WORK_POOL set, so that it starts no runner, beside one
`gristmill worker` on the same home, and ingests as many. Prints the medians, and where a run's
time went (Prefect's state history): waiting to be picked up, the flow-run process starting, the
flow itself. A worker starts each run as a fresh Python process (`python -m prefect.engine`),
where the runner forks it from a process that has imported the flows.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.bench_latency import add_breakdowns, ingest_one, note
from bench.service import Service, create_library, record, running_service

POOL = "bench-pool"


@contextmanager
def worker_for(service: Service, log: Path):
    auth = (service.home / "prefect-auth").read_text().strip()
    env = {**os.environ, "GRISTMILL_HOME": str(service.home), "PREFECT_API_URL": service.prefect_api_url,
           "PREFECT_API_AUTH_STRING": auth, "GRISTMILL_EMBEDDINGS_URL": service.embeddings_url, "GRISTMILL_WORK_POOL": POOL}
    process = subprocess.Popen([sys.executable, "-m", "gristmill.cli", "worker"], env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with service.prefect_client() as prefect:
            deadline = time.monotonic() + 180
            while prefect.get("/deployments/name/ingest/ingest").json().get("work_pool_name") != POOL:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(service: Service, notes: int, label: str) -> dict[str, float]:
    rng = random.Random(7)
    with service.client() as client:
        library_id = create_library(client, f"latency-{label}")
        ingest_one(client, library_id, note(rng, f"warm{label}"), f"warm{label}")  # the first run is a cold one
        runs = [ingest_one(client, library_id, note(rng, f"tok{label}{n}"), f"tok{label}{n}") for n in range(notes)]
    assert all(timing.ok for timing, _ in runs), [t.problem for t, _ in runs if not t.ok]
    add_breakdowns(service, runs)
    figures = {"total_s": statistics.median(t.total_s for t, _ in runs)}
    for part in ("wait_for_runner_s", "process_start_s", "flow_s", "other_s"):
        figures[part] = statistics.median(t.breakdown.get(part, 0.0) for t, _ in runs)
    print(f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=10)
    args = parser.parse_args()
    with running_service() as service:
        runner = measure(service, args.notes, "runner")
    with running_service(env={"GRISTMILL_WORK_POOL": POOL}) as service:
        with worker_for(service, service.home / "worker.log"):
            worker = measure(service, args.notes, "worker")
    print(f"a worker costs {worker['total_s'] - runner['total_s']:.2f} s more per small note (median of {args.notes})")
    record("worker_latency", {"notes": args.notes, "runner": runner, "worker": worker})


if __name__ == "__main__":
    main()
