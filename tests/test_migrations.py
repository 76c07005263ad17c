"""The Alembic migrations build the schema the SQLModel tables describe, no more and no less."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import storage.tables  # noqa: F401 - registers the tables on SQLModel.metadata
from storage.db import migrate


def test_the_migrated_database_matches_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gristmill.db'}"
    migrate(url)
    with create_engine(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
