"""A service of several machines, on one: Prefect's server on PostgreSQL, an API process, and two
`gristmill worker`s with homes of their own that share only PostgreSQL, the S3 store (moto's) and
the embeddings URL. Every job of mixed formats completes, both workers ran some, and every chunk is
there once; then a worker killed outright mid-job has its job taken over by the other one when the
job's lease runs out (docs/job-states.md)."""

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from gristmill.settings import Settings
from gristmill.supervisor.processes import descendants
from storage.chunks import open_chunk_store
from tests import builders
from tests.cluster import cluster, prefect_server_on
from tests.conftest import S3Store, fresh_postgres_database
from tests.http_server import LoopbackServer
from tests.running_service import wait_for_job

pytestmark = pytest.mark.slow


def _items(web: LoopbackServer) -> list[tuple[str, dict]]:
    """(phrase, request) pairs: one job each, of every format, each with a phrase only it holds."""
    jobs: list[tuple[str, dict]] = []
    for n in range(3):
        phrase = f"note{n} zebra ledger"
        jobs.append((phrase, {"json": {"content": f"# Note {n}\n\nThe {phrase} is kept here.", "content_type": "text/markdown"}}))
    for n in range(2):
        phrase = f"page{n} heron quay"
        web.serve(f"/page{n}.html", f"<html><head><title>P{n}</title></head><body><article><h1>P{n}</h1><p>The {phrase} "
                  "stands by the river.</p></article></body></html>", content_type="text/html; charset=utf-8")
        jobs.append((phrase, {"json": {"url": web.url(f"/page{n}.html")}}))
    files = {
        "table.csv": (b"city,fact\nOslo,csv0 walrus anchor\nLima,llamas\n", "csv0 walrus anchor"),
        "config.json": (b'{"service": {"motto": "json0 falcon harbor"}}', "json0 falcon harbor"),
        "code.py": (b"def py0_otter_bridge():\n    return 'py0 otter bridge'\n", "py0 otter bridge"),
        "plain.txt": (b"The txt0 badger lantern glows.\n", "txt0 badger lantern"),
        "manual.pdf": (builders.build_pdf([["The pdf0 bison compass points north."], ["Page two."]]), "pdf0 bison compass"),
        "policy.docx": (builders.build_docx([builders.Heading("Policy", level=1), "The docx0 lynx harbour rule."]),
                        "docx0 lynx harbour"),
    }
    for name, (data, phrase) in files.items():
        jobs.append((phrase, {"files": {"file": (name, data)}}))
    return jobs


def test_two_workers_sharing_only_postgres_s3_and_embeddings_run_every_job_once(
    tmp_path: Path, s3_store: S3Store, test_embeddings_url: str, web: LoopbackServer
) -> None:
    s3_env = s3_store.settings_env(f"cluster-{uuid.uuid4().hex[:8]}")
    with (
        fresh_postgres_database("prefect") as prefect_db,
        fresh_postgres_database("cluster") as database_url,
        prefect_server_on(prefect_db, tmp_path) as prefect_api,
        # Two runs at a time each, so that twelve jobs cannot all go to whichever worker polls first.
        cluster(tmp_path, prefect_api_url=prefect_api, database_url=database_url, embeddings_url=test_embeddings_url,
                extra_env={**s3_env, "GRISTMILL_RUNNER_FLOW_LIMIT": "2", "GRISTMILL_JOB_LEASE_SECONDS": "8"}, workers=2) as running,
        running.client() as client,
    ):
        library = client.post("/v1/libraries", json={"name": "shared"}).json()
        submitted = []
        for phrase, request in _items(web):
            path = "ingest" if "json" in request else "files"
            answer = client.post(f"/v1/libraries/{library['id']}/{path}", **request)
            assert answer.status_code == 202, answer.text
            submitted.append((phrase, answer.json()))

        jobs = [wait_for_job(client, accepted["job_id"], timeout=400) for _, accepted in submitted]

        assert [(j["status"], j["counts"]["completed"]) for j in jobs] == [("completed", 1)] * len(jobs), jobs
        by_worker = running.runs_by_worker()
        assert {j["flow_run_id"] for j in jobs} <= set().union(*by_worker), by_worker
        assert all(runs & {j["flow_run_id"] for j in jobs} for runs in by_worker), f"a worker ran no job: {by_worker}"

        settings = Settings(home=tmp_path / "reader", database_url=database_url,
                            **{k.removeprefix("GRISTMILL_").lower(): v for k, v in s3_env.items()})
        store = open_chunk_store(settings)
        total = 0
        for phrase, accepted in submitted:
            (source_id,) = accepted["source_ids"]
            source = client.get(f"/v1/sources/{source_id}").json()
            chunks = store.list_chunks(library["id"], source_id)
            assert [c.chunk_index for c in chunks] == list(range(source["chunk_count"])), (phrase, source)
            total += source["chunk_count"]
            hit = client.post(f"/v1/libraries/{library['id']}/search", json={"query": phrase, "mode": "keyword", "limit": 1})
            assert hit.json()["results"][0]["source_id"] == source_id, phrase
        assert store.count(library["id"]) == total == client.get(f"/v1/libraries/{library['id']}").json()["chunk_count"]
        assert s3_store.keys(s3_env["GRISTMILL_BLOB_URI"].split("/", 3)[3]), "no blob went to the S3 store"

        # kill -9 of the worker running a job, and of its flow run: the job's lease runs out, the
        # reconciler hands it to a new run, and the worker left takes it.
        web.serve("/slow.html", "<html><body><article><p>The kiln osprey ledger.</p></article></body></html>",
                  content_type="text/html; charset=utf-8", delay=8)
        slow = client.post(f"/v1/libraries/{library['id']}/ingest", json={"url": web.url("/slow.html")}).json()
        lost_run, runner = _wait_for_a_worker_to_run(client, running, slow["job_id"])
        for pid in [*(pid for pid, _ in descendants(runner.pid)), runner.pid]:
            os.kill(pid, signal.SIGKILL)
        done = wait_for_job(client, slow["job_id"], timeout=300)
        assert done["status"] == "completed" and done["chunk_count"] == 1, done
        assert done["flow_run_id"] != lost_run
        survivor = running.runs_by_worker()[1 - running.workers.index(runner)]
        assert done["flow_run_id"] in survivor
        assert [c.chunk_index for c in store.list_chunks(library["id"], slow["source_ids"][0])] == [0]


def _wait_for_a_worker_to_run(client, running, job_id: str, timeout: float = 120):
    """The job's flow run once a worker took it and its fetch is under way, and that worker's process."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "processing":
            for runs, worker in zip(running.runs_by_worker(), running.workers, strict=True):
                if job["flow_run_id"] in runs:
                    return job["flow_run_id"], worker
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
