"""Queries of the SQL tables that the pipeline runs often, against a real SQLite file."""

from pathlib import Path

import pytest
from sqlalchemy.exc import InvalidRequestError

from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from storage.tables import Source, SourceStatus

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def test_progress_updates_leave_a_sources_extracted_text_unread(gristmill_home: Path) -> None:
    url = get_settings().resolved_database_url
    with session_scope(url) as session:
        workspace = repository.ensure_workspace(session)
        library = repository.create_library(session, workspace.id, name="texts", embedding_model="m", embedding_dim=4,
                                            chunk_max_tokens=256, chunk_overlap_tokens=32)
        source = Source(workspace_id=workspace.id, library_id=library.id, origin="inline")
        job = repository.create_job(session, library, [source])
    big_text = "row of a big table\n" * 50_000
    with session_scope(url) as session:
        repository.update_source(session, source.id, status=SourceStatus.chunking, extracted_text=big_text)
    with session_scope(url) as session:
        updated = repository.update_source(session, source.id, status=SourceStatus.embedding, progress_current=32)
        assert updated.status == SourceStatus.embedding
        with pytest.raises(InvalidRequestError):
            updated.extracted_text  # noqa: B018 - not loaded: reading it would be a bug
        assert [s.id for s in repository.job_sources(session, job)] == [source.id]
    with session_scope(url) as session:
        assert repository.get_source(session, workspace.id, source.id).extracted_text == big_text
