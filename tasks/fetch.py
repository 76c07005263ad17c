"""The fetch stage: one source's bytes from wherever its origin says, as `FetchedContent`."""

from dataclasses import replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.file import read_file
from connectors.inline import read_blob
from connectors.url import fetch_url
from gristmill.documents import FetchedContent
from gristmill.errors import FetchError, InvalidRequest
from gristmill.settings import Settings
from storage.blobs import open_blob_store
from tasks.parse.formats import largest_size_limit
from tasks.retries import NETWORK_RETRY_DELAYS_SECONDS, retry_if_retryable


def fetch_source(
    origin: str,
    *,
    uri: str | None,
    blob_path: str | None,
    content_type: str | None,
    filename: str | None,
    settings: Settings,
    max_bytes: int | None = None,
) -> FetchedContent:
    """Fetch one source's bytes. Uploaded bytes parked in the blob store are read from there whatever
    the origin; otherwise "file" reads `uri` as a path and "url" fetches it. A declared content type
    wins over the one the connector found; a declared filename only fills in when the path, URL or
    Content-Disposition gave none (callers may pass a source's human title there)."""
    # The format is only known once the bytes are here, so the fetch caps at the loosest limit.
    limit = max_bytes if max_bytes is not None else largest_size_limit(settings)
    if blob_path:
        data = open_blob_store(settings).read(blob_path)
        fetched = read_blob(data, blob_path, content_type, filename, max_bytes=limit)
        return replace(fetched, uri=uri) if uri else fetched
    if origin == "inline":
        raise FetchError("This inline source has no stored content; submit it again.", code="blob_missing")
    if not uri:
        raise InvalidRequest(f"A {origin!r} source needs a uri.", code="missing_uri")
    if origin == "file":
        fetched = read_file(Path(uri), max_bytes=limit)
    elif origin == "url":
        fetched = fetch_url(uri, settings, max_bytes=limit)
        if fetched is None:  # only a conditional fetch can answer "unchanged", and this one is not
            raise FetchError(f"{uri} answered 304 Not Modified to a plain GET.", code="http_304")
    else:
        raise InvalidRequest(f"Unknown source origin {origin!r}; expected inline, file or url.", code="invalid_origin")
    return _with_declared(fetched, content_type, filename)


def _with_declared(fetched: FetchedContent, content_type: str | None, filename: str | None) -> FetchedContent:
    if not content_type and not filename:
        return fetched
    metadata = dict(fetched.metadata)
    if content_type and fetched.content_type and content_type != fetched.content_type:
        metadata["detected_content_type"] = fetched.content_type
    return replace(
        fetched,
        content_type=content_type or fetched.content_type,
        filename=fetched.filename or filename,
        metadata=metadata,
    )


# Fetched bytes can be tens of megabytes: never cache or persist them as Prefect results.
fetch_task = task(
    name="fetch",
    retries=3,
    retry_delay_seconds=NETWORK_RETRY_DELAYS_SECONDS,
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
    persist_result=False,
)(fetch_source)


def original_content(
    *, blob_path: str | None, extracted_text: str | None, content_type: str | None, content_format: str | None,
    filename: str | None, uri: str | None, settings: Settings,
) -> FetchedContent:
    """A stored source's content for re-indexing: its original bytes where they were kept, else its
    extracted text (Markdown stays Markdown; other formats are read back as plain text, their layout
    gone). Never the network: a re-index reads what is stored."""
    data = open_blob_store(settings).read(blob_path)
    if data is not None:
        return FetchedContent(data=data, content_type=content_type, uri=uri, filename=filename)
    if not extracted_text:
        raise FetchError("neither the original nor the extracted text of this source is stored", code="original_missing")
    fallback_type = "text/markdown" if content_format == "markdown" else "text/plain"
    return FetchedContent(data=extracted_text.encode("utf-8"), content_type=fallback_type, uri=uri, filename=None)
