"""Small-job latency through the running service: one short note, from submit until a search finds it.

    .venv/bin/python -m bench.bench_latency [--sequential 30] [--clients 20] [--notes-per-client 5]

Starts `gristmill serve` (bench/service.py) with the embedded defaults, creates a library and
1. ingests `--sequential` notes one after another: each is POSTed, its job polled every 50 ms, and
   once final a keyword search filtered to its source must return it; the latency is POST to that
   answer. Prefect's state history of each flow run splits it into: the API accepting the request
   (202), the run waiting for the runner's poll (Scheduled -> Pending), the flow-run process
   starting (Pending -> Running), the flow itself (Running -> Completed) and the rest (noticing it).
2. runs `--clients` threads at once, each ingesting `--notes-per-client` notes the same way (polling every
   0.25 s, as 20 clients at 50 ms would be most of the load), and checks that no request failed and every
   job finished with its note searchable.
The first ingest after start-up (a cold one) is timed and reported apart. Prints p50/p95 and appends
JSON lines to bench/results/latency.jsonl. The defaults are the issue's sizes (about 4 minutes).
"""

import argparse
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from bench.service import (
    FINAL_JOB_STATES,
    Service,
    cpu_delta,
    cpu_seconds_by_role,
    create_library,
    p50_p95,
    record,
    running_service,
)

WORDS = ("river valley harbour lantern meadow orchard quarry summit canyon glacier delta prairie tundra "
         "forest island lagoon marsh plateau ridge canal beacon bridge tunnel mill granary barn silo").split()


@dataclass
class Timing:
    total_s: float
    accepted_s: float  # POST until the 202
    job_status: str
    found: bool
    breakdown: dict[str, float] = field(default_factory=dict)  # from Prefect's state history
    problem: str | None = None  # why the note is not searchable, when it is not

    @property
    def ok(self) -> bool:
        return self.found and self.job_status == "completed"


def note(rng: random.Random, token: str) -> str:
    sentences = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(8)]
    return f"# Note {token}\n\nThe marker for this note is {token}. " + " ".join(sentences)


def ingest_one(client: httpx.Client, library_id: str, text: str, token: str, *, poll: float = 0.05,
               timeout: float = 600) -> tuple[Timing, str | None]:
    started = time.perf_counter()
    answer = client.post(f"/v1/libraries/{library_id}/ingest",
                         json={"content": text, "content_type": "text/markdown", "title": f"{token}.md"})
    accepted = time.perf_counter() - started
    if answer.status_code != 202:
        return Timing(time.perf_counter() - started, accepted, f"http {answer.status_code}", False,
                      problem=answer.text[:300]), None
    body = answer.json()
    job_id, source_id = body["job_id"], body["source_ids"][0]
    deadline = started + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINAL_JOB_STATES or time.perf_counter() > deadline:
            break
        time.sleep(poll)
    hits = client.post(f"/v1/libraries/{library_id}/search", json={
        "query": token, "mode": "keyword", "limit": 1, "filter": {"source_ids": [source_id]}}).json()
    found = bool(hits.get("results")) and token in hits["results"][0]["text"]
    timing = Timing(time.perf_counter() - started, accepted, job["status"], found)
    if not timing.ok:
        source = client.get(f"/v1/sources/{source_id}").json()
        timing.problem = (f"{token}: job {job_id} {job['status']} ({job.get('error')}), source {source.get('status')} "
                          f"({source.get('error_code')}: {source.get('error')}), found by search: {found}")
    return timing, job.get("flow_run_id")


def flow_run_breakdown(service: Service, flow_run_id: str | None, timing: Timing) -> dict[str, float]:
    """Where a run's time went, from the state timestamps Prefect recorded."""
    if not flow_run_id:
        return {}
    with service.prefect_client() as prefect:
        run = prefect.get(f"/flow_runs/{flow_run_id}").json()
        states = prefect.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    at = {}
    for state in sorted(states, key=lambda s: s["timestamp"]):
        at.setdefault(state["type"], datetime.fromisoformat(state["timestamp"]))
    created = datetime.fromisoformat(run["created"])
    parts: dict[str, float] = {}
    if "PENDING" in at:
        parts["wait_for_runner_s"] = (at["PENDING"] - created).total_seconds()
    if "PENDING" in at and "RUNNING" in at:
        parts["process_start_s"] = (at["RUNNING"] - at["PENDING"]).total_seconds()
    if "RUNNING" in at and "COMPLETED" in at:
        parts["flow_s"] = (at["COMPLETED"] - at["RUNNING"]).total_seconds()
    known = timing.accepted_s + sum(parts.values())
    parts["other_s"] = timing.total_s - known  # the 202 to the run's creation, and noticing the end
    for name, seconds in task_run_seconds(service, flow_run_id).items():
        parts[f"task_{name}_s"] = seconds
    return {k: round(v, 3) for k, v in parts.items()}


def add_breakdowns(service: Service, runs: list[tuple[Timing, str | None]]) -> None:
    """Read from Prefect once a phase is over (it records task runs in batches, within a second)."""
    time.sleep(2)
    for timing, run_id in runs:
        timing.breakdown = flow_run_breakdown(service, run_id, timing)


def task_run_seconds(service: Service, flow_run_id: str) -> dict[str, float]:
    """Wall seconds of each task run of the flow run (fetch, parse, chunk, embed, upsert, process-source)."""
    with service.prefect_client() as prefect:
        runs = prefect.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
    seconds: dict[str, float] = {}
    for run in runs:
        if run.get("start_time") and run.get("end_time"):
            name = run["task_key"].split("-")[0] if run.get("task_key") else run["name"]
            name = run["name"].rsplit("-", 1)[0] if name == run.get("task_key") else name
            took = (datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])).total_seconds()
            seconds[name] = seconds.get(name, 0.0) + took
    return seconds


def summarise(label: str, timings: list[Timing]) -> dict:
    if not timings:
        return {}
    totals = [t.total_s for t in timings]
    p50, p95 = p50_p95(totals)
    out = {"count": len(timings), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
           "max_s": round(max(totals), 3), "mean_s": round(statistics.mean(totals), 3),
           "accepted_p50_s": round(statistics.median(t.accepted_s for t in timings), 3)}
    parts = [t.breakdown for t in timings if t.breakdown]
    keys = list(dict.fromkeys(k for p in parts for k in p))
    for key in keys:
        values = [p[key] for p in parts if key in p]
        if values:
            out[key[:-2] + "_p50_s"] = round(statistics.median(values), 3)
    print(f"{label}: n={out['count']} p50 {out['p50_s']:.2f} s, p95 {out['p95_s']:.2f} s, max {out['max_s']:.2f} s")
    if parts:
        print("   medians: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items() if k.endswith("_p50_s")))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--notes-per-client", type=int, default=5)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the service, e.g. GRISTMILL_RUNNER_POLL_SECONDS=0.5")
    parser.add_argument("--label", default="", help="a note stored with the figures")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    rng = random.Random(11)

    started = time.perf_counter()
    with running_service(env=env) as service:
        print(f"service ready in {time.perf_counter() - started:.1f} s at {service.base_url}")
        with service.client() as client:
            library_id = create_library(client, "latency")
            cold, cold_run_id = ingest_one(client, library_id, note(rng, "coldstart0"), "coldstart0")
            sequential: list[Timing] = []
            sequential_runs: list[tuple[Timing, str | None]] = []
            for i in range(args.sequential):
                token = f"seqnote{i:04d}"
                timing, run_id = ingest_one(client, library_id, note(rng, token), token)
                sequential.append(timing)
                sequential_runs.append((timing, run_id))
        add_breakdowns(service, [(cold, cold_run_id), *sequential_runs])
        print(f"first ingest after start: {cold.total_s:.2f} s {cold.breakdown}")
        seq = summarise("sequential single-note ingests (submit -> searchable)", sequential)
        lost_seq = sum(1 for t in sequential if not t.ok)

        lock = threading.Lock()
        concurrent: list[Timing] = []
        concurrent_runs: list[tuple[Timing, str | None]] = []
        errors: list[str] = []

        def client_run(number: int) -> None:
            local = random.Random(number)
            with service.client(timeout=300) as client:
                for j in range(args.notes_per_client):
                    token = f"c{number:02d}note{j:02d}"
                    try:
                        # A client polling every 50 ms, times 20, would be most of the load it measures.
                        timing, run_id = ingest_one(client, library_id, note(local, token), token, poll=0.25)
                    except httpx.HTTPError as error:
                        with lock:
                            errors.append(f"{token}: {type(error).__name__}: {error}")
                        continue
                    with lock:
                        concurrent.append(timing)
                        concurrent_runs.append((timing, run_id))

        cpu_before = cpu_seconds_by_role(service.pid)
        wall = time.perf_counter()
        if args.clients:
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(client_run, range(args.clients)))
        wall = time.perf_counter() - wall
        cpu = cpu_delta(cpu_before, cpu_seconds_by_role(service.pid))
        add_breakdowns(service, concurrent_runs)
        expected = args.clients * args.notes_per_client
        lost = expected - sum(1 for t in concurrent if t.ok)
        errors += [t.problem for t in concurrent + sequential if t.problem]
        conc = summarise(f"{args.clients} concurrent clients x {args.notes_per_client} notes", concurrent)
        print(f"   {expected} notes in {wall:.1f} s ({expected / wall:.2f} notes/s); lost or failed: {lost}"
              + "".join(f"\n   {e}" for e in errors[:10]))
        if args.clients:
            cores = len(os.sched_getaffinity(0))
            print(f"   CPU s per note by process (of {cores * wall / expected:.2f} s available on {cores} cores): "
                  + ", ".join(f"{role} {seconds / expected:.3f}" for role, seconds in cpu.items() if seconds))

    line = {"label": args.label, "env": env, "cold_s": round(cold.total_s, 3), "cold_breakdown": cold.breakdown,
            "sequential": seq, "sequential_lost": lost_seq,
            "concurrent": {**conc, "clients": args.clients, "notes_per_client": args.notes_per_client,
                           "wall_s": round(wall, 2), "lost": lost, "errors": errors[:10],
                           "cpu_s_by_role": cpu},
            "targets": {"p50_s": 1.5, "p95_s": 3.0},
            "sequential_samples_s": [round(t.total_s, 3) for t in sequential],
            "sequential_breakdowns": [t.breakdown for t in sequential]}
    path = record("latency", line)
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
