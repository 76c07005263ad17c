"""Search latency through the running service's API on one big library, beside LanceDB called directly.

    .venv/bin/python -m bench.bench_search_api [--rows 100000] [--queries 100]

Starts `gristmill serve` (bench/service.py), creates a library through the API, then fills its
LanceDB table (under the service's GRISTMILL_HOME) with `--rows` synthetic chunks straight from
this process (bench/bench_search.py's seeded corpus: 384-d unit vectors around 200 centres, 60-word
texts, `team`/`lang` metadata tags), and lets ChunkStore.ensure_indexes build what the service
would (full text, scalar, and the IVF_FLAT vector index from 100,000 rows). Then, per mode (vector
and hybrid, with the metadata filter team=t3, a tenth of the chunks), `--queries` queries:
- through the API: POST /v1/libraries/{id}/search over one keep-alive connection (embedding the
  query text on the embeddings server, then the store's search, then JSON);
- the embeddings call alone (the part of the API's work that is not the store's), over one kept
  connection and, as the API makes it today, through a new client per query;
- ChunkStore.search in this process, with the vector the API would compute;
- LanceDB directly on the same table (its own hybrid query for hybrid), with the same vector.
Prints p50/p95 and the API / LanceDB ratio; appends JSON lines to bench/results/search_api.jsonl.
About 3 minutes at 100,000 rows.
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import lancedb
import pyarrow as pa
from lancedb.query import MatchQuery

from bench.bench_search import FILTER, PER_SOURCE, Corpus
from bench.service import create_library, p50_p95, record, running_service
from gristmill.settings import Settings
from storage.chunk_records import ROW_COLUMNS, rows_to_arrow
from storage.chunk_search import build_filter
from storage.chunks import ChunkStore
from tasks.embed import EmbeddingsClient, embed_texts

DIM = 384


def timed(fn: Callable[[int], object], count: int) -> list[float]:
    fn(0)  # warm caches and connections
    times = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return times


def load_library(uri: str, library_id: str, rows: int, workspace_id: str) -> tuple[ChunkStore, float]:
    """`rows` synthetic chunks in the library's table, indexed as the service indexes them."""
    corpus = Corpus(seed=0)
    store = ChunkStore(uri)
    started = time.perf_counter()

    def chunks(number: int) -> list:
        return [replace(row, workspace_id=workspace_id) for row in corpus.source(number)]

    def source(number: int) -> pa.Table:
        return rows_to_arrow(chunks(number), library_id=library_id, source_id=f"s{number}", external_id=None, dim=DIM)

    store.replace_source(library_id, "s0", chunks(0), dim=DIM)  # creates the table and its indexes
    table = lancedb.connect(uri).open_table(f"chunks_{library_id}")
    sources = rows // PER_SOURCE
    for start in range(1, sources, 40):  # replace_source per source would take many minutes
        table.add(pa.concat_tables([source(n) for n in range(start, min(start + 40, sources))]))
    state = store.ensure_indexes(library_id, vector_index_min_rows=Settings().vector_index_min_rows)
    elapsed = time.perf_counter() - started
    print(f"loaded {state.rows:,} chunks in {elapsed:.1f} s; vector index {state.vector_index}, "
          f"{state.unindexed_rows} rows outside the full-text index")
    return store, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)

    with running_service() as service, service.client() as client:
        library_id = create_library(client, "search-bench")
        uri = str((service.home / "lancedb").resolve())
        store, load_s = load_library(uri, library_id, args.rows, workspace_id="bench")
        table = lancedb.connect(uri).open_table(f"chunks_{library_id}")
        rows = table.count_rows()

        corpus = Corpus(seed=1)
        texts = [corpus.query_text() for _ in range(args.queries + 1)]
        with EmbeddingsClient(service.embeddings_url, "all-MiniLM-L6-v2") as embedder:
            vectors = [embedder.embed([t])[0] for t in texts]  # what the API computes for each query
            embed_times = timed(lambda i: embedder.embed([texts[i]]), args.queries)
        # As the API embeds a query today: embed_texts opens a new client (TLS context, connection) per call.
        settings = Settings(embeddings_url=service.embeddings_url)
        embed_new_client_times = timed(lambda i: embed_texts([texts[i]], settings), args.queries)
        where = build_filter(metadata=FILTER)

        def api(mode: str) -> Callable[[int], object]:
            def run(i: int) -> object:
                answer = client.post(f"/v1/libraries/{library_id}/search", json={
                    "query": texts[i], "mode": mode, "limit": 10, "filter": {"metadata": FILTER}})
                answer.raise_for_status()
                if not answer.json()["results"]:
                    raise RuntimeError(f"no results for {texts[i]!r} ({mode})")
                return answer
            return run

        def chunkstore(mode: str) -> Callable[[int], object]:
            return lambda i: store.search(library_id, query_text=texts[i], query_vector=vectors[i], mode=mode,
                                          limit=10, metadata=FILTER)

        def direct(mode: str) -> Callable[[int], object]:
            def run(i: int) -> object:
                if mode == "vector":
                    q = table.search(vectors[i], vector_column_name="vector").distance_type("cosine")
                else:  # LanceDB's own hybrid: both legs, RRFReranker
                    q = table.search(query_type="hybrid").vector(vectors[i]).text(texts[i]).distance_type("cosine")
                return q.where(where, prefilter=True).limit(10).select(ROW_COLUMNS).to_arrow()
            return run

        # The keyword leg alone, as LanceDB runs it, for reading the hybrid figures.
        def keyword(i: int) -> object:
            return (table.search(MatchQuery(texts[i], "text"), query_type="fts").where(where, prefilter=True)
                    .limit(10).select(ROW_COLUMNS).to_arrow())

        figures: dict[str, dict[str, float]] = {}
        e50, e95 = p50_p95(embed_times)
        figures["embed_query"] = {"p50_ms": e50 * 1000, "p95_ms": e95 * 1000}
        n50, n95 = p50_p95(embed_new_client_times)
        figures["embed_query_new_client"] = {"p50_ms": n50 * 1000, "p95_ms": n95 * 1000}
        k50, k95 = p50_p95(timed(keyword, args.queries))
        figures["lancedb_keyword"] = {"p50_ms": k50 * 1000, "p95_ms": k95 * 1000}
        for mode in ("vector", "hybrid"):
            # Interleaved in rounds, so load from elsewhere on the machine falls on all three alike.
            samples: dict[str, list[float]] = {"api": [], "chunkstore": [], "lancedb": []}
            fns = {"api": api(mode), "chunkstore": chunkstore(mode), "lancedb": direct(mode)}
            for fn in fns.values():
                fn(0)
            for i in range(args.queries):
                for path, fn in fns.items():
                    started = time.perf_counter()
                    fn(i)
                    samples[path].append(time.perf_counter() - started)
            for path, times in samples.items():
                p50, p95 = p50_p95(times)
                figures[f"{path}_{mode}"] = {"p50_ms": p50 * 1000, "p95_ms": p95 * 1000}

    print(f"{rows:,} chunks, filter {FILTER}, {args.queries} queries each, limit 10")
    print(f"  {'':<22}{'p50 ms':>9}{'p95 ms':>9}")
    for name, f in figures.items():
        print(f"  {name:<22}{f['p50_ms']:>9.1f}{f['p95_ms']:>9.1f}")
    ratios = {mode: figures[f"api_{mode}"]["p50_ms"] / figures[f"lancedb_{mode}"]["p50_ms"] for mode in ("vector", "hybrid")}
    for mode in ("vector", "hybrid"):
        api_f = figures[f"api_{mode}"]
        ok = api_f["p50_ms"] <= 50 and api_f["p95_ms"] <= 100
        print(f"{mode}: API p50 {api_f['p50_ms']:.1f} ms, p95 {api_f['p95_ms']:.1f} ms "
              f"({'meets' if ok else 'misses'} 50/100 ms); API / LanceDB at p50 {ratios[mode]:.2f} (target <= 1.3); "
              f"API / (embed + LanceDB) {api_f['p50_ms'] / (figures['embed_query']['p50_ms'] + figures[f'lancedb_{mode}']['p50_ms']):.2f}")
    path = record("search_api", {
        "label": args.label, "rows": rows, "queries": args.queries, "filter": FILTER, "load_s": round(load_s, 1),
        "figures": {k: {m: round(v, 2) for m, v in f.items()} for k, f in figures.items()},
        "api_over_lancedb_p50": {k: round(v, 3) for k, v in ratios.items()},
        "targets": {"p50_ms": 50, "p95_ms": 100, "api_over_lancedb": 1.3},
    })
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
