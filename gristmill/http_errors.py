"""The one error envelope every Gristmill HTTP server (the REST API, the embeddings server) answers
with: {"error": {type, code, message, details}}.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gristmill.errors import GristmillError

log = logging.getLogger("gristmill.api")

HTTP_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found", 405: "invalid_request"}


def error_response(status: int, type_: str, code: str, message: str, details: object = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"type": type_, "code": code, "message": message, "details": details}}
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GristmillError)
    async def gristmill_error(_request: Request, error: GristmillError) -> JSONResponse:
        return error_response(error.status, error.type, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        first = fields[0] if fields else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, "invalid_request", "validation_failed", f"{where}: {first['msg']}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        fallback = "invalid_request" if error.status_code < 500 else "internal_error"
        type_ = HTTP_ERROR_TYPES.get(error.status_code, fallback)
        return error_response(error.status_code, type_, type_, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal_error", "an unexpected error occurred; see the server log")
