"""The REST service: FastAPI app, one error envelope, bounded bodies, rate limits, the reconciler and the
webhook sweeper at start-up."""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.body_size import BodySizeLimit
from api.rate_limits import RateLimiter, RateLimitHeaders
from api.routers import health, ingest, jobs, keys, libraries, search, sources, webhooks, workspaces
from api.schemas import SEED_FIELD_NAMES
from api.strict import refuse_unknown_query_parameters
from gristmill.environment import prepare_process
from gristmill.http_errors import install_error_handlers
from gristmill.settings import get_settings
from gristmill.usecases.orchestration import JobStarter
from gristmill.usecases.reconciler import Reconciler
from gristmill.usecases.webhooks import DeliverySweeper
from storage.db import migrate


def create_app(*, reconcile: bool = True) -> FastAPI:
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.resolved_database_url)
        app.state.job_starter = JobStarter(settings)
        reconciler = Reconciler(settings, app.state.job_starter) if reconcile else None
        sweeper = DeliverySweeper(settings) if reconcile else None
        for loop in (reconciler, sweeper):
            if loop:
                loop.start()
        yield
        for loop in (reconciler, sweeper):
            if loop:
                loop.stop()

    app = FastAPI(
        title="Gristmill",
        version="0.1.0",
        description="Self-hosted ingestion for retrieval and agent memory: push text, URLs and files "
        "into libraries; Gristmill fetches, parses, chunks, embeds and stores them, and searches them.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_unknown_query_parameters)],
    )
    for module in (libraries, ingest, jobs, sources, search, webhooks, keys, workspaces, health):
        app.include_router(module.router)
    install_error_handlers(app, field_hints=SEED_FIELD_NAMES)
    app.state.rate_limiter = RateLimiter(settings)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, settings=settings)  # outermost: nothing reads a body before it
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    settings = get_settings()
    prepare_process(settings)
    parser = argparse.ArgumentParser(prog="gristmill-api")
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
