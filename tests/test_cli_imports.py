"""The CLI imports what a command needs when it runs: a search or a listing never waits for Prefect
(~2 s of CPU to import), a listing not for LanceDB either, and a client of a service for neither.
bench/bench_cli.py measures the seconds; this keeps the imports from creeping back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.settings import Settings
from gristmill.usecases.libraries import create_library
from storage import repository
from storage.db import migrate, session_scope
from tests.embedder import serve_test_embedder
from tests.http_server import LoopbackServer, Reply

HEAVY = ("prefect", "flows", "lancedb", "sqlmodel", "alembic", "torch", "sentence_transformers")

# Runs the real entry point, then says which heavy packages the command left imported.
PROBE = (
    "import json, sys\n"
    "from gristmill.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    f"print(json.dumps({{'exit': code, 'imported': [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)\n"
)


def run_cli(env: dict[str, str], *args: str) -> tuple[int, list[str], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["exit"], report["imported"], done.stdout


@pytest.fixture
def home_with_library(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    settings = Settings(home=home)
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        create_library(session, settings, repository.ensure_workspace(session).id, "notes")
    return home


def test_standalone_listing_imports_neither_prefect_nor_lancedb(home_with_library):
    code, imported, out = run_cli({"GRISTMILL_HOME": str(home_with_library)}, "libraries", "--json")
    assert code == 0
    assert [lib["name"] for lib in json.loads(out)["libraries"]] == ["notes"]
    assert imported == ["sqlmodel", "alembic"]


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_standalone_search_imports_no_prefect(home_with_library, mode):
    with serve_test_embedder() as embeddings_url:
        env = {"GRISTMILL_HOME": str(home_with_library), "GRISTMILL_EMBEDDINGS_URL": embeddings_url}
        code, imported, out = run_cli(env, "search", "anything", "--library", "notes", "--mode", mode, "--json")
    assert code == 0 and json.loads(out) == {"results": []}
    assert imported == ["lancedb", "sqlmodel", "alembic"]


def test_a_client_of_a_service_imports_none_of_them():
    libraries = {"data": [{"id": "lib_1", "name": "notes", "description": None, "source_count": 1,
                           "chunk_count": 2, "embedding_model": "all-MiniLM-L6-v2"}], "has_more": False}
    hit = {"chunk_id": "c1", "source_id": "s1", "title": "t", "uri": None, "text": "found", "score": 0.5, "metadata": {}}
    with LoopbackServer() as service:
        service.reply("/v1/libraries", Reply(200, json.dumps(libraries).encode(), content_type="application/json"))
        service.reply("/v1/libraries/by-name/notes",
                      Reply(200, json.dumps(libraries["data"][0]).encode(), content_type="application/json"))
        service.reply("/v1/libraries/lib_1/search",
                      Reply(200, json.dumps({"results": [hit]}).encode(), content_type="application/json"))
        env = {"GRISTMILL_URL": service.url("/"), "GRISTMILL_API_KEY": "gm_test"}
        listing = run_cli(env, "libraries", "--json")
        search = run_cli(env, "search", "found", "--library", "notes", "--json")
    assert listing[:2] == (0, []) and json.loads(listing[2])["libraries"][0]["chunks"] == 2
    assert search[:2] == (0, []) and json.loads(search[2])["results"][0]["text"] == "found"
