"""Incremental re-embedding: re-ingesting a 200-chunk document after a one-paragraph edit, against its first ingest.

    .venv/bin/python -m bench.bench_reembed [--chunks 200] [--runs 3]

Writes a Markdown manual that the chunker cuts into `--chunks` chunks (checked in-process with the
library defaults, 256/32 tokens), starts `gristmill serve` (bench/service.py) and, per run, in a
fresh library: ingests it through the API with an external id, then ingests it again with one
paragraph in the middle reworded. For both it measures submit -> job completed (wall), the CPU the
embeddings server used, and the CPU of the whole service; and it counts the chunk texts the edit
introduced (the only ones the second ingest must embed; tasks/embed.py reuses the rest by text
hash). The target is a second ingest costing at most 10% of the first. Medians of the runs;
appends JSON lines to bench/results/reembed.jsonl. About 2 minutes per run.
"""

import argparse
import random
import statistics
import time

import httpx

from bench.bench_embedder import _VOCABULARY
from bench.service import (
    cpu_delta,
    cpu_seconds_by_role,
    create_library,
    record,
    running_service,
    source_chunk_texts,
    wait_for_jobs,
)
from gristmill.documents import FetchedContent
from gristmill.settings import get_settings
from tasks.chunk import chunk_with_default_tokenizer
from tasks.parse import parse_document


def manual(sections: int, seed: int = 3) -> str:
    """A Markdown manual of `sections` sections of four paragraphs each."""
    rng = random.Random(seed)
    parts = ["# Operations manual\n"]
    for s in range(sections):
        parts.append(f"## Section {s + 1}: procedure {s + 1}\n")
        for p in range(4):
            sentences = []
            for _ in range(rng.randint(5, 8)):
                words = [rng.choice(_VOCABULARY) for _ in range(rng.randint(10, 18))]
                sentences.append(" ".join([words[0].capitalize(), *words[1:]]) + ".")
            parts.append(f"Step {s + 1}.{p + 1}: " + " ".join(sentences) + "\n")
    return "\n".join(parts)


def chunk_count(text: str) -> int:
    settings = get_settings()
    document = parse_document(FetchedContent(data=text.encode(), content_type="text/markdown", uri=None,
                                             filename="manual.md"), settings)
    return len(chunk_with_default_tokenizer(document, settings.chunk_max_tokens, settings.chunk_overlap_tokens))


def document_with_chunks(target: int) -> tuple[str, int]:
    """The smallest manual (in whole sections) that makes at least `target` chunks, and its chunk count."""
    low, high = 1, 8
    while chunk_count(manual(high)) < target:
        low, high = high, high * 2
    while low < high:  # the fewest sections reaching the target
        middle = (low + high) // 2
        if chunk_count(manual(middle)) >= target:
            high = middle
        else:
            low = middle + 1
    text = manual(high)
    return text, chunk_count(text)


def edit_one_paragraph(text: str) -> str:
    """Reword one paragraph in the middle of the document (a sentence added, one word changed)."""
    paragraphs = text.split("\n\n")
    middle = len(paragraphs) // 2
    while not paragraphs[middle].startswith("Step "):
        middle += 1
    paragraphs[middle] = paragraphs[middle].replace(":", ": Revised after the spring audit.", 1).replace(
        " the ", " every ", 1)
    return "\n\n".join(paragraphs)


def ingest(client: httpx.Client, service_pid: int, library_id: str, text: str) -> dict:
    cpu_before = cpu_seconds_by_role(service_pid)
    started = time.perf_counter()
    answer = client.post(f"/v1/libraries/{library_id}/ingest", json={
        "content": text, "content_type": "text/markdown", "title": "manual.md", "external_id": "manual"})
    answer.raise_for_status()
    job = wait_for_jobs(client, [answer.json()["job_id"]], poll=0.05)[answer.json()["job_id"]]
    wall = time.perf_counter() - started
    cpu = cpu_delta(cpu_before, cpu_seconds_by_role(service_pid))
    if job["status"] != "completed":
        raise RuntimeError(f"the ingest ended {job['status']}: {job}")
    return {"wall_s": wall, "embedder_cpu_s": cpu.get("embeddings-server", 0.0), "service_cpu_s": sum(cpu.values()),
            "cpu_s_by_role": cpu, "source_id": job["source_ids"][0], "chunks": job["chunk_count"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    text, chunks = document_with_chunks(args.chunks)
    edited = edit_one_paragraph(text)
    print(f"document: {len(text):,} bytes, {chunks} chunks")
    results = []
    with running_service(env=env) as service, service.client() as client:
        warm = create_library(client, "warm-up")  # the first flow run and embeddings call start things up
        wait_for_jobs(client, [client.post(f"/v1/libraries/{warm}/ingest", json={"content": "warm up"}).json()["job_id"]])
        for run in range(args.runs):
            library_id = create_library(client, f"reembed-{run}")
            first = ingest(client, service.pid, library_id, text)
            before = source_chunk_texts(client, first["source_id"])
            second = ingest(client, service.pid, library_id, edited)
            after = source_chunk_texts(client, second["source_id"])
            new_texts = len(set(after) - set(before))
            line = {
                "first": first, "second": second, "chunks_after": len(after), "new_chunk_texts": new_texts,
                "wall_ratio": second["wall_s"] / first["wall_s"],
                "embedder_cpu_ratio": second["embedder_cpu_s"] / max(first["embedder_cpu_s"], 1e-9),
                "service_cpu_ratio": second["service_cpu_s"] / first["service_cpu_s"],
            }
            results.append(line)
            print(f"run {run + 1}: first {first['wall_s']:.2f} s wall, {first['embedder_cpu_s']:.1f} s embedder CPU, "
                  f"{first['service_cpu_s']:.1f} s service CPU; after the edit {second['wall_s']:.2f} s wall, "
                  f"{second['embedder_cpu_s']:.2f} s embedder CPU, {second['service_cpu_s']:.1f} s service CPU; "
                  f"{new_texts} of {len(after)} chunk texts new")
            print("   second ingest CPU by process: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(second["cpu_s_by_role"].items(), key=lambda kv: -kv[1]) if v >= 0.01))

    medians = {k: statistics.median(r[k] for r in results) for k in ("wall_ratio", "embedder_cpu_ratio", "service_cpu_ratio")}
    print(f"median of {args.runs}: re-ingest / first ingest = {medians['wall_ratio']:.3f} wall, "
          f"{medians['embedder_cpu_ratio']:.3f} embedder CPU, {medians['service_cpu_ratio']:.3f} service CPU "
          f"(target <= 0.10); {statistics.median(r['new_chunk_texts'] for r in results)} of {chunks} chunks re-embedded")
    for r in results:
        for side in ("first", "second"):
            r[side] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r[side].items()}
    path = record("reembed", {"label": args.label, "env": env, "chunks": chunks, "runs": results,
                              **{k: round(v, 4) for k, v in medians.items()}, "target_ratio": 0.10})
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
