"""Connectors against real files and a real loopback HTTP server."""

import gzip
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from connectors.file import guess_content_type, read_file
from connectors.inline import read_blob, read_inline
from connectors.url import fetch_url
from gristmill.errors import FetchError, InvalidRequest, PayloadTooLarge, TransientFetchError
from gristmill.settings import Settings
from tests.conftest import LOOPBACK
from tests.http_server import LoopbackServer, Reply


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        fetch_allowed_networks=LOOPBACK,  # the test server listens there
        home=tmp_path,
        fetch_connect_timeout_seconds=2.0,
        fetch_read_timeout_seconds=0.3,
        fetch_max_redirects=3,
        fetch_user_agent="GristmillTest/1.0",
    )


# --- file --------------------------------------------------------------------------------------


def test_read_file_returns_bytes_type_name_and_absolute_path(tmp_path: Path, monkeypatch):
    (tmp_path / "notes.md").write_bytes(b"# Title\n\nBody text.\n")
    monkeypatch.chdir(tmp_path)

    fetched = read_file(Path("notes.md"), max_bytes=1000)

    assert fetched.data == b"# Title\n\nBody text.\n"
    assert fetched.content_type == "text/markdown"
    assert fetched.filename == "notes.md"
    assert fetched.uri == str(tmp_path / "notes.md")
    assert fetched.metadata["size_bytes"] == 20


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.md", "text/markdown"),
        ("A.MARKDOWN", "text/markdown"),
        ("rows.jsonl", "application/x-ndjson"),
        ("table.csv", "text/csv"),
        ("page.htm", "text/html"),
        ("data.json", "application/json"),
        ("paper.pdf", "application/pdf"),
        ("memo.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("main.py", "text/x-python"),
        ("app.ts", "text/x-typescript"),
        ("lib.rs", "text/x-rust"),
        ("server.go", "text/x-go"),
        ("README", None),
        ("archive.unknownext", None),
    ],
)
def test_guess_content_type_from_extension(name: str, content_type: str | None):
    assert guess_content_type(name) == content_type


def test_read_file_missing(tmp_path: Path):
    with pytest.raises(FetchError) as caught:
        read_file(tmp_path / "absent.txt", max_bytes=1000)
    assert caught.value.code == "file_not_found"
    assert caught.value.retryable is False
    assert str(tmp_path / "absent.txt") in caught.value.message


def test_read_file_directory_is_unreadable(tmp_path: Path):
    with pytest.raises(FetchError) as caught:
        read_file(tmp_path, max_bytes=1000)
    assert caught.value.code == "file_unreadable"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_read_file_without_permission_is_unreadable(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    secret.chmod(0)
    with pytest.raises(FetchError) as caught:
        read_file(secret, max_bytes=1000)
    assert caught.value.code == "file_unreadable"


def test_read_file_size_limit_is_checked_before_reading(tmp_path: Path):
    (tmp_path / "exact.txt").write_bytes(b"x" * 100)
    (tmp_path / "over.txt").write_bytes(b"x" * 101)

    assert len(read_file(tmp_path / "exact.txt", max_bytes=100).data) == 100
    with pytest.raises(PayloadTooLarge) as caught:
        read_file(tmp_path / "over.txt", max_bytes=100)
    assert caught.value.code == "file_too_large"
    assert caught.value.details["size_bytes"] == 101
    assert caught.value.details["max_bytes"] == 100


# --- inline ------------------------------------------------------------------------------------


def test_read_inline_encodes_text_as_utf8():
    fetched = read_inline("héllo wörld", "text/plain")

    assert fetched.data == "héllo wörld".encode()
    assert fetched.content_type == "text/plain"
    assert fetched.uri is None
    assert fetched.metadata == {"size_bytes": 13, "charset": "utf-8"}


def test_read_inline_type_from_filename_when_not_declared():
    assert read_inline(b"# T", None, "notes.md").content_type == "text/markdown"
    assert read_inline(b"# T", None).content_type is None
    assert read_inline(b"# T", "text/plain", "notes.md").content_type == "text/plain"


def test_read_inline_size_limit():
    assert read_inline("x" * 10, None, max_bytes=10).data == b"x" * 10
    with pytest.raises(PayloadTooLarge) as caught:
        read_inline("x" * 11, None, max_bytes=10)
    assert caught.value.code == "content_too_large"


def test_read_blob_uses_declared_name_and_type():
    fetched = read_blob(b"a,b\n1,2\n", "3f2a", None, "table.csv")

    assert fetched.data == b"a,b\n1,2\n"
    assert fetched.content_type == "text/csv"
    assert fetched.filename == "table.csv"
    assert fetched.uri is None


def test_read_blob_missing_and_too_large():
    with pytest.raises(FetchError) as missing:
        read_blob(None, "gone", "text/plain")
    assert missing.value.code == "blob_missing"

    with pytest.raises(PayloadTooLarge) as large:
        read_blob(b"x" * 11, "big", "text/plain", "big.txt", max_bytes=10)
    assert large.value.code == "file_too_large"
    assert "big.txt" in large.value.message


# --- url ---------------------------------------------------------------------------------------


def test_fetch_url_content_type_filename_and_metadata(server: LoopbackServer, settings: Settings):
    server.serve(
        "/docs/guide.html",
        "<h1>Guide</h1>",
        content_type="text/html; charset=ISO-8859-1",
        headers={"ETag": '"abc"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )

    fetched = fetch_url(server.url("/docs/guide.html?x=1"), settings, max_bytes=1000)

    assert fetched is not None
    assert fetched.data == b"<h1>Guide</h1>"
    assert fetched.content_type == "text/html"
    assert fetched.filename == "guide.html"
    assert fetched.uri == server.url("/docs/guide.html?x=1")
    assert {k: v for k, v in fetched.metadata.items() if k != "fetched_at"} == {
        "final_url": server.url("/docs/guide.html?x=1"),
        "status_code": 200,
        "etag": '"abc"',
        "last_modified": "Wed, 21 Oct 2015 07:28:00 GMT",
        "size_bytes": 14,
        "charset": "iso-8859-1",
    }
    assert fetched.metadata["fetched_at"].endswith("+00:00")
    assert server.requests[0].headers["user-agent"] == "GristmillTest/1.0"


def test_fetch_url_filename_from_content_disposition(server: LoopbackServer, settings: Settings):
    server.serve(
        "/download",
        b"%PDF-1.4",
        content_type="application/pdf",
        headers={"Content-Disposition": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"},
    )
    server.serve(
        "/plain",
        b"x",
        content_type="text/plain",
        headers={"Content-Disposition": 'attachment; filename="../../etc/report.txt"'},
    )

    assert fetch_url(server.url("/download"), settings, max_bytes=100).filename == "résumé.pdf"
    assert fetch_url(server.url("/plain"), settings, max_bytes=100).filename == "report.txt"


def test_fetch_url_without_content_type_guesses_from_path(server: LoopbackServer, settings: Settings):
    server.serve("/exports/rows.csv", b"a,b\n", content_type=None)

    fetched = fetch_url(server.url("/exports/rows.csv"), settings, max_bytes=100)

    assert fetched.content_type == "text/csv"
    assert "charset" not in fetched.metadata


def test_fetch_url_follows_redirects_and_records_final_url(server: LoopbackServer, settings: Settings):
    server.redirect("/old", "/moved", status=301)
    server.redirect("/moved", "/new/page.md", status=307)
    server.serve("/new/page.md", "# Page", content_type="text/markdown")

    fetched = fetch_url(server.url("/old"), settings, max_bytes=100)

    assert fetched.data == b"# Page"
    assert fetched.uri == server.url("/new/page.md")
    assert fetched.metadata["final_url"] == server.url("/new/page.md")
    assert fetched.filename == "page.md"
    assert [request.path for request in server.requests] == ["/old", "/moved", "/new/page.md"]


def test_fetch_url_follows_exactly_max_redirects(server: LoopbackServer, settings: Settings):
    for hop in range(3):
        server.redirect(f"/r{hop}", f"/r{hop + 1}")
    server.serve("/r3", "end")
    server.redirect("/s0", "/r0")

    assert fetch_url(server.url("/r0"), settings, max_bytes=100).data == b"end"
    with pytest.raises(FetchError) as caught:
        fetch_url(server.url("/s0"), settings, max_bytes=100)
    assert caught.value.code == "too_many_redirects"
    assert not isinstance(caught.value, TransientFetchError)
    assert caught.value.details["redirects"] == [server.url(p) for p in ("/s0", "/r0", "/r1", "/r2")]


def test_fetch_url_redirect_loop(server: LoopbackServer, settings: Settings):
    server.redirect("/loop", "/loop")
    with pytest.raises(FetchError) as caught:
        fetch_url(server.url("/loop"), settings, max_bytes=100)
    assert caught.value.code == "too_many_redirects"
    assert server.hits("/loop") == 4


def test_fetch_url_refuses_redirect_to_other_scheme(server: LoopbackServer, settings: Settings):
    server.redirect("/to-file", "file:///etc/passwd")
    with pytest.raises(FetchError) as caught:
        fetch_url(server.url("/to-file"), settings, max_bytes=100)
    assert caught.value.code == "invalid_redirect"


@pytest.mark.parametrize("status", [404, 410, 403])
def test_fetch_url_client_errors_are_not_retryable(server: LoopbackServer, settings: Settings, status: int):
    server.serve("/missing", "nope", status=status)

    with pytest.raises(FetchError) as caught:
        fetch_url(server.url("/missing"), settings, max_bytes=100)

    assert type(caught.value) is FetchError
    assert caught.value.code == f"http_{status}"
    assert caught.value.retryable is False
    assert f"HTTP {status}" in caught.value.message
    assert caught.value.details == {"url": server.url("/missing"), "status_code": status}
    assert server.hits("/missing") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_fetch_url_server_errors_are_transient(server: LoopbackServer, settings: Settings, status: int):
    server.serve("/busy", "later", status=status, headers={"Retry-After": "7"})

    with pytest.raises(TransientFetchError) as caught:
        fetch_url(server.url("/busy"), settings, max_bytes=100)

    assert caught.value.code == f"http_{status}"
    assert caught.value.retryable is True
    assert caught.value.details["retry_after"] == "7"


def test_fetch_url_read_timeout_before_headers(server: LoopbackServer, settings: Settings):
    server.serve("/slow", "late", delay=2.0)

    started = time.monotonic()
    with pytest.raises(TransientFetchError) as caught:
        fetch_url(server.url("/slow"), settings, max_bytes=100)

    assert caught.value.code == "fetch_timeout"
    assert time.monotonic() - started < 1.5
    assert "0.3 s" in caught.value.message


def test_fetch_url_read_timeout_while_streaming_body(server: LoopbackServer, settings: Settings):
    server.serve("/stall", "late body", body_delay=2.0)

    with pytest.raises(TransientFetchError) as caught:
        fetch_url(server.url("/stall"), settings, max_bytes=100)
    assert caught.value.code == "fetch_timeout"


def test_fetch_url_connection_refused(settings: Settings):
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientFetchError) as caught:
        fetch_url(f"http://127.0.0.1:{port}/x", settings, max_bytes=100)
    assert caught.value.code == "url_unreachable"


def test_fetch_url_size_cap_from_content_length(server: LoopbackServer, settings: Settings):
    server.serve("/exact", b"x" * 1000)
    server.serve("/big", b"x" * 2000)

    assert len(fetch_url(server.url("/exact"), settings, max_bytes=1000).data) == 1000
    with pytest.raises(PayloadTooLarge) as caught:
        fetch_url(server.url("/big"), settings, max_bytes=1000)
    assert caught.value.code == "file_too_large"
    assert caught.value.details["size_bytes"] == 2000  # refused on the header, before the body


def test_fetch_url_size_cap_on_streamed_body(server: LoopbackServer, settings: Settings):
    server.serve("/stream-small", b"y" * 1000, chunked=True)
    server.serve("/stream-big", b"y" * 50_000, chunked=True)

    assert fetch_url(server.url("/stream-small"), settings, max_bytes=1000).data == b"y" * 1000
    with pytest.raises(PayloadTooLarge) as caught:
        fetch_url(server.url("/stream-big"), settings, max_bytes=1000)
    assert caught.value.code == "file_too_large"
    assert caught.value.details["size_bytes"] is None  # no Content-Length: counted while streaming


def test_fetch_url_size_cap_counts_decompressed_bytes(server: LoopbackServer, settings: Settings):
    packed = gzip.compress(b"z" * 100_000)
    server.serve("/bomb", packed, headers={"Content-Encoding": "gzip"})
    assert len(packed) < 1000

    with pytest.raises(PayloadTooLarge) as caught:
        fetch_url(server.url("/bomb"), settings, max_bytes=10_000)
    assert caught.value.code == "file_too_large"


def test_fetch_url_conditional_fetch_returns_none_when_unchanged(server: LoopbackServer, settings: Settings):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    server.conditional("/feed.json", '{"a": 1}', content_type="application/json", etag='"v1"', last_modified=stamp)

    first = fetch_url(server.url("/feed.json"), settings, max_bytes=100)
    unchanged_by_etag = fetch_url(server.url("/feed.json"), settings, max_bytes=100, etag=first.metadata["etag"])
    unchanged_by_date = fetch_url(server.url("/feed.json"), settings, max_bytes=100, last_modified=stamp)
    changed = fetch_url(server.url("/feed.json"), settings, max_bytes=100, etag='"v0"')

    assert first.data == b'{"a": 1}'
    assert (first.metadata["etag"], first.metadata["last_modified"]) == ('"v1"', stamp)
    assert unchanged_by_etag is None
    assert unchanged_by_date is None
    assert changed is not None and changed.data == b'{"a": 1}'
    assert server.requests[1].headers["if-none-match"] == '"v1"'
    assert server.requests[2].headers["if-modified-since"] == stamp
    assert "if-none-match" not in server.requests[0].headers


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file.txt", "file:///etc/passwd", "not a url", "http://", "javascript:alert(1)"]
)
def test_fetch_url_rejects_non_http_urls(settings: Settings, url: str):
    with pytest.raises(InvalidRequest) as caught:
        fetch_url(url, settings, max_bytes=100)
    assert caught.value.code == "invalid_url"


def test_fetch_url_uses_a_given_client_and_leaves_it_open(server: LoopbackServer, settings: Settings):
    server.sequence("/twice", [Reply(200, b"one"), Reply(200, b"two")])

    with httpx.Client() as client:
        first = fetch_url(server.url("/twice"), settings, max_bytes=100, client=client)
        second = fetch_url(server.url("/twice"), settings, max_bytes=100, client=client)
        assert not client.is_closed

    assert (first.data, second.data) == (b"one", b"two")
