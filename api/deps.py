"""FastAPI dependencies shared by the routers: settings, a database session, the chunk store, the job starter."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from gristmill.settings import Settings, get_settings
from gristmill.usecases.orchestration import JobStarter
from storage.blobs import BlobStore, open_blob_store
from storage.chunks import ChunkStore, open_chunk_store
from storage.db import get_engine


def settings_dep() -> Settings:
    return get_settings()


def get_session(settings: Annotated[Settings, Depends(settings_dep)]) -> Iterator[Session]:
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as session:
        yield session


def chunk_store(settings: Annotated[Settings, Depends(settings_dep)]) -> ChunkStore:
    return open_chunk_store(settings)


def blob_store(settings: Annotated[Settings, Depends(settings_dep)]) -> BlobStore:
    return open_blob_store(settings)


def job_starter(request: Request) -> JobStarter:
    return request.app.state.job_starter


SettingsDep = Annotated[Settings, Depends(settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
ChunkStoreDep = Annotated[ChunkStore, Depends(chunk_store)]
BlobStoreDep = Annotated[BlobStore, Depends(blob_store)]
StarterDep = Annotated[JobStarter, Depends(job_starter)]
