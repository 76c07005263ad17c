"""Request bodies cut off at the configured size while they are read, before anything parses them.

Pure ASGI, around the whole app: a declared Content-Length over the limit is refused before the app
sees the request; a body sent without one (chunked) is counted as it arrives and refused as soon as
it passes the limit. File uploads (multipart/form-data) have their own, larger limit, since they
carry up to the largest file size allowed per file.

The rest of a refused body is read and thrown away, for a bounded time and size, before the 413 is
sent (nginx's "lingering close"): a server that closes a connection with unread data on it makes
the kernel reset it, and the client then loses the answer while it is still sending. A client that
asked `Expect: 100-continue` has sent nothing yet and is answered at once.
"""

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gristmill.http_errors import error_response
from gristmill.settings import Settings

DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0


class BodyTooLarge(Exception):
    """Raised into the app from `receive` once a body passes its limit; the app's own answer is then replaced."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_request_bytes = settings.max_request_bytes
        self.max_upload_request_bytes = settings.max_upload_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_upload_request_bytes if upload else self.max_request_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _discard_rest(receive)
            await _too_large(limit, upload)(scope, receive, send)
            return

        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the app made of the cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await _discard_rest(receive)
            await _too_large(limit, upload)(scope, receive, send)


async def _discard_rest(receive: Receive) -> None:
    discarded = 0
    deadline = time.monotonic() + DISCARD_SECONDS
    while discarded < DISCARD_BYTES and time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(receive(), timeout=deadline - time.monotonic())
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        discarded += len(message.get("body", b""))


def _too_large(limit: int, upload: bool):
    what = "a file upload request" if upload else "a request body"
    setting = "GRISTMILL_MAX_UPLOAD_REQUEST_BYTES" if upload else "GRISTMILL_MAX_REQUEST_BYTES"
    return error_response(
        413,
        "payload_too_large",
        "request_too_large",
        f"{what} may be at most {limit:,} bytes ({setting})",
        {"limit": limit},
        headers={"Connection": "close"},  # the body may not have been read to its end
    )
