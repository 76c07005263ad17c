"""Peak memory of every process of the running service while it ingests a big PDF and a big CSV.

    .venv/bin/python -m bench.bench_memory                          # 5 MB PDF, 0.5 MB CSV, ~4 min
    .venv/bin/python -m bench.bench_memory --pdf-mb 20 --csv-mb 10  # the issue's sizes, ~20 min (22,488 CSV chunks to embed)

Writes a seeded PDF (`--pdf-text-pages` pages of prose from bench/corpus.py, each with a noise
photo, padded with photos to `--pdf-mb`: a large report is large for its pictures) and a seeded CSV
of order rows (`--csv-mb`), starts `gristmill serve` (bench/service.py), and uploads each file
through the API, one after the other, sampling the whole process tree every 0.1 s (/proc: each
process's VmHWM, the tree's summed RSS and summed PSS). Prints each process's peak resident memory
by role (supervisor, Prefect server, embeddings server, runner, REST API, flow-run processes, the
parsing sandbox) and the whole service's peak; the target is under 2 GB. Appends JSON lines to
bench/results/memory.jsonl.
"""

import argparse
import csv
import io
import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from bench.corpus import _FIXED_TIME, _TOPICS, _Writer
from bench.service import (
    MemorySampler,
    create_library,
    current_rss_mb,
    record,
    running_service,
    wait_for_jobs,
)

MB = 1_000_000  # sizes in decimal MB keep the files under the service's 20 MiB / 10 MiB limits


def write_pdf(path: Path, *, size_mb: float, text_pages: int, seed: int = 5) -> int:
    """A PDF of `text_pages` pages of prose, each with a photo-like noise JPEG, padded with photos to `size_mb`."""
    from fpdf import FPDF
    from PIL import Image

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    writer = _Writer(random.Random(rng.getrandbits(64)), rng.choice(_TOPICS))

    def photo(width: int, height: int) -> io.BytesIO:
        pixels = noise.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=85)
        out.seek(0)
        return out

    sections = writer.sections(text_pages * 420)  # ~420 words fill an A4 page with a photo
    per_page = max(1, len(sections) // text_pages)
    small = photo(320, 200)

    def build(photos: int) -> bytes:
        pdf = FPDF(format="A4")
        pdf.set_creation_date(_FIXED_TIME)
        pdf.set_title("Annual site report")
        pdf.set_auto_page_break(auto=True, margin=18)
        for page in range(text_pages):
            pdf.add_page()
            small.seek(0)
            pdf.image(small, w=60)  # one picture object, embedded once however often shown
            for section in sections[page * per_page : (page + 1) * per_page]:
                pdf.set_font("Helvetica", "B", 13)
                pdf.multi_cell(0, 7, section.heading, new_x="LMARGIN", new_y="NEXT")
                pdf.set_font("Helvetica", "", 10)
                for paragraph in section.paragraphs:
                    pdf.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
                    pdf.ln(1)
        for picture in pictures[:photos]:
            pdf.add_page()
            picture.seek(0)
            pdf.image(picture, w=180)
        return bytes(pdf.output())

    pictures: list[io.BytesIO] = []
    text_only = len(build(0))
    # Full-page photos (~0.6 MB each, incompressible) until the file reaches the size asked for.
    while text_only + 620_000 * (len(pictures) + 1) <= size_mb * MB:
        pictures.append(photo(1000, 800))
    data = build(len(pictures))
    path.write_bytes(data)
    return len(data)


def write_csv(path: Path, *, size_mb: float, seed: int = 6) -> int:
    """Order rows (id, date, region, product, quantity, unit price, status, note) up to `size_mb`."""
    rng = random.Random(seed)
    writer_text = _Writer(random.Random(seed), _TOPICS[0])
    notes = [writer_text.sentence() for _ in range(500)]
    regions = ["north", "south", "east", "west", "central"]
    products = [f"SKU-{n:05d}" for n in range(400)]
    statuses = ["shipped", "pending", "returned", "cancelled", "delivered"]
    out = io.StringIO()
    rows = csv.writer(out)
    rows.writerow(["order_id", "order_date", "region", "product", "quantity", "unit_price", "status", "note"])
    start = date(2023, 1, 1)
    number = 0
    while out.tell() < size_mb * MB:
        number += 1
        note = rng.choice(notes)
        rows.writerow([number, (start + timedelta(days=rng.randrange(700))).isoformat(), rng.choice(regions),
                       rng.choice(products), rng.randint(1, 40), f"{rng.uniform(1, 500):.2f}", rng.choice(statuses),
                       note])
    path.write_text(out.getvalue())
    return path.stat().st_size


def ingest_sampled(service, client, library_id: str, path: Path, content_type: str) -> dict:
    with MemorySampler(service.pid, interval=0.1) as sampler:
        started = time.perf_counter()
        answer = client.post(f"/v1/libraries/{library_id}/files",
                             files=[("file", (path.name, path.read_bytes(), content_type))])
        answer.raise_for_status()
        job_id = answer.json()["job_id"]
        job = wait_for_jobs(client, [job_id], timeout=7200, poll=1.0)[job_id]
        wall = time.perf_counter() - started
    return {"file": path.name, "bytes": path.stat().st_size, "status": job["status"], "chunks": job["chunk_count"],
            "wall_s": round(wall, 1), "peak_rss_mb_by_role": sampler.by_role(),
            "peak_total_rss_mb": sampler.peak_total_rss_mb, "peak_total_pss_mb": sampler.peak_total_pss_mb,
            "pss_at_peak_mb_by_role": sampler.pss_at_peak_by_role, "samples": sampler.samples, "error": job.get("error")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf-mb", type=float, default=5)
    parser.add_argument("--pdf-text-pages", type=int, default=None, help="default: 15 per MB")
    parser.add_argument("--csv-mb", type=float, default=0.5)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    folder = Path(tempfile.mkdtemp(prefix="gristmill-bench-memory-"))
    pdf_path, csv_path = folder / "site-report.pdf", folder / "orders.csv"
    text_pages = args.pdf_text_pages or max(1, round(15 * args.pdf_mb))
    pdf_bytes = write_pdf(pdf_path, size_mb=args.pdf_mb, text_pages=text_pages)
    csv_bytes = write_csv(csv_path, size_mb=args.csv_mb)
    print(f"PDF {pdf_bytes / MB:.1f} MB ({text_pages} pages of text), CSV {csv_bytes / MB:.1f} MB, in {folder}")

    phases = []
    with running_service(env=env) as service, service.client(timeout=600) as client:
        library_id = create_library(client, "memory")
        idle = current_rss_mb(service.pid)
        print(f"idle: {sum(idle.values()):.0f} MB summed RSS: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items()))
        for path, content_type in ((pdf_path, "application/pdf"), (csv_path, "text/csv")):
            phase = ingest_sampled(service, client, library_id, path, content_type)
            phases.append(phase)
            print(f"{phase['file']}: {phase['status']}, {phase['chunks']} chunks in {phase['wall_s']} s; "
                  f"whole service peak {phase['peak_total_pss_mb']:.0f} MB PSS ({phase['peak_total_rss_mb']:.0f} MB summed RSS)")
            print("   peak RSS by process: " + ", ".join(f"{k} {v:.0f}" for k, v in phase["peak_rss_mb_by_role"].items()))
            print("   PSS at the whole-service peak: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in phase["pss_at_peak_mb_by_role"].items()))

    peak_pss = max(p["peak_total_pss_mb"] for p in phases)
    peak_rss = max(p["peak_total_rss_mb"] for p in phases)
    print(f"whole service peak: {peak_pss:.0f} MB PSS, {peak_rss:.0f} MB summed RSS (target < 2048 MB)")
    path = record("memory", {"label": args.label, "env": env, "pdf_bytes": pdf_bytes, "pdf_text_pages": text_pages,
                             "csv_bytes": csv_bytes, "idle_rss_mb_by_role": idle, "phases": phases,
                             "peak_total_pss_mb": peak_pss, "peak_total_rss_mb": peak_rss, "target_mb": 2048})
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
