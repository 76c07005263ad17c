"""Flows a user starts from Prefect (the UI's Run button, `prefect deployment run`, another team's flow
or automation) with user-level parameters: the Prefect front door, beside the REST API and the CLI.

They take what `POST /v1/libraries/{id}/ingest` takes, go through the same use cases (one submission
rule, the same validation and errors), and create their job rows themselves, so their jobs show in
the API like any other. A refused submission fails the flow run with the REST API's error code and
message in its state.
"""

from typing import Any

from prefect import flow
from sqlmodel import Session

from flows.ingest import ingest_job
from flows.sync import sync_url_sources
from gristmill.errors import NotFound
from gristmill.metadata import check_metadata
from gristmill.settings import get_settings
from gristmill.usecases.shapes import SourceSpec
from gristmill.usecases.submission import submit
from storage import repository
from storage.db import session_scope
from storage.repository import DEFAULT_WORKSPACE
from storage.tables import Library


@flow(name="ingest-url", log_prints=True)
def ingest_url(
    library: str,
    url: str,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    title: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
) -> dict[str, Any]:
    """Ingest one URL into `library` (its name or id, in `workspace`) as a job of its own."""
    settings = get_settings()
    spec = SourceSpec(origin="url", uri=url, title=title, external_id=external_id, metadata=check_metadata(metadata or {}))
    with session_scope(settings.resolved_database_url) as session:
        target = _library(session, workspace, library)
        submission = submit(session, settings, target, [spec], keep_duplicates=True)
    (result,) = submission.results
    if result.error is not None:
        print(f"refused ({result.error.code}): {result.error.message}")  # the REST API's code, beside its message
        raise result.error
    if submission.job is None:  # the library has this URL: its source is the answer, as the API's `existing`
        print(f"{url} is already source {result.source_id} of library {target.name}")
        return {"status": result.status, "source_id": result.source_id, "job_id": None}
    print(f"job {submission.job.id}: ingesting {url} into library {target.name}")
    outcome = ingest_job(submission.job.id)
    return {"status": outcome["status"], "source_id": result.source_id, "job_id": submission.job.id}


@flow(name="sync-library", log_prints=True)
def sync_library(library: str, workspace: str = DEFAULT_WORKSPACE) -> dict[str, int]:
    """Re-sync the URL sources of one library (its name or id) now, as the scheduled sync does for all."""
    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        target = _library(session, workspace, library)
    return sync_url_sources(library_id=target.id)


def _library(session: Session, workspace_name: str, name_or_id: str) -> Library:
    workspace = repository.find_workspace_by_name(session, workspace_name)
    if workspace is None:
        raise NotFound(f"workspace {workspace_name!r} not found", code="workspace_not_found")
    found = repository.find_library_by_name(session, workspace.id, name_or_id)
    return found or repository.get_library(session, workspace.id, name_or_id)
