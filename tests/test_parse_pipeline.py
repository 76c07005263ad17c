"""Parse bounds and recorded facts end to end: real files through the CLI's standalone backend with a
real Prefect server, SQLite and LanceDB. One bad source fails alone."""

from pathlib import Path

import pytest

from gristmill.cli.standalone import StandaloneBackend
from gristmill.settings import MB, get_settings
from gristmill.usecases.submission import SourceSpec
from storage.db import session_scope
from storage.tables import Source
from tests import builders

pytestmark = pytest.mark.slow  # a Prefect server per session, a flow run per test


@pytest.fixture
def home(gristmill_home: Path, prefect_server: str) -> Path:
    return gristmill_home


def file_spec(path: Path) -> SourceSpec:
    return SourceSpec(origin="file", uri=str(path))  # no title given: the parser's title is kept


def ingest(*paths: Path) -> dict[str, Source]:
    """Ingest the files as one job; their Source rows by file name."""
    summary = StandaloneBackend(get_settings()).ingest("bounds", [file_spec(path) for path in paths], show_progress=False)
    with session_scope(get_settings().resolved_database_url) as session:
        rows = [session.get(Source, line.source_id) for line in summary.sources]
    return {Path(row.uri).name: row for row in rows}


def note(tmp_path: Path) -> Path:
    path = tmp_path / "note.md"
    path.write_text("# Canteen\n\nThe canteen serves lentil soup every Tuesday.\n")
    return path


def test_files_over_their_size_limit_fail_alone(home: Path, tmp_path: Path) -> None:
    scan = tmp_path / "scan.pdf"
    with scan.open("wb") as handle:  # 50 MB, sparse: the connector refuses it from its size alone
        handle.write(b"%PDF-1.7\n")
        handle.truncate(50 * MB)
    log = tmp_path / "build-log.md"  # under the 20 MB fetch cap, over the 5 MB Markdown limit
    log.write_bytes(b"# Build log\n\n" + b"Step passed without warnings.\n" * (6 * MB // 30))

    sources = ingest(scan, log, note(tmp_path))

    assert {name: (s.status.value, s.error_code) for name, s in sources.items()} == {
        "scan.pdf": ("failed", "file_too_large"),
        "build-log.md": ("failed", "file_too_large"),
        "note.md": ("completed", None),
    }
    assert sources["scan.pdf"].error == (
        "scan.pdf is too large: the limit is 20,971,520 bytes and it is 52,428,800 bytes."
    )
    assert sources["build-log.md"].error == "file of 6.0 MB is over the 5 MB limit for Markdown files"
    assert sources["note.md"].chunk_count == 1


def test_a_parse_over_the_time_limit_fails_alone(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 400 pages take pypdf seconds; the limit is half of one. The note parses in-process, unlimited.
    monkeypatch.setenv("GRISTMILL_PARSE_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    paragraph = "The inspection log records the pressure, temperature and state of every valve. " * 6
    manual = tmp_path / "valves.pdf"
    manual.write_bytes(builders.repeat_pages(builders.build_pdf([[paragraph] * 4]), copies=400))

    sources = ingest(manual, note(tmp_path))

    assert sources["valves.pdf"].status.value == "failed"
    assert sources["valves.pdf"].error_code == "parse_timeout"
    assert sources["valves.pdf"].error == "parsing took longer than the 0.5 s limit and was stopped"
    assert sources["note.md"].status.value == "completed"


def test_each_source_records_format_title_counts_and_warnings(home: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(
        builders.merge_pdfs(
            builders.build_pdf([["Revenue rose in spring."]], title="Annual report"),
            builders.build_image_only_pdf(page_count=1),
            builders.build_pdf([["Costs fell in autumn."]]),
        )
    )
    sales = tmp_path / "sales.csv"
    sales.write_bytes(builders.build_csv([["region", "total"], ["north", "12"], ["south", "7"], ["east", "3"]]))
    policy = tmp_path / "policy.docx"
    policy.write_bytes(
        builders.build_docx([builders.Heading("Travel"), "Book trains for trips under four hours."], core_title="Travel policy")
    )
    menu = tmp_path / "menu.txt"
    menu.write_bytes("Le café est très bon.\n".encode("latin-1"))

    sources = ingest(report, sales, policy, menu)

    facts = {
        name: (s.status.value, s.content_format, s.title, s.page_count, s.metadata_.get("row_count"), s.warnings)
        for name, s in sources.items()
    }
    assert facts == {
        "report.pdf": ("partial", "pdf", "Annual report", 3, None, ["images but no text on pages 2 (scanned? they need OCR)"]),
        "sales.csv": ("completed", "csv", "sales", None, 3, []),
        "policy.docx": ("completed", "docx", "Travel policy", None, None, []),
        "menu.txt": ("completed", "text", "menu", None, None, []),
    }
    assert sources["report.pdf"].extracted_text == "Revenue rose in spring.\n\nCosts fell in autumn."
    assert sources["menu.txt"].extracted_text == "Le café est très bon."
    assert sources["menu.txt"].metadata_["encoding"] == "cp1252"
    assert all(s.token_count and s.token_count > 0 for s in sources.values())
