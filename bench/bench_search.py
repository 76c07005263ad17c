"""Search latency over one 100,000-chunk library, through ChunkStore.search and through LanceDB directly.

    .venv/bin/python bench/bench_search.py [--rows 100000] [--queries 100] [--index-types IVF_FLAT,IVF_SQ]

Builds the library with synthetic data (384-d unit vectors drawn around 200 centres, texts of 60
words from a made-up Zipf-distributed vocabulary, `team`/`lang` metadata tags), times one
replace_source and one index refresh at 1k / 10k / full size, then p50/p95 of filtered vector,
hybrid and keyword queries without a vector index and with each index type. Prints a table and
appends one JSON line per figure to bench/results/search.jsonl. Takes about 5 minutes on 2 cores.
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import IvfFlat, IvfPq, IvfSq
from lancedb.query import MatchQuery

from storage.chunk_records import ChunkRow, rows_to_arrow
from storage.chunk_search import build_filter
from storage.chunks import ChunkStore

DIM = 384
PER_SOURCE = 50
LIB = "bench"
RESULTS = Path(__file__).parent / "results" / "search.jsonl"
FILTER = {"team": "t3"}  # a tenth of the chunks
SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "del", "qu", "pra", "ne", "zo", "fi", "gar", "ul", "bex"]


class Corpus:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        words = {"".join(self.rng.choice(SYLLABLES, size=self.rng.integers(2, 4))) for _ in range(4000)}
        self.words = np.array(sorted(words))
        weights = 1.0 / np.arange(1, len(self.words) + 1)
        self.p = weights / weights.sum()
        self.centres = self.rng.standard_normal((200, DIM)).astype(np.float32)

    def vectors(self, n: int) -> np.ndarray:
        v = self.centres[self.rng.integers(0, len(self.centres), n)]
        v = v + 0.8 * self.rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def text(self) -> str:
        return " ".join(self.rng.choice(self.words, size=60, p=self.p))

    def source(self, number: int) -> list[ChunkRow]:
        vectors = self.vectors(PER_SOURCE)
        metadata = {"team": f"t{number % 10}", "lang": "de" if number % 3 == 0 else "en"}
        return [
            ChunkRow(chunk_index=i, text=self.text(), vector=vectors[i], workspace_id="ws", title=f"doc {number}",
                     uri=f"https://example.org/{number}", heading_path=["Part", f"Section {i}"], page_start=i + 1,
                     page_end=i + 1, source_metadata=metadata)
            for i in range(PER_SOURCE)
        ]

    def query_text(self) -> str:
        # Mid-frequency words: rare enough to discriminate, common enough to match under the filter.
        return " ".join(self.rng.choice(self.words[50:400], size=3))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000


def timed_each(fn: Callable[[int], object], count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def record(results: Path, line: dict) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as out:
        out.write(json.dumps({"ts": datetime.now(UTC).isoformat(timespec="seconds"), **line}) + "\n")


def arrow_source(corpus: Corpus, number: int) -> pa.Table:
    return rows_to_arrow(corpus.source(number), library_id=LIB, source_id=f"s{number}", external_id=None, dim=DIM)


def bulk_load(table, corpus: Corpus, first: int, last: int) -> None:
    """Sources first..last-1 appended straight to the table: replace_source per source would take minutes."""
    for start in range(first, last, 40):
        table.add(pa.concat_tables([arrow_source(corpus, n) for n in range(start, min(start + 40, last))]))


def write_costs(store: ChunkStore, table, corpus: Corpus, rows: int, results: Path) -> None:
    """replace_source of a 50-chunk source (its index refresh policy included), and one refresh alone."""
    replace = timed(lambda: store.replace_source(LIB, "s0", corpus.source(0), dim=DIM), 10)
    table.add(arrow_source(corpus, 10**6))  # 50 rows outside the indexes
    start = time.perf_counter()
    table.optimize()
    refresh = time.perf_counter() - start
    table.delete("source_id = 's1000000'")
    p50, p95 = percentiles(replace)
    print(f"{rows:>7} rows: replace_source(50 chunks) p50 {p50:7.1f} ms, max {max(replace) * 1000:7.1f} ms; "
          f"refreshing indexes after a 50-row write {refresh * 1000:7.1f} ms")
    record(results, {"kind": "write", "rows": rows, "replace_p50_ms": round(p50, 1), "replace_p95_ms": round(p95, 1),
            "refresh_ms": round(refresh * 1000, 1)})


def query_costs(
    store: ChunkStore, table, corpus: Corpus, rows: int, vector_index: str, queries: int, results: Path
) -> None:
    vectors = corpus.vectors(queries)
    texts = [corpus.query_text() for _ in range(queries)]

    def api(mode: str, metadata: dict | None) -> Callable[[int], object]:
        return lambda i: store.search(
            LIB, query_text=texts[i], query_vector=vectors[i], mode=mode, limit=10, metadata=metadata
        )

    def direct(mode: str, metadata: dict | None) -> Callable[[int], object]:
        where = build_filter(metadata=metadata)

        def run(i: int) -> object:
            if mode == "vector":
                q = table.search(vectors[i], vector_column_name="vector").distance_type("cosine")
            elif mode == "keyword":
                q = table.search(MatchQuery(texts[i], "text"), query_type="fts")
            else:  # LanceDB's own hybrid: both legs in threads, RRFReranker
                q = table.search(query_type="hybrid").vector(vectors[i]).text(texts[i]).distance_type("cosine")
            if where:
                q = q.where(where, prefilter=True)
            return q.limit(10).select(["chunk_id", "text"]).to_arrow()

        return run

    cases = [("vector", FILTER), ("hybrid", FILTER), ("keyword", FILTER), ("vector", None), ("hybrid", None)]
    for mode, metadata in cases:
        for path, make in (("chunkstore", api), ("lancedb", direct)):
            fn = make(mode, metadata)
            fn(0)  # warm caches
            p50, p95 = percentiles(timed_each(fn, queries))
            label = "filtered" if metadata else "no filter"
            print(f"{rows:>7} rows {vector_index:>8} {mode:>7} {label:>9} via {path:<10} "
                  f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
            record(results, {"kind": "query", "rows": rows, "dim": DIM, "vector_index": vector_index, "mode": mode,
                             "path": path, "filter": metadata, "limit": 10, "queries": queries, "p50_ms": round(p50, 1),
                             "p95_ms": round(p95, 1)})


def recall(store: ChunkStore, corpus: Corpus, exact: list[set[str]], vectors: np.ndarray) -> float:
    found = [
        {h.chunk_id for h in store.search(LIB, query_text="", query_vector=v, mode="vector", limit=10)} for v in vectors
    ]
    return float(np.mean([len(a & b) / 10 for a, b in zip(found, exact, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--index-types", default="IVF_FLAT,IVF_SQ", help="comma-separated; '' to skip")
    parser.add_argument("--dir", default=None, help="LanceDB directory (default: a new temporary one)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines file to append to")
    args = parser.parse_args()
    results = args.results

    directory = args.dir or tempfile.mkdtemp(prefix="gristmill-bench-")
    store = ChunkStore(directory)
    corpus = Corpus()
    sources = args.rows // PER_SOURCE
    print(f"LanceDB at {directory}: {sources} sources x {PER_SOURCE} chunks, {DIM}-d")
    store.replace_source(LIB, "s0", corpus.source(0), dim=DIM)  # creates the table and its indexes
    table = lancedb.connect(directory).open_table(f"chunks_{LIB}")  # LanceDB alone, no consistency checks
    loaded = 1
    for checkpoint in sorted({min(1_000, args.rows), min(10_000, args.rows), args.rows}):
        start = time.perf_counter()
        bulk_load(table, corpus, loaded, checkpoint // PER_SOURCE)
        loaded = checkpoint // PER_SOURCE
        store.ensure_indexes(LIB, vector_index_min_rows=10**12)  # a vector index only when this script says so
        print(f"{checkpoint:>7} rows loaded and indexed for full text in {time.perf_counter() - start:.1f} s")
        write_costs(store, table, corpus, checkpoint, results)
    table.checkout_latest()
    rows = table.count_rows()

    recall_vectors = corpus.vectors(50)
    exact = [{h.chunk_id for h in store.search(LIB, query_text="", query_vector=v, mode="vector", limit=10)}
             for v in recall_vectors]
    query_costs(store, table, corpus, rows, "none", args.queries, results)
    configs = {"IVF_FLAT": IvfFlat, "IVF_SQ": IvfSq, "IVF_PQ": IvfPq}
    for index_type in filter(None, args.index_types.split(",")):
        start = time.perf_counter()
        config = configs[index_type](distance_type="cosine")
        table.create_index("vector", config=config, name="vector_idx", replace=True)
        build = time.perf_counter() - start
        r = recall(store, corpus, exact, recall_vectors)
        print(f"{index_type}: built in {build:.1f} s, recall@10 against exact search {r:.2f}")
        record(results, {"kind": "vector_index", "rows": rows, "vector_index": index_type, "build_s": round(build, 1),
                "recall_at_10": round(r, 3)})
        table.checkout_latest()
        query_costs(store, table, corpus, rows, index_type, args.queries, results)


if __name__ == "__main__":
    main()
