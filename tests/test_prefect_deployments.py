"""The deployments a user starts from Prefect (`ingest-url`, `sync-library`), started through Prefect's
client against the running service: their jobs show in the API like any other, and what the REST API
refuses they refuse with the same error."""

import pytest
from prefect.deployments import run_deployment

from tests.http_server import LoopbackServer
from tests.running_service import Service, create_library, search, wait_for_job

pytestmark = pytest.mark.slow


def _run(deployment: str, **parameters):
    return run_deployment(deployment, parameters=parameters, timeout=180)


def test_ingest_url_started_from_prefect_creates_a_job_the_api_shows(service: Service, web: LoopbackServer) -> None:
    web.serve("/glaciers.html", "<html><head><title>Glaciers</title></head><body><article><h1>Glaciers</h1>"
              "<p>Glaciers carve U-shaped valleys as they grind downhill over centuries.</p></article></body></html>",
              content_type="text/html; charset=utf-8")
    with service.client() as client:
        library = create_library(client, "from-prefect")

        run = _run("ingest-url/ingest-url", library="from-prefect", url=web.url("/glaciers.html"),
                   external_id="glaciers", metadata={"team": "geo"})

        assert run.state.is_completed(), run.state
        listed = client.get("/v1/jobs", params={"library_id": library["id"]}).json()
        assert len(listed["data"]) == 1, listed
        job = wait_for_job(client, listed["data"][0]["id"])
        assert (job["status"], job["counts"]["completed"]) == ("completed", 1), job
        (source,) = client.get(f"/v1/libraries/{library['id']}/sources").json()["data"]
        assert (source["external_id"], source["metadata"], source["job_id"]) == ("glaciers", {"team": "geo"}, job["id"])
        assert search(client, library["id"], "glaciers carve valleys", mode="keyword")[0]["source_id"] == source["id"]

        # The same page again under its external id, unchanged: an upsert that changes nothing, as through the API.
        chunks = client.get(f"/v1/libraries/{library['id']}").json()["chunk_count"]
        again = _run("ingest-url/ingest-url", library=library["id"], url=web.url("/glaciers.html"), external_id="glaciers")
        assert again.state.is_completed(), again.state
        assert client.get(f"/v1/libraries/{library['id']}").json()["chunk_count"] == chunks
        assert client.get("/v1/jobs", params={"library_id": library["id"]}).json()["total"] == 2

        # A sync of the library finds the page unchanged: its job names no source and goes, as the scheduled sync's.
        sync = _run("sync-library/sync-library", library="from-prefect")
        assert sync.state.is_completed(), sync.state
        assert client.get("/v1/jobs", params={"library_id": library["id"]}).json()["total"] == 2
        assert client.get(f"/v1/sources/{source['id']}").json()["status"] == "completed"


def test_what_rest_refuses_a_prefect_run_refuses_with_the_same_error(service: Service) -> None:
    with service.client() as client:
        library = create_library(client, "refusals")
        blocked = "http://10.1.2.3/internal"
        rest = client.post(f"/v1/libraries/{library['id']}/ingest", json={"url": blocked})
        assert rest.status_code >= 400, rest.text
        rest_error = rest.json()["error"]

        run = _run("ingest-url/ingest-url", library="refusals", url=blocked)

        assert run.state.is_failed(), run.state
        assert rest_error["message"] in run.state.message
        assert client.get("/v1/jobs", params={"library_id": library["id"]}).json()["total"] == 0

        missing = _run("ingest-url/ingest-url", library="no-such-library", url="https://example.org/")
        assert missing.state.is_failed() and "library no-such-library not found" in missing.state.message
