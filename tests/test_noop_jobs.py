"""A submission with nothing to do (every item a duplicate or an unchanged upsert) ends its job at once:
no flow run, nothing left `pending`. The REST API on a real SQLite home with no runner."""

from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from storage.tables import SourceStatus
from tests.conftest import LocalApi


def test_an_unchanged_upsert_ends_its_job_completed_at_once(local_api: LocalApi) -> None:
    note = {"content": "The bell rings at noon.", "external_id": "bell"}
    with local_api.client() as client:
        library = client.post("/v1/libraries", json={"name": "noop"}).json()
        first = client.post(f"/v1/libraries/{library['id']}/ingest", json=note).json()
        with session_scope(get_settings().resolved_database_url) as session:  # what its flow run does
            repository.update_source(session, first["source_ids"][0], status=SourceStatus.completed)
        again = client.post(f"/v1/libraries/{library['id']}/ingest", json=note)
        assert again.status_code == 202, again.text
        assert again.json()["results"][0]["status"] == "duplicate"
        job = client.get(f"/v1/jobs/{again.json()['job_id']}").json()
    assert job["status"] == "completed" and job["finished_at"] is not None, job
    assert job["flow_run_id"] is None
    assert job["counts"]["duplicate"] == 1
