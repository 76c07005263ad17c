"""Parse-stage throughput: our parsers against the bare libraries on the same generated files.

    python bench/bench_parse.py [--runs 5] [--pdf-pages 200] [--csv-mb 4] [--html-kb 400]

Generates a multi-page PDF (fpdf2), an article-style HTML page and a CSV of a few MB in a temporary
folder; times parse_document (in-process) and parse_isolated (sandboxed child) against pypdf,
trafilatura and DuckDB called bare; prints medians and overhead ratios and appends one JSON line per
measurement to bench/results/parse.jsonl. Also measures the sandbox's fixed cost: the forkserver's
start (first call in a process) and the per-call cost on tiny inputs.
"""

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.documents import FetchedContent  # noqa: E402
from gristmill.settings import Settings  # noqa: E402
from tasks.parse import parse_document, parse_isolated  # noqa: E402
from tests.builders import HtmlPage, build_csv, build_pdf  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "parse.jsonl"
WORDS = (
    "data pipeline ingestion chunk embedding vector search library document parser table column "
    "retrieval quality latency throughput memory process sandbox limit report quarter revenue"
).split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def make_pdf(pages: int, rng: random.Random) -> bytes:
    content = [[sentence(rng, 40), sentence(rng, 25), sentence(rng, 60)] for _ in range(pages)]
    return build_pdf(content, title="Benchmark report", header="Benchmark Corp", footer="Page {page} of {pages}")


def make_html(target_bytes: int, rng: random.Random) -> bytes:
    parts = []
    size = 0
    section = 0
    while size < target_bytes:
        section += 1
        chunk = f"<h2>Section {section}</h2>" + "".join(f"<p>{sentence(rng, 50)}</p>" for _ in range(8))
        chunk += "<ul>" + "".join(f"<li>{sentence(rng, 6)}</li>" for _ in range(4)) + "</ul>"
        parts.append(chunk)
        size += len(chunk)
    return HtmlPage(title="Benchmark article", body="<h1>Benchmark article</h1>" + "".join(parts)).to_bytes()


def make_csv(target_bytes: int, rng: random.Random) -> bytes:
    rows: list[list[object]] = [["id", "name", "city", "amount", "date", "comment"]]
    size = 0
    n = 0
    while size < target_bytes:
        n += 1
        row = [n, rng.choice(WORDS).title(), rng.choice(WORDS), f"{rng.uniform(0, 1000):.2f}",
               f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", sentence(rng, 8)]  # fmt: skip
        rows.append(row)
        size += sum(len(str(v)) for v in row) + 6
    return build_csv(rows)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    return interleaved([fn], runs)[0]


def interleaved(fns: list[Callable[[], object]], runs: int) -> list[list[float]]:
    """Times of each fn over `runs` rounds, taking turns so load from other processes hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times):
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
    return times


def bare_pypdf(data: bytes) -> None:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    for page in reader.pages:
        page.extract_text()


def bare_trafilatura(data: bytes) -> None:
    import trafilatura

    trafilatura.extract(data, output_format="markdown", include_tables=True)


def bare_duckdb(path: str) -> None:
    import duckdb

    with duckdb.connect(":memory:") as con:
        con.execute("SELECT * FROM read_csv(?, auto_detect = true)", [path]).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pdf-pages", type=int, default=200)
    parser.add_argument("--html-kb", type=int, default=400)
    parser.add_argument("--csv-mb", type=float, default=4.0)
    parser.add_argument("--no-save", action="store_true", help="print only, do not append to parse.jsonl")
    args = parser.parse_args()

    settings = Settings()
    records: list[dict[str, object]] = []
    run_at = datetime.now(UTC).isoformat(timespec="seconds")

    def record(name: str, times: list[float], **extra: object) -> float:
        median = statistics.median(times)
        records.append({"bench": "parse", "name": name, "median_s": round(median, 5),
                        "runs": len(times), "min_s": round(min(times), 5), **extra})  # fmt: skip
        return median

    # The sandbox's fixed costs come first, while this process has no forkserver yet.
    tiny_json = FetchedContent(data=b'{"note": "buy milk"}', content_type="application/json", uri=None)
    started = time.perf_counter()
    parse_isolated(tiny_json, settings)
    first_call = time.perf_counter() - started
    record("sandbox_first_call", [first_call])
    tiny_in_t, tiny_iso_t = interleaved(
        [lambda: parse_document(tiny_json, settings), lambda: parse_isolated(tiny_json, settings)], args.runs * 4
    )
    tiny_in = record("tiny_json_in_process", tiny_in_t)
    tiny_iso = record("tiny_json_isolated", tiny_iso_t)
    print(f"sandbox: first call (forkserver start + preload) {first_call * 1000:.0f} ms; "
          f"per call {(tiny_iso - tiny_in) * 1000:.1f} ms "
          f"(tiny JSON: {tiny_iso * 1000:.1f} ms isolated vs {tiny_in * 1000:.2f} ms in-process)")  # fmt: skip

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="gristmill-bench-") as folder:
        pdf = make_pdf(args.pdf_pages, rng)
        html = make_html(args.html_kb * 1024, rng)
        csv = make_csv(int(args.csv_mb * 1024 * 1024), rng)
        csv_path = os.path.join(folder, "bench.csv")
        for name, data in (("bench.pdf", pdf), ("bench.html", html), ("bench.csv", csv)):
            Path(folder, name).write_bytes(data)

        cases = [
            ("pdf", pdf, "application/pdf", lambda: bare_pypdf(pdf), "pypdf"),
            ("html", html, "text/html", lambda: bare_trafilatura(html), "trafilatura"),
            ("csv", csv, "text/csv", lambda: bare_duckdb(csv_path), "duckdb"),
        ]
        for fmt, data, mime, bare, library in cases:
            source = FetchedContent(data=data, content_type=mime, uri=None, filename=f"bench.{fmt}")
            parse_document(source, settings)  # warm this process's lazy caches, as the bare call's are
            bare()
            size_mb = len(data) / (1024 * 1024)
            ours_t, isolated_t, bare_t = interleaved(
                [lambda: parse_document(source, settings), lambda: parse_isolated(source, settings), bare], args.runs
            )
            ours = record(f"{fmt}_parse_document", ours_t, bytes=len(data))
            isolated = record(f"{fmt}_parse_isolated", isolated_t, bytes=len(data))
            base = record(f"{fmt}_bare_{library}", bare_t, bytes=len(data))
            if fmt == "pdf":
                unit, rate = "pages/s", lambda s: args.pdf_pages / s
            else:
                unit, rate = "MB/s", lambda s: size_mb / s
            print(
                f"{fmt:4} {size_mb:5.2f} MB: ours {rate(ours):7.1f} {unit}, isolated {rate(isolated):7.1f}, "
                f"bare {library} {rate(base):7.1f}  | overhead ours/bare {ours / base:.2f}x, "
                f"isolated/bare {isolated / base:.2f}x"
            )
            records.append({"bench": "parse", "name": f"{fmt}_rates", "unit": unit, "ours": round(rate(ours), 2),
                            "isolated": round(rate(isolated), 2), "bare": round(rate(base), 2),
                            "overhead_ours": round(ours / base, 3),
                            "overhead_isolated": round(isolated / base, 3)})  # fmt: skip

    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_1m": os.getloadavg()[0]}
        with RESULTS.open("a") as handle:
            for item in records:
                handle.write(json.dumps({"at": run_at, **machine, **item}) + "\n")
        print(f"appended {len(records)} lines to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
