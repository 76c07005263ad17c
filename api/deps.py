"""FastAPI dependencies shared by the routers: settings, a database session, the chunk store."""

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from sqlmodel import Session

from gristmill.settings import Settings, get_settings
from storage.chunks import ChunkStore
from storage.db import get_engine


def settings_dep() -> Settings:
    return get_settings()


def get_session(settings: Annotated[Settings, Depends(settings_dep)]) -> Iterator[Session]:
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as session:
        yield session


@lru_cache
def _chunk_store(uri: str) -> ChunkStore:
    return ChunkStore(uri)


def chunk_store(settings: Annotated[Settings, Depends(settings_dep)]) -> ChunkStore:
    return _chunk_store(settings.resolved_lancedb_uri)


SettingsDep = Annotated[Settings, Depends(settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
ChunkStoreDep = Annotated[ChunkStore, Depends(chunk_store)]
