"""Ingest throughput of the running service beside the embedder alone, on the same chunks, in one run.

    .venv/bin/python -m bench.bench_throughput                      # 60 documents, ~500 chunks, ~5 min
    .venv/bin/python -m bench.bench_throughput --documents 300 --runs 3   # the issue's size, ~2,500 chunks

Writes the seeded mixed-format corpus (bench/corpus.py: Markdown, TXT, HTML, CSV, JSON, DOCX, PDF),
starts `gristmill serve` (bench/service.py) and, per run, uploads every file to a fresh library
through POST /v1/libraries/{id}/files (`--files-per-request` per request, so one job and one flow run
per request) and waits until every job is final: service chunks/s = chunks stored / (first upload
to last job final). Then the same chunk texts, read back through GET /v1/sources/{id}/chunks, go to
the service's own embeddings server through `measure_embedder` (the pipeline's client and batch
size, one request at a time): embedder chunks/s. Runs alternate service and embedder, so a noisy
neighbour slows both alike; the figures are medians. Also prints where the CPU went during the
ingest, per process of the service. Appends JSON lines to bench/results/throughput.jsonl.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_embedder import measure_embedder
from bench.corpus import build_corpus
from bench.service import (
    cpu_delta,
    cpu_seconds_by_role,
    create_library,
    record,
    running_service,
    source_chunk_texts,
    wait_for_jobs,
)

CONTENT_TYPES = {
    ".md": "text/markdown", ".txt": "text/plain", ".html": "text/html", ".csv": "text/csv",
    ".json": "application/json", ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def upload(client: httpx.Client, library_id: str, paths: list[Path]) -> dict:
    files = [("file", (p.name, p.read_bytes(), CONTENT_TYPES[p.suffix])) for p in paths]
    answer = client.post(f"/v1/libraries/{library_id}/files", files=files)
    answer.raise_for_status()
    return answer.json()


def ingest_corpus(client: httpx.Client, library_id: str, paths: list[Path], per_request: int) -> dict:
    started = time.perf_counter()
    answers = [upload(client, library_id, paths[i : i + per_request]) for i in range(0, len(paths), per_request)]
    submitted = time.perf_counter() - started
    # Polled once a second: over a run of minutes that resolution costs little, and polling faster
    # would add API work to what is measured.
    jobs = wait_for_jobs(client, [a["job_id"] for a in answers], poll=1.0)
    elapsed = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for job in jobs.values():
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    return {
        "elapsed_s": elapsed,
        "submit_s": submitted,
        "jobs": statuses,
        "chunks": sum(job["chunk_count"] for job in jobs.values()),
        "failed_sources": sum(job["counts"]["failed"] for job in jobs.values()),
        "source_ids": [s for job in jobs.values() for s in job["source_ids"]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--files-per-request", type=int, default=25,
                        help="files per upload request: one job, so one flow run, per request")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the service, e.g. GRISTMILL_RUNNER_FLOW_LIMIT=2")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    corpus_dir = Path(tempfile.mkdtemp(prefix="gristmill-bench-corpus-"))
    corpus = build_corpus(corpus_dir, documents=args.documents, seed=args.seed)
    paths = corpus.paths
    size_mb = sum(p.stat().st_size for p in paths) / 2**20
    print(f"corpus: {len(paths)} files, {corpus.total_words:,} words, {size_mb:.1f} MB in {corpus_dir}")

    service_rates: list[float] = []
    embedder_rates: list[float] = []
    runs: list[dict] = []
    with running_service(env=env) as service, service.client(timeout=600) as client:
        # Warm-up: the first flow run and the first embeddings call pay for lazy start-up.
        warm = create_library(client, "warm-up")
        wait_for_jobs(client, [upload(client, warm, paths[:2])["job_id"]])
        for run in range(args.runs):
            library_id = create_library(client, f"throughput-{run}")
            cpu_before = cpu_seconds_by_role(service.pid)
            outcome = ingest_corpus(client, library_id, paths, args.files_per_request)
            cpu = cpu_delta(cpu_before, cpu_seconds_by_role(service.pid))
            texts = [t for source_id in outcome["source_ids"] for t in source_chunk_texts(client, source_id)]
            if len(texts) != outcome["chunks"]:
                raise RuntimeError(f"the jobs report {outcome['chunks']} chunks but {len(texts)} are stored")
            service_rate = outcome["chunks"] / outcome["elapsed_s"]
            embedder_rate = measure_embedder(texts, service.embeddings_url)
            service_rates.append(service_rate)
            embedder_rates.append(embedder_rate)
            busy = sum(cpu.values())
            print(f"run {run + 1}: service {outcome['chunks']} chunks in {outcome['elapsed_s']:.1f} s "
                  f"= {service_rate:.2f} chunks/s (uploads took {outcome['submit_s']:.1f} s; jobs {outcome['jobs']}); "
                  f"embedder alone {embedder_rate:.2f} chunks/s; ratio {service_rate / embedder_rate:.3f}")
            print(f"   CPU during the ingest: {busy:.1f} s over {outcome['elapsed_s']:.1f} s wall "
                  f"({busy / outcome['elapsed_s']:.2f} cores busy): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.05))
            runs.append({"chunks": outcome["chunks"], "elapsed_s": round(outcome["elapsed_s"], 2),
                         "submit_s": round(outcome["submit_s"], 2), "jobs": outcome["jobs"],
                         "failed_sources": outcome["failed_sources"], "unique_texts": len(set(texts)),
                         "service_chunks_per_s": round(service_rate, 3),
                         "embedder_chunks_per_s": round(embedder_rate, 3), "cpu_s_by_role": cpu})

    service_median, embedder_median = statistics.median(service_rates), statistics.median(embedder_rates)
    ratio = service_median / embedder_median
    print(f"median of {args.runs}: service {service_median:.2f} chunks/s, embedder alone {embedder_median:.2f} "
          f"chunks/s, ratio {ratio:.3f} (target >= 0.9)")
    path = record("throughput", {
        "label": args.label, "env": env, "documents": len(paths), "seed": args.seed, "corpus_mb": round(size_mb, 2),
        "files_per_request": args.files_per_request, "runs": runs,
        "service_chunks_per_s": round(service_median, 3), "embedder_chunks_per_s": round(embedder_median, 3),
        "ratio": round(ratio, 3), "target_ratio": 0.9,
    })
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
