"""The REST service: FastAPI app, one error envelope, the reconciler at start-up."""

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.orchestration import Reconciler
from api.routers import health, ingest, jobs, libraries, search, sources
from gristmill.errors import GristmillError
from gristmill.settings import get_settings
from storage.db import migrate

log = logging.getLogger("gristmill.api")

HTTP_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found", 405: "invalid_request"}


def create_app(*, reconcile: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings = get_settings()
        migrate(settings.resolved_database_url)
        reconciler = Reconciler(settings) if reconcile else None
        if reconciler:
            reconciler.start()
        yield
        if reconciler:
            reconciler.stop()

    app = FastAPI(
        title="Gristmill",
        version="0.1.0",
        description="Self-hosted ingestion for retrieval and agent memory: push text, URLs and files "
        "into libraries; Gristmill fetches, parses, chunks, embeds and stores them, and searches them.",
        lifespan=lifespan,
    )
    for module in (libraries, ingest, jobs, sources, search, health):
        app.include_router(module.router)
    _install_error_handlers(app)
    return app


def _envelope(status: int, type_: str, code: str, message: str, details=None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"type": type_, "code": code, "message": message, "details": details}}
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GristmillError)
    async def gristmill_error(_request: Request, error: GristmillError) -> JSONResponse:
        return _envelope(error.status, error.type, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()
        ]
        first = fields[0] if fields else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _envelope(422, "invalid_request", "validation_failed", f"{where}: {first['msg']}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        type_ = HTTP_ERROR_TYPES.get(error.status_code, "invalid_request" if error.status_code < 500 else "internal_error")
        return _envelope(error.status_code, type_, type_ if error.status_code != 404 else "not_found", str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _envelope(500, "internal_error", "internal_error", "an unexpected error occurred; see the server log")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="gristmill-api")
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
