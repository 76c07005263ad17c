"""Which retrieval choices to make: fusion, the context header, what a hit is returned with.

    .venv/bin/python -m bench.bench_retrieval --limit-pages 80     # ~10 min on 2 cores

bench_quality measures the service end to end against baselines; this one holds the pipeline still
and varies one choice at a time on the same corpus and questions (bench/quality, git-doc), in process:
Gristmill's own parse and chunk stages, the model the embeddings server serves (loaded here through
sentence-transformers, as bench_quality's baselines load it), and a real ChunkStore in a temporary
directory. Per variant and mode it prints hits@3, page recall@5, MRR@10 and fair@500w (see
bench_quality), and appends a JSON line to bench/results/retrieval.jsonl.

Variants: the context header in the embedded and keyword-indexed text or not; hybrid fusion by a
weighted sum of cosine and relative BM25 (weights 0.3-0.7) or by reciprocal rank (k=60); a hit
returned alone or with the chunks around it (before, after).
"""

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace

from bench.bench_quality import (
    CORPUS_ROOT,
    KINDS,
    LIMIT,
    METRICS,
    PACKAGE,
    QUESTIONS,
    Hit,
    Page,
    Question,
    check_questions,
    embed_locally,
    ensure_package,
    forbid_network,
    load_pages,
    load_questions,
    metrics,
    quiet_model_loading,
    score,
    smoke_subset,
)
from bench.service import record
from storage import chunk_search
from storage.chunks import ChunkRow, ChunkStore
from tasks.chunk import chunk_with_default_tokenizer
from tasks.parse.html import parse_html

LIBRARY = "bench"
NEIGHBOURS = ((0, 0), (0, 1), (1, 1), (0, 2))
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)


def build_store(pages: Sequence[Page], *, header: bool, directory: str) -> tuple[ChunkStore, dict[str, str], int]:
    """Pages parsed, chunked and embedded as the ingest flow does, with or without the context header."""
    store = ChunkStore(directory)
    page_of_source: dict[str, str] = {}
    chunk_count = 0
    for number, page in enumerate(pages):
        document = parse_html(page.data, filename=page.rel)
        chunks = chunk_with_default_tokenizer(document, 256, 32)
        if not header:
            chunks = [replace(c, context="") for c in chunks]
        vectors = embed_locally([c.indexed_text for c in chunks])
        source_id = f"s{number}"
        page_of_source[source_id] = page.rel
        rows = [
            ChunkRow(
                chunk_index=c.index, text=c.text, vector=v, workspace_id="w", title=document.title,
                heading_path=c.heading_path, char_start=c.char_start, char_end=c.char_end, context=c.context,
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        store.replace_source(LIBRARY, source_id, rows, dim=vectors.shape[1])
        chunk_count += len(rows)
        if number % 10 == 9:
            print(f"   {number + 1} pages, {chunk_count} chunks", flush=True)
    store.ensure_indexes(LIBRARY, vector_index_min_rows=10**9)
    return store, page_of_source, chunk_count


def evaluate(
    store: ChunkStore, page_of_source: dict[str, str], questions: Sequence[Question], vectors: dict[str, object],
    *, mode: str, fusion: str, neighbours: tuple[int, int],
) -> dict[str, dict[str, float]]:
    outcomes = {}
    for q in questions:
        hits = store.search(
            LIBRARY, query_text=q.question, query_vector=None if mode == "keyword" else vectors[q.id],
            mode=mode, limit=LIMIT, fusion=fusion, neighbours=neighbours,
        )
        outcomes[q.id] = score(q, [Hit(page_of_source[h.source_id], h.text) for h in hits])
    figures = {"all": metrics(list(outcomes.values()))}
    for kind in KINDS:
        figures[kind] = metrics([outcomes[q.id] for q in questions if q.kind == kind])
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-pages", type=int, default=80)
    parser.add_argument("--no-header-run", action="store_true", help="skip the variant without the context header")
    args = parser.parse_args(argv)
    forbid_network()
    quiet_model_loading()
    started = time.perf_counter()
    version = ensure_package(PACKAGE)
    _, questions = load_questions(QUESTIONS)
    pages = load_pages(CORPUS_ROOT)
    if problems := check_questions(questions, pages):
        raise SystemExit("the questions do not fit the pages:\n  " + "\n  ".join(problems))
    pages, questions = smoke_subset(pages, questions, args.limit_pages)
    print(f"{PACKAGE} {version}: {len(pages)} pages, {len(questions)} questions", flush=True)
    vectors = dict(zip([q.id for q in questions], embed_locally([q.question for q in questions]), strict=True))

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as with_dir, tempfile.TemporaryDirectory() as without_dir:
        runs = ((True, with_dir),) if args.no_header_run else ((True, with_dir), (False, without_dir))
        for header, directory in runs:
            store, page_of_source, count = build_store(pages, header=header, directory=directory)
            print(f"header {header}: {count} chunks after {time.perf_counter() - started:.0f} s", flush=True)
            variants = [(m, "linear", 0.5, (0, 0)) for m in ("vector", "keyword")]
            variants += [("hybrid", "rrf", 0.5, (0, 0))] + [("hybrid", "linear", w, (0, 0)) for w in WEIGHTS]
            if header:
                variants += [("hybrid", "linear", 0.5, n) for n in NEIGHBOURS[1:]]
                variants += [("hybrid", "rrf", 0.5, n) for n in NEIGHBOURS[1:2]]
            for mode, fusion, weight, neighbours in variants:
                chunk_search.HYBRID_VECTOR_WEIGHT = weight  # read by the store at each hybrid query
                name = f"header={'on' if header else 'off'} {mode}"
                if mode == "hybrid":
                    name += f" {fusion}" + (f" w={weight}" if fusion == "linear" else "")
                name += f" neighbours={neighbours}"
                results[name] = evaluate(
                    store, page_of_source, questions, vectors, mode=mode, fusion=fusion, neighbours=neighbours
                )
                cells = " ".join(f"{metric} {results[name]['all'][metric]:.3f}" for metric in METRICS)
                print(f"{name:<58} {cells}", flush=True)
    chunk_search.HYBRID_VECTOR_WEIGHT = 0.5
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min")
    record("retrieval", {"package": PACKAGE, "version": version, "pages": len(pages), "questions": len(questions),
                         "results": results})


if __name__ == "__main__":
    main()
