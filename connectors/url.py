"""Web pages and files behind http(s) URLs, fetched with httpx under the configured limits."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote

import httpx

from connectors.file import guess_content_type
from connectors.outbound import OutboundPolicy, policy_for, send
from gristmill.documents import FetchedContent
from gristmill.errors import FetchError, GristmillError, InvalidRequest, PayloadTooLarge, TransientFetchError
from gristmill.settings import Settings
from gristmill.tls import tls_context

_SCHEMES = ("http", "https")


def fetch_url(
    url: str,
    settings: Settings,
    *,
    max_bytes: int,
    etag: str | None = None,
    last_modified: str | None = None,
    client: httpx.Client | None = None,
) -> FetchedContent | None:
    """GET `url`, following redirects; None when a conditional fetch finds the content unchanged (304)."""
    request_url = _parse_url(url)
    headers = {"User-Agent": settings.fetch_user_agent}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = httpx.Timeout(
        settings.fetch_read_timeout_seconds,
        connect=settings.fetch_connect_timeout_seconds,
        pool=settings.fetch_connect_timeout_seconds,
    )
    policy = policy_for(settings)
    with _client(client) as http, _translate_httpx_errors(url, settings):
        page_url, response = _follow_redirects(http, policy, request_url, headers, timeout, settings.fetch_max_redirects)
        try:
            if response.status_code == 304 and (etag or last_modified):
                return None
            _raise_for_status(page_url, response)
            data = _read_capped(page_url, response, max_bytes)
        finally:
            response.close()
    return _fetched(page_url, response, data)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in _SCHEMES or not parsed.host:
        raise InvalidRequest(
            f"{url!r} is not an http(s) URL; only http:// and https:// sources can be fetched.",
            code="invalid_url",
            details={"url": url},
        )
    return parsed


@contextmanager
def _client(client: httpx.Client | None) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with httpx.Client(verify=tls_context()) as owned:
        yield owned


def _follow_redirects(
    http: httpx.Client,
    policy: OutboundPolicy,
    url: httpx.URL,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    max_redirects: int,
) -> tuple[httpx.URL, httpx.Response]:
    """GET `url`, following redirects ourselves so that every hop is counted, its scheme checked and
    its address checked by the outbound policy; returns the final page's URL and its response."""
    hops: list[str] = []
    while True:
        response = send(http, policy, "GET", url, headers=headers, timeout=timeout)
        location = response.headers.get("Location") if response.is_redirect else None
        if location is None:
            return url, response
        response.close()
        next_url = url.join(location)
        hops.append(str(url))
        if len(hops) > max_redirects:
            raise FetchError(
                f"{hops[0]} redirected more than {max_redirects} times; the last hop pointed to {next_url}.",
                code="too_many_redirects",
                details={"redirects": hops, "max_redirects": max_redirects},
            )
        if next_url.scheme not in _SCHEMES:
            raise FetchError(
                f"{url} redirected to {next_url}, which is not an http(s) URL.",
                code="invalid_redirect",
                details={"redirects": hops, "location": str(next_url)},
            )
        url = next_url


def _raise_for_status(url: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = response.reason_phrase or "error"
    details = {"url": str(url), "status_code": status}
    if status == 429 or status >= 500:
        if retry_after := response.headers.get("Retry-After"):
            details["retry_after"] = retry_after
        raise TransientFetchError(
            f"{url} answered HTTP {status} {reason}; the fetch will be retried.",
            code=f"http_{status}",
            details=details,
        )
    raise FetchError(
        f"{url} answered HTTP {status} {reason}. Check the URL and that it is publicly reachable.",
        code=f"http_{status}",
        details=details,
    )


def _read_capped(url: httpx.URL, response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(url, int(declared), max_bytes)
    body = bytearray()
    # Decoded bytes are counted, so a small gzip body that inflates past the limit is refused too.
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise _too_large(url, None, max_bytes)
    return bytes(body)


def _too_large(url: httpx.URL, size: int | None, max_bytes: int) -> PayloadTooLarge:
    measured = f"declares {size:,} bytes" if size is not None else "sent more than that"
    return PayloadTooLarge(
        f"{url} is too large: the limit is {max_bytes:,} bytes and it {measured}.",
        code="file_too_large",
        details={"url": str(url), "size_bytes": size, "max_bytes": max_bytes},
    )


def _fetched(url: httpx.URL, response: httpx.Response, data: bytes) -> FetchedContent:
    filename = _filename(url, response)
    raw_type = response.headers.get("Content-Type", "")
    mime_type = raw_type.split(";", 1)[0].strip().lower()
    header = Message()
    header["Content-Type"] = raw_type
    metadata = {
        "final_url": str(url),
        "status_code": response.status_code,
        "etag": response.headers.get("ETag"),
        "last_modified": response.headers.get("Last-Modified"),
        "fetched_at": datetime.now(UTC).isoformat(),
        "size_bytes": len(data),
    }
    if charset := header.get_content_charset():
        metadata["charset"] = charset
    return FetchedContent(
        data=data,
        # Without a Content-Type header the extension is the only hint before the parse stage sniffs.
        content_type=mime_type if "/" in mime_type else guess_content_type(filename),
        uri=str(url),
        filename=filename,
        metadata=metadata,
    )


def _filename(url: httpx.URL, response: httpx.Response) -> str | None:
    if disposition := response.headers.get("Content-Disposition"):
        header = Message()
        header["Content-Disposition"] = disposition
        # get_filename() decodes RFC 2231 `filename*=UTF-8''...` as well as plain `filename=`.
        if name := header.get_filename():
            return _basename(name)
    return _basename(unquote(url.path))


def _basename(name: str) -> str | None:
    # A name is only a hint for humans and type guessing; never let it carry a directory part.
    base = PurePosixPath(name.replace("\\", "/")).name
    return base or None


@contextmanager
def _translate_httpx_errors(url: str, settings: Settings) -> Iterator[None]:
    """Turn httpx's exceptions into ours, once, here."""
    try:
        yield
    except GristmillError:
        raise
    except httpx.TimeoutException as exc:
        phase = "connecting" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "waiting for data"
        limit = (
            settings.fetch_connect_timeout_seconds
            if phase == "connecting"
            else settings.fetch_read_timeout_seconds
        )
        raise TransientFetchError(
            f"Timed out {phase} from {url} (limit {limit:g} s).",
            code="fetch_timeout",
            details={"url": url, "timeout_seconds": limit},
        ) from None
    except httpx.ConnectError as exc:
        raise TransientFetchError(
            f"Cannot connect to {url}: {exc}. Check the host name and that the server is up.",
            code="url_unreachable",
            details={"url": url},
        ) from None
    except httpx.DecodingError as exc:
        raise FetchError(
            f"{url} sent a body that cannot be decoded as its Content-Encoding says: {exc}.",
            code="content_decoding_failed",
            details={"url": url},
        ) from None
    except httpx.UnsupportedProtocol:
        raise InvalidRequest(
            f"{url!r} is not an http(s) URL; only http:// and https:// sources can be fetched.",
            code="invalid_url",
            details={"url": url},
        ) from None
    except httpx.TransportError as exc:
        raise TransientFetchError(
            f"The connection to {url} failed mid-transfer: {exc or type(exc).__name__}.",
            code="connection_error",
            details={"url": url},
        ) from None
