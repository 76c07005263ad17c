"""The ingest flow end to end, in this process: real Prefect server, SQLite, LanceDB, loopback HTTP."""

from dataclasses import asdict
from pathlib import Path

import pytest
from sqlmodel import select

from flows.ingest import ParsesLeft
from gristmill.cli.inputs import collect_specs
from gristmill.cli.standalone import StandaloneBackend
from gristmill.settings import get_settings
from gristmill.usecases.search import SearchFilter, search_library
from gristmill.usecases.submission import SourceSpec
from storage import repository
from storage.chunks import ChunkStore
from storage.db import session_scope
from storage.tables import IngestJob, Source
from tests import builders
from tests.embedder import HashingEncoder, serve_test_embedder
from tests.http_server import LoopbackServer

# SQLite only: on PostgreSQL the same flows run in tests/test_service.py (the whole service on both
# backends) over the repository functions tests/test_repository.py checks on both; running these
# twice as well cost the suite time it does not have (15 minutes on 2 cores).


@pytest.fixture
def home(gristmill_home: Path, prefect_server: str) -> Path:
    return gristmill_home


def ingest(specs: list[SourceSpec], library: str = "handbook") -> dict:
    return asdict(StandaloneBackend(get_settings()).ingest(library, specs, show_progress=False))


def file_spec(path: Path, **extra) -> SourceSpec:
    return SourceSpec(origin="file", uri=str(path), title=path.name, **extra)


def search(query: str, library: str = "handbook", **extra) -> list:
    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        lib = repository.find_library_by_name(session, workspace.id, library)
    return search_library(settings, ChunkStore(settings.resolved_lancedb_uri), lib, query, **extra)


def source_of(source_id: str) -> Source:
    with session_scope(get_settings().resolved_database_url) as session:
        return session.get(Source, source_id)


def test_every_format_is_ingested_and_found(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.md").write_text("# Security\n\n## API keys\n\nRotate the API keys every ninety days from the admin console.\n")
    (docs / "notes.txt").write_text("The espresso machine descales itself every Sunday night.\n")
    (docs / "page.html").write_text(
        "<html><head><title>Glaciers</title></head><body><nav>Home | About</nav><article><h1>Glaciers</h1>"
        "<p>Glaciers carve U-shaped valleys as they grind slowly downhill over centuries.</p></article></body></html>"
    )
    (docs / "planets.csv").write_text("planet,moons\nJupiter,95\nSaturn,146\n")
    (docs / "config.json").write_text('{"database": {"engine": "postgres", "pool_size": 12}}')
    (docs / "billing.py").write_text("def compute_invoice_total(lines):\n    return sum(line.amount for line in lines)\n")
    (docs / "manual.pdf").write_bytes(
        builders.build_pdf([["The turbine manual: inspect the compressor blades weekly."], ["Page two covers lubrication."]])
    )
    (docs / "policy.docx").write_bytes(
        builders.build_docx([builders.Heading("Travel policy", level=1), "Economy class is required for flights under six hours."])
    )

    summary = ingest(collect_specs([str(docs)], external_id=None, title=None, metadata={})[0])

    assert summary["status"] == "completed", summary
    assert summary["counts"] == {"completed": 8, "partial": 0, "failed": 0, "duplicate": 0}
    expectations = {
        "rotate API keys": "keys.md",
        "espresso machine descaling": "notes.txt",
        "glaciers carve valleys": "page.html",
        "Saturn moons": "planets.csv",
        "database pool size": "config.json",
        "compute invoice total": "billing.py",
        "compressor blades inspection": "manual.pdf",
        "economy class flights": "policy.docx",
    }
    for query, filename in expectations.items():
        best = search(query, mode="keyword", limit=3)[0]
        assert best.uri.endswith(filename), (query, best)
    pdf_hit = search("compressor blades", mode="keyword", limit=1)[0]
    assert pdf_hit.metadata["page_start"] == 1
    md_hit = search("rotate keys", mode="keyword", limit=1)[0]
    assert md_hit.metadata["heading_path"] == ["Security", "API keys"]


def test_unchanged_content_is_not_stored_twice(home: Path, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("# Lunch\n\nThe canteen serves soup on Mondays.\n")
    first = ingest([file_spec(note)])
    assert first["counts"]["completed"] == 1
    copy = tmp_path / "copy.md"
    copy.write_bytes(note.read_bytes())
    second = ingest([file_spec(note), file_spec(copy)])
    assert second["counts"] == {"completed": 0, "partial": 0, "failed": 0, "duplicate": 2}
    original = first["sources"][0]["source_id"]
    assert {s["duplicate_of"] for s in second["sources"]} == {original}
    settings = get_settings()
    library_id = source_of(original).library_id
    assert ChunkStore(settings.resolved_lancedb_uri).count(library_id) == 1


def test_external_id_replaces_the_old_chunks(home: Path, tmp_path: Path) -> None:
    page = tmp_path / "faq.md"
    page.write_text("# FAQ\n\nThe office opens at eight.\n\n# Parking\n\nParking is free on weekends.\n")
    first = ingest([file_spec(page, external_id="faq")])
    page.write_text("# FAQ\n\nThe office now opens at nine.\n")
    second = ingest([file_spec(page, external_id="faq")])
    assert second["status"] == "completed"
    texts = [hit.text for hit in search("office opens", mode="keyword", limit=10)]
    assert texts == ["The office now opens at nine."]
    remaining = search("parking weekends", mode="keyword", limit=10, filter=SearchFilter(external_ids=["faq"]))
    assert remaining == []  # the old "Parking" chunk went with the old version
    assert source_of(first["sources"][0]["source_id"]) is None  # the replaced source row is gone


def test_a_corrupt_pdf_fails_alone(home: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_text("Bees communicate the direction of flowers by dancing.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref")
    with LoopbackServer() as web:
        web.serve("/owls.txt", "Owls can rotate their heads about 270 degrees.", content_type="text/plain")
        summary = ingest([file_spec(good), file_spec(broken), SourceSpec(origin="url", uri=web.url("/owls.txt"))])
    assert summary["status"] == "partial"
    assert summary["counts"] == {"completed": 2, "partial": 0, "failed": 1, "duplicate": 0}
    failed = [s for s in summary["sources"] if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"].endswith("broken.pdf")
    assert "pdf" in failed[0]["error"].lower()
    assert search("owls rotate heads", mode="keyword", limit=1)[0].uri.endswith("/owls.txt")


def test_missing_file_and_missing_page_fail_with_reasons(home: Path, tmp_path: Path) -> None:
    with LoopbackServer() as web:
        web.serve("/gone", "no such page", status=404)
        summary = ingest([file_spec(tmp_path / "nope.md"), SourceSpec(origin="url", uri=web.url("/gone"))])
    assert summary["status"] == "failed"
    by_input = {s["input"]: s for s in summary["sources"]}
    assert "nope.md" in by_input[str(tmp_path / "nope.md")]["error"]
    assert "404" in by_input[web.url("/gone")]["error"]


def test_an_edit_re_embeds_only_the_changed_chunks(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sections = [
        f"# Chapter {i}\n\n"
        + "\n\n".join(
            f"Paragraph {i}.{j} explains how the harbour crane number {i * 10 + j} is inspected, "
            "oiled and certified before the winter storms arrive at the northern quay." * 2
            for j in range(8)
        )
        for i in range(12)
    ]
    manual = tmp_path / "cranes.md"
    manual.write_text("\n\n".join(sections))
    encoder = HashingEncoder()
    with serve_test_embedder(encoder=encoder) as url:
        monkeypatch.setenv("GRISTMILL_EMBEDDINGS_URL", url)
        get_settings.cache_clear()
        first = ingest([file_spec(manual, external_id="cranes")])
        first_embedded = sum(encoder.calls)
        manual.write_text("\n\n".join(sections).replace("Paragraph 5.3 explains", "Paragraph 5.3 meticulously explains"))
        encoder.calls.clear()
        second = ingest([file_spec(manual, external_id="cranes")])
    chunks = first["sources"][0]["chunks"]
    assert first["status"] == second["status"] == "completed"
    assert chunks >= 25 and first_embedded == chunks
    assert 1 <= sum(encoder.calls) <= 2  # only the chunk(s) holding the edited paragraph
    assert second["sources"][0]["chunks"] == chunks
    hits = search("meticulously", mode="keyword", limit=50)
    assert [hit.chunk_id for hit in hits if "Paragraph 5.3 meticulously explains" in hit.text] == [hits[0].chunk_id]
    hits = search("paragraph harbour crane", mode="keyword", limit=100)
    assert not any("Paragraph 5.3 explains" in hit.text for hit in hits)


def test_url_sync_replaces_changed_pages_and_forgets_unchanged_ones(home: Path) -> None:
    from flows.sync import sync_url_sources

    with LoopbackServer() as web:
        web.serve("/menu.html", "<html><body><article><h1>Menu</h1><p>Monday: lentil soup with bread.</p></article></body></html>",
                  content_type="text/html")
        first = ingest([SourceSpec(origin="url", uri=web.url("/menu.html"))])
        assert first["status"] == "completed"
        web.serve("/menu.html", "<html><body><article><h1>Menu</h1><p>Monday: pumpkin risotto.</p></article></body></html>",
                  content_type="text/html")
        changed = sync_url_sources()
        unchanged = sync_url_sources()
    assert changed == {"checked": 1, "changed": 1, "failed": 0, "removed": 0}
    assert unchanged == {"checked": 1, "changed": 0, "failed": 0, "removed": 0}
    assert [hit.text for hit in search("monday menu", mode="keyword", limit=10)] == ["Monday: pumpkin risotto."]
    with session_scope(get_settings().resolved_database_url) as session:
        sources = session.exec(select(Source)).all()
        jobs = session.exec(select(IngestJob)).all()
    assert [(s.uri, s.status.value, s.external_id) for s in sources] == [(web.url("/menu.html"), "completed", web.url("/menu.html"))]
    assert len(jobs) == 2  # the first ingest and the sync that found a change; the idle sync left none


def test_a_sync_records_failures_on_the_source_and_removes_a_page_gone_on_consecutive_syncs(home: Path) -> None:
    from flows.sync import sync_url_sources

    with LoopbackServer() as web:
        web.serve("/kept.html", "<html><body><article><p>The ferry runs every hour.</p></article></body></html>",
                  content_type="text/html")
        web.serve("/moved.html", "<html><body><article><p>The old timetable lists a night bus.</p></article></body></html>",
                  content_type="text/html")
        assert ingest([SourceSpec(origin="url", uri=web.url("/kept.html")),
                       SourceSpec(origin="url", uri=web.url("/moved.html"))])["status"] == "completed"
        web.serve("/kept.html", "sign in first", status=403)  # a failure that is not a gone page (and not retried)
        web.serve("/moved.html", "gone", status=404)
        first = sync_url_sources()
        kept, moved = _url_sources(web)
        after_first = _source_rows()
        web.serve("/kept.html", "<html><body><article><p>The ferry runs every hour.</p></article></body></html>",
                  content_type="text/html")
        second = sync_url_sources()
    assert first == {"checked": 2, "changed": 0, "failed": 2, "removed": 0}
    # A failing sync adds no row: the stored source records the error and stays searchable.
    assert after_first == 2 and (kept.status.value, moved.status.value) == ("completed", "completed")
    assert kept.error_code == "http_403" and kept.error.startswith("the last sync failed: ")
    assert (moved.error_code, moved.gone_syncs) == ("http_404", 1)
    assert second == {"checked": 2, "changed": 0, "failed": 0, "removed": 1}
    kept, moved = _url_sources(web)
    assert (kept.status.value, kept.error, kept.gone_syncs) == ("completed", None, 0)
    assert moved.status.value == "removed" and moved.error == "the page answered 404 on 2 consecutive syncs"
    assert [hit.text for hit in search("night bus timetable", mode="keyword", limit=10)] == []
    with session_scope(get_settings().resolved_database_url) as session:
        job = session.get(IngestJob, moved.job_id)
    assert (job.removed_count, job.status.value) == (1, "completed")  # the sync's job records the removal


def _url_sources(web: LoopbackServer) -> tuple[Source, Source]:
    with session_scope(get_settings().resolved_database_url) as session:
        by_uri = {s.uri: s for s in session.exec(select(Source))}
    return by_uri[web.url("/kept.html")], by_uri[web.url("/moved.html")]


def _source_rows() -> int:
    with session_scope(get_settings().resolved_database_url) as session:
        return len(session.exec(select(Source)).all())


def test_the_vector_index_is_built_by_the_job_that_crosses_the_threshold(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRISTMILL_VECTOR_INDEX_MIN_ROWS", "20")
    get_settings.cache_clear()
    small, big = tmp_path / "small.md", tmp_path / "big.md"
    small.write_text("# Ferries\n\nThe morning ferry leaves the north quay at seven.\n")
    big.write_text("\n\n".join(
        f"# Dock {i}\n\n" + " ".join(f"Crane {i}.{j} lifts containers of grain, timber and salt at dock {i}." for j in range(14))
        for i in range(30)
    ))
    assert ingest([file_spec(small)])["status"] == "completed"
    store = ChunkStore(get_settings().resolved_lancedb_uri)
    library_id = _library_id("handbook")
    assert store.needs_vector_index(library_id, 20) is False and _vector_index(library_id) is None

    summary = ingest([file_spec(big)])
    assert summary["status"] == "completed" and summary["sources"][0]["chunks"] >= 20
    assert _vector_index(library_id) == "IVF_FLAT"
    assert "north quay at seven" in search("when does the morning ferry leave", mode="vector", limit=1)[0].text


def _library_id(name: str) -> str:
    with session_scope(get_settings().resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        return repository.find_library_by_name(session, workspace.id, name).id


def _vector_index(library_id: str) -> str | None:
    import lancedb

    table = lancedb.connect(get_settings().resolved_lancedb_uri).open_table(f"chunks_{library_id}")
    stats = table.index_stats("vector_idx")
    return stats.index_type if stats else None


def test_the_parse_sandbox_is_released_once_after_the_last_source_is_past_parsing() -> None:
    released: list[str] = []
    parses = ParsesLeft(["a", "b", "c"], on_last=lambda: released.append("stopped"))
    parses.finished("a")
    parses.finished("a")  # a source counts once, however many of its paths report it
    parses.finished("not-in-the-job")
    parses.finished("b")
    assert released == []
    parses.finished("c")
    parses.finished("c")
    assert released == ["stopped"]
