"""Creating ingest flow runs with one request to Prefect's REST API, its conflicts retried at once."""

import base64
import threading
import time
from functools import lru_cache

import httpx
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL
from prefect.states import Scheduled, to_state_create

from gristmill.errors import ServiceUnavailable
from gristmill.tls import tls_context

INGEST_DEPLOYMENT = "ingest/ingest"
START_RETRY_DELAYS_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
_start_lock = threading.Lock()


def start_flow_run(job_id: str) -> str:
    """A flow run of the ingest deployment for `job_id`. The job id is the idempotency key, so
    starting it again after an answer that got lost returns the same run instead of a second one.

    One start at a time per process: concurrent creates mostly conflict with each other in
    Prefect's SQLite (a write after a read in one transaction fails at once when another write got
    in between). Such a conflict is answered 503 and passes in milliseconds, but Prefect's client
    sleeps 2 s after any 503, even with retries off, which under 20 concurrent clients made the API
    take 10-14 s to accept a note (bench/bench_latency.py). So the run is created with one plain
    request to Prefect's REST API, with Prefect's own request schema, retried here quickly for ~3 s
    in all; anything longer (Prefect down) is left to the reconciler, so a request never hangs.
    """
    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise ServiceUnavailable("PREFECT_API_URL is not set: no Prefect server to start the ingest flow on")
    body = DeploymentFlowRunCreate(
        parameters={"job_id": job_id}, idempotency_key=f"ingest-{job_id}", state=to_state_create(Scheduled())
    ).model_dump(mode="json", exclude_unset=True)
    deployment = _ingest_deployment(api_url)
    with _start_lock:
        for delay in (*START_RETRY_DELAYS_SECONDS, None):
            response = deployment.create_flow_run(body)
            if response.status_code != 503 or delay is None:
                break
            time.sleep(delay)
    response.raise_for_status()
    return str(response.json()["id"])


class _IngestDeployment:
    """The ingest deployment in Prefect's REST API, over one kept-alive connection, authenticated as
    Prefect's own client would be."""

    def __init__(self, api_url: str) -> None:
        headers = {}
        if auth := PREFECT_API_AUTH_STRING.value():
            headers["Authorization"] = "Basic " + base64.b64encode(auth.get_secret_value().encode()).decode()
        elif key := PREFECT_API_KEY.value():
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self.http = httpx.Client(
            base_url=api_url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(30, connect=5), verify=tls_context()
        )
        self._id: str | None = None

    def create_flow_run(self, body: dict) -> httpx.Response:
        if self._id is None:
            found = self.http.get(f"deployments/name/{INGEST_DEPLOYMENT}")
            found.raise_for_status()
            self._id = found.json()["id"]
        response = self.http.post(f"deployments/{self._id}/create_flow_run", json=body)
        if response.status_code == 404:
            self._id = None  # registered again under a new id: look it up next time
        return response


@lru_cache(maxsize=4)
def _ingest_deployment(api_url: str) -> _IngestDeployment:
    return _IngestDeployment(api_url)
