"""How fast the embeddings server embeds ~256-token chunks, over HTTP and compared with the model called directly.

    python bench/bench_embedder.py [--chunks 200] [--runs 3] [--base-url URL]

Starts `python -m gristmill.embeddings --port 0` as a child (unless --base-url names a running one),
prints chunks/s (median of the runs) for the server over HTTP and for SentenceTransformer.encode in
this process, the server's resident memory, and appends one JSON line to bench/results/embedder.jsonl.
`measure_embedder(texts, base_url)` is the piece other benchmarks reuse.
"""

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.settings import get_settings  # noqa: E402
from tasks.chunk import MAX_CONTENT_TOKENS, count_tokens, load_tokenizer  # noqa: E402
from tasks.embed import EmbeddingsClient  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "embedder.jsonl"

_VOCABULARY = (
    "the service stores every chunk with its source library heading page and row range so that search results "
    "can cite where an answer came from when a document changes only the chunks around the edit are embedded "
    "again which keeps re-ingestion cheap users push inline text urls and files into named libraries and the "
    "pipeline fetches parses chunks embeds and upserts them into a vector store with keyword search alongside "
    "retries back off on timeouts and rate limits while malformed answers fail at once with a clear message"
).split()


def generate_chunks(n: int, *, tokens: int = MAX_CONTENT_TOKENS, seed: int = 0) -> list[str]:
    """`n` distinct English-like texts of exactly `tokens` model tokens (the most a chunk may hold)."""
    rnd = random.Random(seed)
    tokenizer = load_tokenizer()
    chunks = []
    for _ in range(n):
        words: list[str] = []
        while count_tokens(" ".join(words), tokenizer) < tokens:
            sentence = [rnd.choice(_VOCABULARY) for _ in range(rnd.randint(8, 20))]
            words += [sentence[0].capitalize(), *sentence[1:-1], sentence[-1] + "."]
        while count_tokens(" ".join(words), tokenizer) > tokens:
            words.pop()
        chunks.append(" ".join(words))
    return chunks


def measure_embedder(texts: list[str], base_url: str) -> float:
    """Chunks per second for embedding `texts` once through the endpoint at `base_url`, in the pipeline's batches."""
    settings = get_settings()
    with EmbeddingsClient(
        base_url, settings.embedding_model, timeout=600, batch_size=settings.embed_batch_size
    ) as client:
        started = time.perf_counter()
        client.embed(texts)
        return len(texts) / (time.perf_counter() - started)


def direct_encoder(texts: list[str]) -> Callable[[], float]:
    """SentenceTransformer.encode in this process, in the pipeline's batch size: a function timing one pass."""
    from sentence_transformers import SentenceTransformer

    from gristmill.embedding_models import packaged_model_dir

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    model.encode(texts[:8], normalize_embeddings=True)  # warm-up, as the server has had
    batch = get_settings().embed_batch_size

    def once() -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
        return len(texts) / (time.perf_counter() - started)

    return once


@contextmanager
def embeddings_server_child() -> Iterator[tuple[str, int]]:
    """`python -m gristmill.embeddings` on a free port; yields (base_url, pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gristmill.embeddings", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if " ready at " not in line:
            raise RuntimeError(f"the embeddings server did not start (exit code {process.poll()})")
        yield line.split(" ready at ")[1].strip(), process.pid
    finally:
        process.terminate()
        process.wait(30)


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"], 1), "peak_rss_mb": round(fields["VmHWM"], 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base-url", help="a running OpenAI-compatible endpoint instead of a child server")
    args = parser.parse_args(argv)

    texts = generate_chunks(args.chunks)
    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "chunks": len(texts),
        "tokens_per_chunk": MAX_CONTENT_TOKENS,
        "batch_size": get_settings().embed_batch_size,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.processor() or platform.machine(),
    }

    @contextmanager
    def server() -> Iterator[tuple[str, int | None]]:
        if args.base_url:
            yield args.base_url, None
        else:
            with embeddings_server_child() as (url, pid):
                yield url, pid

    direct = direct_encoder(texts)
    server_runs: list[float] = []
    direct_runs: list[float] = []
    with server() as (base_url, pid):
        measure_embedder(texts[:32], base_url)  # warm-up: the first call pays for lazy initialisation
        # Interleaved, so that a noisy neighbour on a shared machine slows both sides alike.
        for _ in range(args.runs):
            server_runs.append(measure_embedder(texts, base_url))
            direct_runs.append(direct())
        memory = memory_mb(pid) if pid is not None else {}

    server_rate, direct_rate = statistics.median(server_runs), statistics.median(direct_runs)
    result.update(
        server_chunks_per_s=round(server_rate, 2),
        server_runs=[round(v, 2) for v in server_runs],
        direct_chunks_per_s=round(direct_rate, 2),
        direct_runs=[round(v, 2) for v in direct_runs],
        **{f"server_{k}": v for k, v in memory.items()},
    )
    print(f"server over HTTP: {server_rate:.2f} chunks/s (median of {args.runs}: {result['server_runs']})")
    print(f"direct encode:    {direct_rate:.2f} chunks/s (median of {args.runs}: {result['direct_runs']})")
    print(f"HTTP overhead:    {100 * (1 - server_rate / direct_rate):.1f}%")
    if memory:
        print(f"server memory:    {memory['rss_mb']} MB resident, {memory['peak_rss_mb']} MB peak")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")
    print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
