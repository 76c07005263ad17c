"""A real HTTP server on 127.0.0.1 for tests: register routes, point a client at `server.url(path)`.

    with LoopbackServer() as server:
        server.serve("/page", b"<h1>Hi</h1>", content_type="text/html")
        server.redirect("/old", "/page")
        server.sequence("/flaky", [Reply(503), Reply(503), Reply(200, b"ok")])
        server.serve("/slow", b"late", delay=2.0)
        fetch(server.url("/page"))
        assert server.hits("/flaky") == 3

Routes match on the path without its query string; an unknown path answers 404. Every request is
recorded in `server.requests` (method, path with query, headers, body).
"""

import email.utils
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. `delay` sleeps before the status line, `body_delay` between headers and body;
    `chunked` sends the body with chunked transfer encoding and no Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    body_delay: float = 0.0
    chunked: bool = False
    chunk_size: int = 64 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    body: bytes


Handler = Callable[[RecordedRequest], Reply]


class LoopbackServer:
    """A threaded HTTP/1.1 server on an ephemeral port, started and stopped as a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd = _QuietServer((host, 0), _make_handler(self))
        # A short poll interval keeps close() (which waits for the serve loop to notice) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-http", daemon=True
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # --- routes --------------------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        """Answer `path` with whatever `handler` returns for each request."""
        with self._lock:
            self._routes[path] = handler

    def reply(self, path: str, reply: Reply) -> None:
        self.route(path, lambda _request: reply)

    def serve(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str | None = "text/plain; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        body_delay: float = 0.0,
        chunked: bool = False,
    ) -> None:
        """Static content; also the way to answer a fixed status (`status=404`)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.reply(
            path,
            Reply(status, data, dict(headers or {}), content_type, delay, body_delay, chunked),
        )

    def redirect(self, path: str, location: str, *, status: int = 302) -> None:
        """Redirect to `location`, a path on this server or any absolute URL."""
        target = self.url(location) if location.startswith("/") else location
        self.reply(path, Reply(status, headers={"Location": target}))

    def sequence(self, path: str, replies: Sequence[Reply]) -> None:
        """Answer successive requests with `replies` in order, repeating the last one afterwards."""
        remaining = list(replies)
        lock = threading.Lock()

        def next_reply(_request: RecordedRequest) -> Reply:
            with lock:
                return remaining.pop(0) if len(remaining) > 1 else remaining[0]

        self.route(path, next_reply)

    def fail_then_serve(
        self, path: str, failures: int, body: bytes | str, *, status: int = 503, content_type: str = "text/plain"
    ) -> None:
        """Answer `status` to the first `failures` requests, then serve `body`."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.sequence(path, [Reply(status, b"try again")] * failures + [Reply(200, data, content_type=content_type)])

    def conditional(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str = "text/plain; charset=utf-8",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Serve `body` with ETag / Last-Modified, answering 304 to a request that already has it.

        As RFC 9110 says, If-None-Match wins over If-Modified-Since when both are sent.
        """
        data = body.encode("utf-8") if isinstance(body, str) else body
        headers = {name: value for name, value in (("ETag", etag), ("Last-Modified", last_modified)) if value}

        def answer(request: RecordedRequest) -> Reply:
            if _not_modified(request.headers, etag, last_modified):
                return Reply(304, headers=headers)
            return Reply(200, data, headers, content_type)

        self.route(path, answer)

    # --- what happened -------------------------------------------------------------------------

    def hits(self, path: str) -> int:
        """How many requests reached `path` (query string ignored)."""
        with self._lock:
            return sum(1 for request in self.requests if urlsplit(request.path).path == path)

    def _handler_for(self, path: str) -> Handler | None:
        with self._lock:
            return self._routes.get(urlsplit(path).path)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # Clients under test hang up on purpose (timeouts, size caps, pooled keep-alive connections).
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _not_modified(headers: dict[str, str], etag: str | None, last_modified: str | None) -> bool:
    if "if-none-match" in headers:
        tags = [tag.strip() for tag in headers["if-none-match"].split(",")]
        return etag is not None and (etag in tags or "*" in tags)
    if "if-modified-since" in headers and last_modified:
        since = email.utils.parsedate_to_datetime(headers["if-modified-since"])
        return email.utils.parsedate_to_datetime(last_modified) <= since
    return False


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool = True) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            server._record(request)
            handler = server._handler_for(self.path)
            reply = handler(request) if handler else Reply(404, b"no such route", content_type="text/plain")
            try:
                self._send(reply, send_body)
            except ConnectionError:
                # The client gave up (a timeout or size cap under test); nothing left to tell it.
                self.close_connection = True

        def _send(self, reply: Reply, send_body: bool) -> None:
            time.sleep(reply.delay)
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            bodiless = reply.status in (204, 304) or 100 <= reply.status < 200
            framed = any(name.lower() in ("content-length", "transfer-encoding") for name in reply.headers)
            if reply.chunked and not bodiless:
                self.send_header("Transfer-Encoding", "chunked")
            elif not bodiless and not framed:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.flush()
            if not send_body or bodiless:
                return
            time.sleep(reply.body_delay)
            if not reply.chunked:
                self.wfile.write(reply.body)
                return
            for start in range(0, len(reply.body), reply.chunk_size):
                piece = reply.body[start : start + reply.chunk_size]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean; `server.requests` records what arrived

    return _Handler
