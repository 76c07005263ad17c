"""Completion webhooks through the running service: how soon they arrive, and that jobs do not wait.

    .venv/bin/python -m bench.bench_webhooks [--notes 20]

Starts `gristmill serve` (bench/service.py) with loopback allowed for webhooks and a loopback HTTP
server as the receivers, then ingests `--notes` single notes one after another (each POSTed, its job
polled every 50 ms until final) three times:
1. no subscription: the job latency (POST until the job is final) as a baseline;
2. a receiver answering 200 to both events: the same job latency, and how long after the job's
   `finished_at` its `job_finished` arrived (and a source's `processed_at` its `source_ingested`);
3. that receiver plus two failing ones (one answers 500, one holds every request past the
   attempt's time limit): the job latency again, which a failing receiver must not move.
Each phase's CPU seconds per note (every process of the service) say what the deliveries cost.
Prints p50/p95 and appends JSON lines to bench/results/webhooks.jsonl (about 3 minutes).
"""

import argparse
import json
import threading
import time
from datetime import datetime

import httpx

from bench.service import cpu_delta, cpu_seconds_by_role, create_library, p50_p95, record, running_service
from tests.http_server import LoopbackServer, RecordedRequest, Reply


class Arrivals:
    """When each event id reached the good receiver (wall-clock seconds, as the service stamps times)."""

    def __init__(self) -> None:
        self.at: dict[str, tuple[float, dict]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        event = json.loads(request.body)
        with self.lock:
            self.at.setdefault(event["id"], (time.time(), event))
        return Reply(200, b"ok")

    def for_subject(self, event_type: str, key: str, subject: str) -> tuple[float, dict] | None:
        with self.lock:
            found = [(t, e) for t, e in self.at.values() if e["type"] == event_type and e["data"][key] == subject]
        return found[0] if found else None


def ingest_notes(client: httpx.Client, library_id: str, count: int, label: str) -> list[dict]:
    jobs = []
    for i in range(count):
        started = time.perf_counter()
        accepted = client.post(f"/v1/libraries/{library_id}/ingest",
                               json={"content": f"Note {label}-{i}: the mill wheel turns {i} times an hour."}).json()
        while (job := client.get(f"/v1/jobs/{accepted['job_id']}").json())["status"] not in ("completed", "partial", "failed"):
            time.sleep(0.05)
        job["latency_s"] = time.perf_counter() - started
        job["source_id"] = accepted["source_ids"][0]
        jobs.append(job)
    return jobs


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_for(arrivals: Arrivals, jobs: list[dict], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while any(arrivals.for_subject("job_finished", "job_id", j["id"]) is None for j in jobs):
        if time.monotonic() > deadline:
            raise TimeoutError("not every job_finished arrived")
        time.sleep(0.2)


def delivery_run_count(prefect_api_url: str) -> int:
    with httpx.Client(base_url=prefect_api_url, timeout=30) as prefect:
        deployment = prefect.get("/deployments/name/deliver-webhooks/deliver-webhooks").json()
        return prefect.post("/flow_runs/count", json={"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}).json()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=20)
    args = parser.parse_args(argv)
    arrivals = Arrivals()
    with LoopbackServer() as receivers, running_service(env={"GRISTMILL_FETCH_ALLOWED_NETWORKS": "127.0.0.0/8"}) as service:
        receivers.route("/good", arrivals)
        receivers.serve("/broken", "down", status=500)
        receivers.serve("/hanging", "late", delay=15.0)  # past GRISTMILL_WEBHOOK_TIMEOUT_SECONDS (10 s)
        cpu: dict[str, float] = {}

        def phase(name: str, run):
            before = cpu_seconds_by_role(service.pid)
            result = run()
            cpu[name] = round(sum(cpu_delta(before, cpu_seconds_by_role(service.pid)).values()) / args.notes, 3)
            return result

        with service.client() as client:
            library_id = create_library(client, "webhooks")
            ingest_notes(client, library_id, 1, "warm-up")
            baseline = phase("no_subscription", lambda: ingest_notes(client, library_id, args.notes, "baseline"))

            client.post("/v1/webhooks", json={"url": receivers.url("/good"), "events": ["source_ingested", "job_finished"]}).raise_for_status()
            announced = phase("good_receiver", lambda: ingest_notes(client, library_id, args.notes, "announced"))
            wait_for(arrivals, announced)

            for path in ("/broken", "/hanging"):
                client.post("/v1/webhooks", json={"url": receivers.url(path), "events": ["source_ingested", "job_finished"]}).raise_for_status()
            failing = phase("good_plus_failing_receivers", lambda: ingest_notes(client, library_id, args.notes, "failing"))
            wait_for(arrivals, failing)
            delivery_runs = delivery_run_count(service.prefect_api_url)

    job_delay = [arrivals.for_subject("job_finished", "job_id", j["id"])[0] - seconds(j["finished_at"]) for j in announced + failing]
    source_delay = []
    for job in announced + failing:
        arrived, event = arrivals.for_subject("source_ingested", "source_id", job["source_id"])
        source_delay.append(arrived - seconds(event["data"]["processed_at"]))
    figures = {
        "notes": args.notes,
        "job_latency_p50_p95_s": {
            "no_subscription": p50_p95([j["latency_s"] for j in baseline]),
            "good_receiver": p50_p95([j["latency_s"] for j in announced]),
            "good_plus_failing_receivers": p50_p95([j["latency_s"] for j in failing]),
        },
        "job_finished_to_arrival_p50_p95_s": p50_p95(job_delay),
        "source_processed_to_arrival_p50_p95_s": p50_p95(source_delay),
        "cpu_seconds_per_note_while_ingesting": cpu,
        "delivery_flow_runs": delivery_runs,
        "failing_receiver_requests": {"broken": receivers.hits("/broken"), "hanging": receivers.hits("/hanging")},
    }
    for name, value in figures.items():
        shown = [round(v, 3) for v in value] if isinstance(value, tuple) else (
            {k: [round(x, 3) for x in v] for k, v in value.items()} if isinstance(value, dict) and name.startswith("job_latency") else value)
        print(f"{name}: {shown}")
    print(f"appended to {record('webhooks', figures)}")


if __name__ == "__main__":
    main()
