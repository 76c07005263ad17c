"""The fetch stage: dispatch by origin, size limits, and which failures Prefect retries."""

from pathlib import Path

import pytest
from prefect import flow
from prefect.states import Completed, Failed

from gristmill.errors import FetchError, InvalidRequest, PayloadTooLarge, TransientFetchError
from gristmill.settings import Settings
from tasks.fetch import fetch_source, fetch_task
from tasks.parse.formats import largest_size_limit
from tasks.retries import retry_if_retryable as is_retryable_failure
from tests.conftest import LOOPBACK
from tests.http_server import LoopbackServer


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", fetch_read_timeout_seconds=2.0, fetch_allowed_networks=LOOPBACK)


def test_inline_source_reads_its_blob_relative_to_the_blob_dir(settings: Settings):
    Path(settings.resolved_blob_uri).mkdir(parents=True)
    (Path(settings.resolved_blob_uri) / "src-1").write_bytes(b"remember the milk")

    fetched = fetch_source(
        "inline", uri=None, blob_path="src-1", content_type="text/plain", filename=None, settings=settings
    )

    assert fetched.data == b"remember the milk"
    assert fetched.content_type == "text/plain"
    assert fetched.uri is None


def test_uploaded_file_keeps_its_given_name_and_uri(settings: Settings, tmp_path: Path):
    blob = tmp_path / "upload.bin"
    blob.write_bytes(b"# Plan\n")

    fetched = fetch_source(
        "file", uri="plan.md", blob_path=str(blob), content_type=None, filename="plan.md", settings=settings
    )

    assert (fetched.data, fetched.content_type, fetched.filename, fetched.uri) == (
        b"# Plan\n",
        "text/markdown",
        "plan.md",
        "plan.md",
    )


def test_file_source_reads_the_path_and_declared_type_wins(settings: Settings, tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("- [ ] item\n")

    guessed = fetch_source("file", uri=str(path), blob_path=None, content_type=None, filename=None, settings=settings)
    declared = fetch_source(
        "file", uri=str(path), blob_path=None, content_type="text/markdown", filename=None, settings=settings
    )

    assert (guessed.content_type, guessed.uri, guessed.filename) == ("text/plain", str(path), "notes.txt")
    assert declared.content_type == "text/markdown"
    assert declared.metadata["detected_content_type"] == "text/plain"


def test_url_source_is_fetched_and_keeps_its_own_filename(settings: Settings, server: LoopbackServer):
    server.serve("/a.html", "<p>hi</p>", content_type="text/html")
    server.serve("/", "<p>home</p>", content_type="text/html")

    fetched = fetch_source(
        "url", uri=server.url("/a.html"), blob_path=None, content_type=None, filename="Greeting", settings=settings
    )
    nameless = fetch_source(
        "url", uri=server.url("/"), blob_path=None, content_type=None, filename="home.html", settings=settings
    )

    assert (fetched.data, fetched.content_type, fetched.uri) == (b"<p>hi</p>", "text/html", server.url("/a.html"))
    assert fetched.filename == "a.html"
    assert nameless.filename == "home.html"


def test_default_limit_is_the_largest_per_format_limit(tmp_path: Path):
    settings = Settings(home=tmp_path, max_pdf_bytes=10, max_docx_bytes=40, max_csv_bytes=30, max_text_bytes=20)
    (tmp_path / "at-limit.csv").write_bytes(b"x" * 40)
    (tmp_path / "over.csv").write_bytes(b"x" * 41)

    assert largest_size_limit(settings) == 40
    fetched = fetch_source(
        "file", uri=str(tmp_path / "at-limit.csv"), blob_path=None, content_type=None, filename=None, settings=settings
    )
    assert len(fetched.data) == 40
    with pytest.raises(PayloadTooLarge) as caught:
        fetch_source(
            "file", uri=str(tmp_path / "over.csv"), blob_path=None, content_type=None, filename=None, settings=settings
        )
    assert caught.value.details["max_bytes"] == 40


def test_explicit_limit_overrides_the_default(settings: Settings, server: LoopbackServer):
    server.serve("/page", b"x" * 11)
    with pytest.raises(PayloadTooLarge):
        fetch_source(
            "url",
            uri=server.url("/page"),
            blob_path=None,
            content_type=None,
            filename=None,
            settings=settings,
            max_bytes=10,
        )


@pytest.mark.parametrize(
    ("origin", "uri", "error", "code"),
    [
        ("inline", None, FetchError, "blob_missing"),
        ("url", None, InvalidRequest, "missing_uri"),
        ("s3", "s3://bucket/key", InvalidRequest, "invalid_origin"),
    ],
)
def test_inconsistent_sources_are_refused(settings: Settings, origin: str, uri: str | None, error, code: str):
    with pytest.raises(error) as caught:
        fetch_source(origin, uri=uri, blob_path=None, content_type=None, filename=None, settings=settings)
    assert caught.value.code == code


def test_plain_function_does_not_retry_a_404(settings: Settings, server: LoopbackServer):
    server.serve("/gone", "no", status=404)

    with pytest.raises(FetchError) as caught:
        fetch_source(
            "url", uri=server.url("/gone"), blob_path=None, content_type=None, filename=None, settings=settings
        )

    assert caught.value.code == "http_404"
    assert server.hits("/gone") == 1


# --- retry condition ---------------------------------------------------------------------------


def _failure_of(call) -> Failed:
    """The state Prefect 3.9's task engine hands to retry_condition_fn when a task raises."""
    try:
        call()
    except Exception as exc:
        return Failed(data=exc)
    raise AssertionError("expected the call to fail")


def test_retry_condition_retries_only_transient_errors(settings: Settings, server: LoopbackServer):
    server.serve("/busy", "later", status=503)
    server.serve("/gone", "no", status=404)

    def fetch(path: str):
        return lambda: fetch_source(
            "url", uri=server.url(path), blob_path=None, content_type=None, filename=None, settings=settings
        )

    assert is_retryable_failure(fetch_task, None, _failure_of(fetch("/busy"))) is True
    assert is_retryable_failure(fetch_task, None, _failure_of(fetch("/gone"))) is False
    assert is_retryable_failure(fetch_task, None, Failed(data=TransientFetchError("t", code="fetch_timeout"))) is True
    assert is_retryable_failure(fetch_task, None, Failed(data=ValueError("a bug"))) is False
    assert is_retryable_failure(fetch_task, None, Completed(data=None)) is False


def test_fetch_task_is_configured_for_network_retries():
    assert fetch_task.name == "fetch"
    assert fetch_task.retries == 3
    assert fetch_task.retry_delay_seconds == [2, 5, 15]
    assert fetch_task.retry_condition_fn is is_retryable_failure


@pytest.mark.slow
def test_fetch_task_retries_503_then_succeeds_in_a_flow(
    prefect_server: str, settings: Settings, server: LoopbackServer
):
    server.fail_then_serve("/flaky", 2, "finally", content_type="text/plain")
    server.serve("/gone", "no", status=404)
    quick_task = fetch_task.with_options(retry_delay_seconds=0)

    @flow
    def fetch_one(url: str):
        return quick_task("url", uri=url, blob_path=None, content_type=None, filename=None, settings=settings)

    fetched = fetch_one(server.url("/flaky"))
    with pytest.raises(FetchError) as caught:
        fetch_one(server.url("/gone"))

    assert fetched.data == b"finally"
    assert server.hits("/flaky") == 3
    assert caught.value.code == "http_404"
    assert server.hits("/gone") == 1
