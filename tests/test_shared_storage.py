"""Storage every machine reaches: blobs and LanceDB chunk tables on an S3-compatible server (moto's,
started on loopback by the tests), chosen by settings; the local folder stays the default."""

import uuid
from dataclasses import asdict
from pathlib import Path

import pytest

from gristmill.cli.standalone import StandaloneBackend
from gristmill.settings import Settings, get_settings
from gristmill.usecases.search import search_library
from gristmill.usecases.submission import SourceSpec
from storage import repository
from storage.blobs import BlobStore, FolderBlobs, S3Blobs, open_blob_store
from storage.chunks import open_chunk_store
from storage.db import session_scope
from storage.tables import Source
from tests.conftest import S3Store


@pytest.fixture(params=["folder", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return open_blob_store(Settings(home=tmp_path))
    s3: S3Store = request.getfixturevalue("s3_store")
    env = s3.settings_env(f"t-{uuid.uuid4().hex[:8]}")
    return open_blob_store(Settings(home=tmp_path, **{k.removeprefix("GRISTMILL_").lower(): v for k, v in env.items()}))


def test_the_settings_choose_the_blob_store(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(Settings(home=tmp_path)), FolderBlobs)
    assert isinstance(open_blob_store(Settings(home=tmp_path, blob_uri="s3://bucket/prefix")), S3Blobs)
    assert Settings(home=tmp_path).lancedb_storage_options == {}
    options = Settings(home=tmp_path, lancedb_uri="s3://b/l", s3_endpoint="http://s3:9000", s3_allow_http=True,
                       s3_access_key_id="k", s3_secret_access_key="s").lancedb_storage_options
    assert options == {"region": "us-east-1", "allow_http": "true", "aws_endpoint": "http://s3:9000",
                       "aws_access_key_id": "k", "aws_secret_access_key": "s"}


def test_a_blob_is_written_read_and_removed(blobs: BlobStore) -> None:
    ref = blobs.write("src-1", b"remember the milk")
    assert blobs.read(ref) == b"remember the milk"
    assert blobs.write("src-1", b"and the eggs") == ref  # a rewrite replaces, at the same reference
    assert blobs.read(ref) == b"and the eggs"
    blobs.remove(ref)
    assert blobs.read(ref) is None
    blobs.remove(ref)  # removing what is gone is no error
    assert blobs.read(None) is None


def test_an_ingest_keeps_its_bytes_and_chunks_on_s3_and_nothing_in_the_home(
    gristmill_home: Path, prefect_server: str, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = f"svc-{uuid.uuid4().hex[:8]}"
    for name, value in s3_store.settings_env(prefix).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    page = tmp_path / "turbine.md"
    page.write_text("# Turbine\n\nInspect the compressor blades every week.\n")
    specs = [
        SourceSpec(origin="inline", data=b"The espresso machine descales itself every Sunday night.", content_type="text/plain",
                   title="espresso", inline=True),
        SourceSpec(origin="file", uri=str(page), title=page.name),
    ]

    summary = asdict(StandaloneBackend(settings).ingest("handbook", specs, show_progress=False))

    assert summary["status"] == "completed", summary
    with session_scope(settings.resolved_database_url) as session:
        sources = [session.get(Source, s["source_id"]) for s in summary["sources"]]
        library = repository.find_library_by_name(session, repository.ensure_workspace(session).id, "handbook")
    assert [s.blob_path for s in sources] == [f"s3://{s3_store.bucket}/{prefix}/blobs/{s.id}" for s in sources]
    assert open_blob_store(settings).read(sources[0].blob_path) == b"The espresso machine descales itself every Sunday night."
    assert any(key.startswith(f"{prefix}/lancedb/chunks_{library.chunk_table}.lance/") for key in s3_store.keys(prefix))
    store = open_chunk_store(settings)
    assert store.count(library.chunk_table) == 2
    best = search_library(settings, store, library, "compressor blades", mode="keyword", limit=1)[0]
    assert best.uri.endswith("turbine.md")
    assert not (gristmill_home / "lancedb").exists() and not (gristmill_home / "blobs").exists()
