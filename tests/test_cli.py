"""The `gristmill` command as a user runs it, standalone, with the real embedding model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import builders
from tests.http_server import LoopbackServer

pytestmark = pytest.mark.slow


def gristmill(home: Path, embeddings_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRISTMILL_HOME": str(home), "GRISTMILL_EMBEDDINGS_URL": embeddings_url}
    env.pop("GRISTMILL_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "gristmill.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_ingest_search_and_libraries(tmp_path: Path, prefect_server: str, model_embeddings_url: str) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    (docs / "ops").mkdir(parents=True)
    (docs / "ops" / "keys.md").write_text(
        "# Operations\n\n## Rotating API keys\n\nTo rotate the API keys, open Settings, choose API and press Regenerate. "
        "Old keys stop working after 24 hours.\n"
    )
    (docs / "ops" / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    filler = "This paragraph describes the warranty terms, the serial number label and the safety notices in detail. "
    (docs / "manual.pdf").write_bytes(
        builders.build_pdf([
            ["Welcome to the espresso machine manual."] + [filler * 3] * 4,
            ["Descale the boiler every month with citric acid."] + [filler * 3] * 4,
        ])
    )
    notes = tmp_path / "notes.md"
    notes.write_text("# Team notes\n\nThe quarterly offsite is in Lisbon this year.\n")
    with LoopbackServer() as web:
        web.serve("/page.html", "<html><head><title>Cycling</title></head><body><article><h1>Bike commuting</h1>"
                  "<p>Cyclists commuting to the office can use the secure bike shed behind building B.</p>"
                  "</article></body></html>", content_type="text/html")
        ingest = gristmill(home, model_embeddings_url, "ingest", str(docs), web.url("/page.html"), str(notes),
                           "--library", "handbook", "--json")
    assert ingest.returncode == 0, ingest.stderr
    summary = json.loads(ingest.stdout)
    assert summary["status"] == "completed"
    assert summary["counts"] == {"completed": 4, "partial": 0, "failed": 0, "duplicate": 0}
    assert summary["skipped"] == [str(docs / "ops" / "picture.png")]

    search = gristmill(home, model_embeddings_url, "search", "how do I rotate the API keys?",
                       "--library", "handbook", "--limit", "3", "--json")
    assert search.returncode == 0, search.stderr
    results = json.loads(search.stdout)["results"]
    assert set(results[0]) == {"chunk_id", "source_id", "title", "uri", "text", "score", "metadata"}
    assert results[0]["uri"].endswith("keys.md")
    assert results[0]["metadata"]["heading_path"] == ["Operations", "Rotating API keys"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)

    descale = json.loads(gristmill(home, model_embeddings_url, "search", "how often should I descale the boiler",
                                   "--library", "handbook", "--limit", "1", "--json").stdout)["results"][0]
    assert descale["uri"].endswith("manual.pdf") and "Descale the boiler" in descale["text"]
    assert descale["metadata"]["page_start"] <= 2 == descale["metadata"]["page_end"]

    again = gristmill(home, model_embeddings_url, "ingest", str(notes), "--library", "handbook", "--json")
    assert json.loads(again.stdout)["counts"]["duplicate"] == 1

    libraries = gristmill(home, model_embeddings_url, "libraries", "--json")
    [handbook] = json.loads(libraries.stdout)["libraries"]
    assert handbook["name"] == "handbook" and handbook["sources"] == 4 and handbook["chunks"] >= 4

    table = gristmill(home, model_embeddings_url, "search", "bike shed", "--library", "handbook")
    assert table.returncode == 0 and "Bike" in table.stdout


def test_ingest_reports_failures_and_exit_code(tmp_path: Path, prefect_server: str, model_embeddings_url: str) -> None:
    home = tmp_path / "home"
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnot really a pdf")
    good = tmp_path / "good.txt"
    good.write_text("Penguins huddle together to keep warm.\n")
    result = gristmill(home, model_embeddings_url, "ingest", str(broken), str(good), "--library", "zoo")
    assert result.returncode == 1
    assert "broken.pdf" in result.stdout and "failed" in result.stdout
    assert "1 completed" in result.stdout and "1 failed" in result.stdout
