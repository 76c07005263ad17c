"""The one error envelope every Gristmill HTTP server (the REST API, the embeddings server) answers
with: {"error": {type, code, message, details}}.
"""

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gristmill.errors import GristmillError

log = logging.getLogger("gristmill.api")

HTTP_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found", 405: "invalid_request"}


def error_response(
    status: int, type_: str, code: str, message: str, details: object = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"type": type_, "code": code, "message": message, "details": details}},
        headers=headers,
    )


def install_error_handlers(app: FastAPI, *, field_hints: dict[str, str] | None = None) -> None:
    """`field_hints`: for a field a request may not hold, the name it has here (said in the 422)."""
    hints = field_hints or {}

    @app.exception_handler(GristmillError)
    async def gristmill_error(_request: Request, error: GristmillError) -> JSONResponse:
        return error_response(error.status, error.type, error.code, error.message, error.details, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": field_path(e["loc"]), "loc": list(e["loc"]), "msg": readable_message(e, hints), "type": e["type"]}
            for e in error.errors()
        ]
        if not fields:
            return error_response(422, "invalid_request", "validation_failed", "invalid request", [])
        first = fields[0]
        more = f" (and {len(fields) - 1} more: see details)" if len(fields) > 1 else ""
        return error_response(422, "invalid_request", "validation_failed", f"{first['field']}: {first['msg']}{more}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        fallback = "invalid_request" if error.status_code < 500 else "internal_error"
        type_ = HTTP_ERROR_TYPES.get(error.status_code, fallback)
        return error_response(error.status_code, type_, type_, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal_error", "an unexpected error occurred; see the server log")


# Where a request part's fields start; the part is named only for what is not the body.
_PARTS = {"body": "", "query": "query parameter ", "path": "path parameter ", "header": "header ", "cookie": "cookie "}
# pydantic puts the tag of a tagged union's branch in the path; ours start with it (api/schemas.py).
UNION_TAG_PREFIX = "@"
# pydantic names a custom validator's step in the path too (`url.function-wrap[wrap_val()]`); a person doesn't.
_VALIDATOR_STEP = re.compile(r"^function-(wrap|after|before|plain)\[.*\]$")


def field_path(loc: Sequence[str | int]) -> str:
    """`("body", "@batch", "items", 0, "url")` as a person writes it: `items[0].url`."""
    parts = list(loc)
    prefix = _PARTS.get(str(parts[0]), "") if parts else ""
    if parts and parts[0] in _PARTS:
        parts = parts[1:]
    if parts and isinstance(parts[0], str) and parts[0].startswith(UNION_TAG_PREFIX):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, str) and _VALIDATOR_STEP.match(part):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{prefix}{path}" if path else (prefix.strip() or "body")


def readable_message(error: dict[str, Any], hints: dict[str, str]) -> str:
    """pydantic's message, without its "Value error, " prefix; an unknown field says its name here."""
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        name = str(error["loc"][-1]) if error["loc"] else ""
        return f"unknown field (here: {hints[name]})" if name in hints else "unknown field"
    if kind == "missing":
        return "required"
    return message.removeprefix("Value error, ")
