"""The Prefect UI tells the job's story: the flow run of a job, read back from the Prefect API, is named
after it, ends in the job's state with a message that says why, and logs one line per source."""

import logging
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_LEVEL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

from gristmill.cli.standalone import StandaloneBackend
from gristmill.settings import get_settings
from gristmill.usecases.submission import SourceSpec
from storage import repository
from storage.db import session_scope
from storage.tables import IngestJob


@pytest.fixture
def home(gristmill_home: Path, prefect_server: str) -> Path:
    return gristmill_home


def _ingest(specs: list[SourceSpec]) -> IngestJob:
    """Ingest as the CLI does, with run logs sent to Prefect at INFO. The suite sends none and logs
    WARNING; Prefect sets its logging up on first use, from the settings of the moment, so this sets
    both the loggers' level and the settings."""
    loggers = [logging.getLogger(name) for name in ("prefect", "prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    try:
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: True, PREFECT_LOGGING_LEVEL: "INFO"}):
            summary = StandaloneBackend(get_settings()).ingest("mill-notes", specs, show_progress=False)
            APILogHandler().flush()  # the batch of logs the run left in the queue
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    with session_scope(get_settings().resolved_database_url) as session:
        return session.get(IngestJob, summary.job_id)


def _run_of(job: IngestJob):
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(job.flow_run_id))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return run, [log.message for log in logs]


def test_a_partial_jobs_run_is_completed_names_its_job_and_logs_each_source(home: Path, tmp_path: Path) -> None:
    note = tmp_path / "wheel.md"
    note.write_text("The overshot wheel turns as water fills its buckets.\n")
    job = _ingest([SourceSpec(origin="file", uri=str(note), title="wheel.md"), SourceSpec(origin="file", uri=str(tmp_path / "gone.md"))])
    assert (job.status.value, job.completed_count, job.failed_count) == ("partial", 1, 1)
    run, logs = _run_of(job)
    assert run.name == f"ingest mill-notes {job.id}"
    assert run.state.type.value == "COMPLETED"
    assert run.state.message.startswith("1 of 2 sources failed; first: ")
    with session_scope(get_settings().resolved_database_url) as session:
        wheel, gone = repository.job_sources(session, job)
    assert f"source {wheel.id} (wheel.md, 1 chunks) completed" in logs
    assert any(line.startswith(f"source {gone.id} (") and " failed: " in line for line in logs), logs


def test_a_failed_jobs_run_is_failed_with_the_jobs_error(home: Path, tmp_path: Path) -> None:
    job = _ingest([SourceSpec(origin="file", uri=str(tmp_path / "missing.md"))])
    assert job.status.value == "failed"
    run, _ = _run_of(job)
    assert run.state.type.value == "FAILED"
    assert run.state.message == job.error
