"""How fast the embeddings server embeds chunks in each precision, over HTTP, beside float32 in the same run.

    python -m bench.bench_embedder [--chunks 64] [--runs 3] [--direct [--onnx] [--threads N]]

Two sets of texts: `--chunks` English-like chunks of exactly 254 tokens (the most a chunk holds) and
the chunks our own parser and chunker make of this repository's documentation and code (real
passages of every length). For each precision the server can run in (float32, bfloat16) it starts
`python -m gristmill.embeddings --port 0` with GRISTMILL_EMBEDDINGS_PRECISION set, then measures the
servers in turn, round after round (A/B/A/B), so that a noisy neighbour on a shared machine slows
every variant alike; figures are medians of the rounds. `--direct` adds other ways of running the
model, in this process, against SentenceTransformer.encode in float32 (the reference every cosine
is taken against); `--onnx` adds ONNX Runtime if it is installed (it is not a dependency).
Appends one JSON line to bench/results/embedder.jsonl. `measure_embedder(texts, base_url)` is the
piece other benchmarks reuse.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.settings import get_settings  # noqa: E402
from tasks.chunk import MAX_CONTENT_TOKENS, count_tokens, load_tokenizer  # noqa: E402
from tasks.embed import EmbeddingsClient  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "embedder.jsonl"
SERVER_PRECISIONS = ("float32", "bfloat16")
# The repository's own prose and code, as the pipeline would chunk it: real text, always at hand.
DOC_GLOBS = ("README.md", "docs/*.md", "bench/README.md", "gristmill/embeddings/server.py", "tasks/chunk.py")

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


def document_passages() -> list[str]:
    """This repository's documentation and some of its code, parsed and chunked as the pipeline does."""
    from gristmill.documents import FetchedContent
    from tasks.chunk import chunk_document
    from tasks.parse import parse_document

    tokenizer = load_tokenizer()
    settings = get_settings()
    passages = []
    for pattern in DOC_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            document = parse_document(FetchedContent(data=path.read_bytes(), content_type=None, uri=str(path)), settings)
            chunks = chunk_document(
                document,
                max_tokens=settings.chunk_max_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                tokenizer=tokenizer,
            )
            passages += [c.text for c in chunks if c.text.strip()]
    return passages


def measure_embedder(texts: list[str], base_url: str) -> float:
    """Chunks per second for embedding `texts` once through the endpoint at `base_url`, in the pipeline's batches."""
    return len(texts) / _timed(lambda: embed_over_http(texts, base_url))[1]


def embed_over_http(texts: list[str], base_url: str) -> np.ndarray:
    settings = get_settings()
    with EmbeddingsClient(
        base_url, settings.embedding_model, timeout=600, batch_size=settings.embed_batch_size
    ) as client:
        return client.embed(texts)


def _timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = run()
    return vectors, time.perf_counter() - started


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of process `pid` so far, or of this process; from /proc (Linux)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextmanager
def embeddings_server_child(env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """`python -m gristmill.embeddings` on a free port; yields (base_url, pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gristmill.embeddings", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
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


# --- ways of running the model in this process (--direct, --onnx) ----------------------------------


def direct_variants(onnx: bool, threads: int | None = None) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """Name -> a function embedding texts into unit float32 rows, each a way of running the model here."""
    import torch
    from sentence_transformers import SentenceTransformer

    from gristmill.embedding_models import packaged_model_dir

    model_dir = str(packaged_model_dir())
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    float32 = SentenceTransformer(model_dir, device="cpu")

    def encode(model: SentenceTransformer, *, batch: int = 16, autocast: bool = False) -> Callable:
        def run(texts: list[str]) -> np.ndarray:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                vectors = model.encode(texts, batch_size=batch, convert_to_tensor=True, show_progress_bar=False)
            return _unit(vectors.float().numpy())

        return run

    bfloat16_weights = SentenceTransformer(model_dir, device="cpu").to(torch.bfloat16)
    int8 = torch.ao.quantization.quantize_dynamic(
        SentenceTransformer(model_dir, device="cpu"), {torch.nn.Linear}, dtype=torch.qint8
    )
    variants = {
        "float32 batch 16 (reference)": encode(float32),
        "bfloat16 autocast batch 16 (the server's)": encode(float32, autocast=True),
        "bfloat16 autocast batch 8": encode(float32, batch=8, autocast=True),
        "bfloat16 autocast batch 32": encode(float32, batch=32, autocast=True),
        "bfloat16 autocast, token budget 4096 per batch": _token_budget(encode(float32, batch=10**6, autocast=True)),
        "bfloat16 weights batch 16": encode(bfloat16_weights),
        "int8 dynamic (qint8 Linear) batch 16": encode(int8),
    }
    if onnx:
        variants.update(_onnx_variants(model_dir))
    return variants


def _token_budget(run_batch: Callable[[list[str]], np.ndarray], budget: int = 16 * 256) -> Callable:
    """Texts sorted by length and cut into batches of at most `budget` padded tokens, instead of 16 texts."""
    tokenizer = load_tokenizer()

    def run(texts: list[str]) -> np.ndarray:
        lengths = [min(count_tokens(t, tokenizer) + 2, 256) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        rows: dict[int, np.ndarray] = {}
        start = 0
        while start < len(order):
            end = start + max(1, budget // lengths[order[start]])  # the first is the longest: it sets the padding
            batch = order[start:end]
            for i, vector in zip(batch, run_batch([texts[i] for i in batch])):
                rows[i] = vector
            start = end
        return np.stack([rows[i] for i in range(len(texts))])

    return run


def _onnx_variants(model_dir: str) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """The model exported to ONNX by torch and run by ONNX Runtime (float32, and int8 quantised by ORT)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("--onnx: onnxruntime is not installed; skipped")
        return {}
    import tempfile

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(model_dir).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001 - traced, not called
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    folder = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    ids = torch.ones((2, 16), dtype=torch.long)
    path = folder / "model.onnx"
    torch.onnx.export(
        TokenEmbeddings(),
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")},
        dynamo=False,
    )
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()

    def session_runner(onnx_path: Path) -> Callable[[list[str]], np.ndarray]:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        def run(texts: list[str]) -> np.ndarray:
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            rows: dict[int, np.ndarray] = {}
            for start in range(0, len(order), 16):
                batch = order[start : start + 16]
                encodings = tokenizer.encode_batch([texts[i] for i in batch])
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                feeds = {
                    "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                    "attention_mask": mask,
                    "token_type_ids": np.zeros_like(mask),
                }
                hidden = session.run(None, feeds)[0]
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                for i, vector in zip(batch, pooled):
                    rows[i] = vector
            return _unit(np.stack([rows[i] for i in range(len(texts))]).astype(np.float32))

        return run

    variants = {"onnxruntime float32 batch 16": session_runner(path)}
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(folder / "int8.onnx"), weight_type=QuantType.QInt8)
        variants["onnxruntime int8 dynamic batch 16"] = session_runner(folder / "int8.onnx")
    except Exception as error:  # noqa: BLE001 - a measurement we report as missing, not a failure
        print(f"--onnx: int8 quantisation failed: {type(error).__name__}: {error}")
    return variants


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    embed: Callable[[list[str]], np.ndarray]
    pid: int | None = None  # whose CPU time the embedding costs: a server child's, else this process's
    rates: dict[str, list[float]] = field(default_factory=dict)  # chunks/s per text set, one per round
    cpu_rates: dict[str, list[float]] = field(default_factory=dict)  # chunks per CPU-second, likewise
    cosines: dict[str, np.ndarray] = field(default_factory=dict)  # per text set, against the reference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=64, help="254-token chunks in the synthetic set")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each measures every variant once")
    parser.add_argument("--direct", action="store_true", help="add other ways of running the model, in process")
    parser.add_argument("--onnx", action="store_true", help="add ONNX Runtime (with --direct; if installed)")
    parser.add_argument(
        "--threads", type=int, help="threads of the in-process variants (default every core; the servers use every core)"
    )
    args = parser.parse_args(argv)

    text_sets = {"254-token chunks": generate_chunks(args.chunks), "repository passages": document_passages()}
    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "texts": {name: len(texts) for name, texts in text_sets.items()},
        "batch_size": get_settings().embed_batch_size,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.processor() or platform.machine(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"texts: {result['texts']}; load average {result['load_before']}")

    with ExitStack() as stack:
        variants: list[Variant] = []
        for precision in SERVER_PRECISIONS:
            url, pid = stack.enter_context(embeddings_server_child({"GRISTMILL_EMBEDDINGS_PRECISION": precision}))
            name = f"server {precision} over HTTP"
            variants.append(Variant(name, lambda texts, url=url: embed_over_http(texts, url), pid))
        if args.direct:
            variants += [Variant(name, run) for name, run in direct_variants(args.onnx, args.threads).items()]
        for variant in variants:  # warm-up: the first call pays for lazy initialisation
            variant.embed(text_sets["254-token chunks"][:16])

        reference: dict[str, np.ndarray] = {}
        for round_ in range(args.runs):
            for set_name, texts in text_sets.items():
                for variant in variants:
                    cpu_before = cpu_seconds(variant.pid)
                    vectors, seconds = _timed(lambda: variant.embed(texts))
                    cpu = cpu_seconds(variant.pid) - cpu_before
                    variant.rates.setdefault(set_name, []).append(len(texts) / seconds)
                    variant.cpu_rates.setdefault(set_name, []).append(len(texts) / cpu)
                    if set_name not in reference:  # the first variant measured is float32 over HTTP
                        reference[set_name] = vectors
                    variant.cosines[set_name] = np.sum(vectors * reference[set_name], axis=1)
            print(f"round {round_ + 1}/{args.runs} done, load average {[round(x, 2) for x in os.getloadavg()]}")
        memory = {v.name: memory_mb(v.pid) for v in variants if v.pid is not None}

    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["variants"] = {}
    base = variants[0]
    print(
        f"\nmedians of {args.runs} interleaved rounds; x = against the float32 server; per CPU-s = chunks per "
        "CPU-second of the process that ran the model (a server child, else this one)"
    )
    for set_name in text_sets:
        print(f"\n{set_name} ({len(text_sets[set_name])} texts)")
        print(f"{'variant':48s} {'chunks/s':>8s} {'x':>5s} {'per CPU-s':>9s} {'x':>5s} {'min cos':>8s} {'mean cos':>9s}  chunks/s runs")
        base_rate = statistics.median(base.rates[set_name])
        base_cpu_rate = statistics.median(base.cpu_rates[set_name])
        for variant in variants:
            rate = statistics.median(variant.rates[set_name])
            cpu_rate = statistics.median(variant.cpu_rates[set_name])
            cosines = variant.cosines[set_name]
            runs = [round(r, 1) for r in variant.rates[set_name]]
            print(
                f"{variant.name:48s} {rate:8.1f} {rate / base_rate:5.2f} {cpu_rate:9.1f} {cpu_rate / base_cpu_rate:5.2f} "
                f"{cosines.min():8.5f} {cosines.mean():9.6f}  {runs}"
            )
            result["variants"].setdefault(variant.name, {})[set_name] = {
                "chunks_per_s": round(rate, 2),
                "runs": runs,
                "x_float32_server": round(rate / base_rate, 3),
                "chunks_per_cpu_s": round(cpu_rate, 2),
                "cpu_x_float32_server": round(cpu_rate / base_cpu_rate, 3),
                "min_cosine": round(float(cosines.min()), 6),
                "mean_cosine": round(float(cosines.mean()), 6),
            }
    for name, figures in memory.items():
        print(f"{name}: {figures['rss_mb']} MB resident, {figures['peak_rss_mb']} MB peak")
        result["variants"][name]["memory"] = figures
    print(f"load average {result['load_before']} before, {result['load_after']} after")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")
    print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
