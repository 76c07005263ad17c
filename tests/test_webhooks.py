"""Completion webhooks against real parts: a Prefect server, SQLite, the ingest flow, and a loopback
HTTP server as the receiver."""

import json
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from sqlmodel import select

from flows.progress import SourceProgress
from flows.webhooks import WATCH_SECONDS, deliver_webhooks
from gristmill.cli.standalone import StandaloneBackend
from gristmill.errors import BlockedUrl, GristmillError
from gristmill.settings import get_settings
from gristmill.usecases import libraries as library_cases
from gristmill.usecases.shapes import SourceSpec
from gristmill.usecases.webhooks import DeliverySweeper, create_subscription
from storage import repository, webhooks
from storage.blobs import open_blob_store
from storage.db import session_scope
from storage.tables import (
    DeliveryStatus,
    IngestJob,
    JobStatus,
    JobTrigger,
    Library,
    Source,
    SourceStatus,
    WebhookDelivery,
    WebhookEvent,
    as_utc,
    utcnow,
)
from tests.http_server import LoopbackServer, RecordedRequest, Reply

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "a-secret-only-the-receiver-knows"


def readme_verify():
    """The receiver's `verify` exactly as the README shows it."""
    text = README.read_text()
    block = text[text.index("<!-- webhook-verify:start -->") : text.index("<!-- webhook-verify:end -->")]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the README's own example, run as a reader would
    return namespace["verify"]


@pytest.fixture
def home(gristmill_home: Path, prefect_server: str) -> Path:
    return gristmill_home


@pytest.fixture
def receiver():
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def delivery_deployment(prefect_server: str) -> str:
    """The deliver-webhooks deployment registered as the runner registers it; no runner serves it."""
    return str(deliver_webhooks.to_deployment(name="deliver-webhooks").apply())


def database_url() -> str:
    return get_settings().resolved_database_url


def a_library(name: str = "hooks") -> Library:
    with session_scope(database_url()) as session:
        workspace = repository.ensure_workspace(session)
        return repository.find_library_by_name(session, workspace.id, name) or library_cases.create_library(
            session, get_settings(), workspace.id, name
        )


def subscribe(url: str, events=("source_ingested", "job_finished"), library: Library | None = None) -> str:
    with session_scope(database_url()) as session:
        workspace = repository.ensure_workspace(session)
        return create_subscription(
            session, get_settings(), workspace.id, url=url, events=list(events), secret=SECRET,
            library_id=library.id if library else None,
        ).id


def a_failed_source(library: Library, message: str = "the page is gone") -> tuple[str, str]:
    """A job of one source that the flow has failed, recorded as the flow records it: (job, source)."""
    with session_scope(database_url()) as session:
        source = Source(workspace_id=library.workspace_id, library_id=library.id, origin="url", uri="https://example.com/gone")
        job = repository.create_job(session, library, [source])
    SourceProgress(database_url(), source.id, open_blob_store(get_settings())).fail(GristmillError(message, code="http_404"))
    return job.id, source.id


def deliveries(subscription_id: str) -> list[WebhookDelivery]:
    with session_scope(database_url()) as session:
        rows, _ = webhooks.list_deliveries(session, subscription_id, page=1, page_size=100)
    return list(reversed(rows))  # oldest first


def events() -> list[dict]:
    with session_scope(database_url()) as session:
        rows = session.exec(select(WebhookEvent).order_by(WebhookEvent.created_at)).all()
    return [json.loads(row.body) for row in rows]


def move_next_attempts_to_the_past(subscription_id: str) -> None:
    """Time passes: every pending delivery of the subscription is due."""
    with session_scope(database_url()) as session:
        for row in session.exec(select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)):
            row.next_attempt_at = utcnow() - timedelta(seconds=1)
            session.add(row)
        session.commit()


def deliver_now():
    """A delivery run that ends once nothing is left to send (the deployment's runs also watch a while)."""
    return deliver_webhooks(watch_seconds=0, return_state=True)


def deployment_runs(deployment_id: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[UUID(deployment_id)]))
        )


def recorded_task_run(flow_run_id: UUID, name: str, timeout: float = 30):
    """The task run once Prefect's server has recorded its final state (it records them as they arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
        found = [run for run in runs if run.name == name and run.state and run.state.is_final()]
        if found or time.monotonic() > deadline:
            assert found, f"no final task run {name} in flow run {flow_run_id}: {[r.name for r in runs]}"
            return found[0]
        time.sleep(0.2)


def test_an_ingest_is_announced_signed_in_a_way_the_readme_code_verifies(
    home: Path, receiver: LoopbackServer, delivery_deployment: str
) -> None:
    receiver.serve("/hook", "thanks")
    library = a_library("handbook")
    subscription = subscribe(receiver.url("/hook"), library=library)
    note = SourceSpec(origin="inline", data=b"Gristmill grinds grain.", content_type="text/plain", title="grain.txt", inline=True)

    before = time.time()
    summary = StandaloneBackend(get_settings()).ingest("handbook", [note], show_progress=False)
    after = time.time()

    assert summary.status == "completed"
    with session_scope(database_url()) as session:
        job = session.get(IngestJob, summary.job_id)
    # The flow run, its job recorded, asked for a delivery run (the one of its WATCH_SECONDS window)
    # and did not wait for it.
    windows = {f"after-jobs-{w}" for w in range(int(before // WATCH_SECONDS), int(after // WATCH_SECONDS) + 1)}
    assert windows & {run.idempotency_key for run in deployment_runs(delivery_deployment)}
    assert receiver.requests == []

    state = deliver_now()

    assert state.is_completed() and state.message == "2 delivered"
    source_event, job_event = [json.loads(r.body) for r in receiver.requests]
    source_id = summary.sources[0].source_id
    assert source_event["type"] == "source_ingested" and source_event["data"]["source_id"] == source_id
    assert {k: source_event["data"][k] for k in ("status", "job_id", "library_id", "title", "chunk_count", "error")} == {
        "status": "completed", "job_id": job.id, "library_id": library.id, "title": "grain.txt", "chunk_count": 1, "error": None,
    }
    assert job_event["type"] == "job_finished" and job_event["data"]["job_id"] == job.id
    assert job_event["data"]["status"] == "completed" and job_event["data"]["trigger"] == "request"
    assert job_event["data"]["counts"] == {"completed": 1, "partial": 0, "failed": 0, "duplicate": 0, "removed": 0, "cancelled": 0}
    assert job_event["data"]["finished_at"] is not None

    verify = readme_verify()
    for request, event in zip(receiver.requests, (source_event, job_event)):
        assert request.method == "POST" and request.headers["content-type"] == "application/json"
        assert request.headers["gristmill-event"] == event["type"]
        assert request.headers["gristmill-event-id"] == event["id"]
        assert request.headers["gristmill-delivery-attempt"] == "1"
        assert verify(SECRET, request.headers["gristmill-signature"], request.body)
        assert not verify(SECRET, request.headers["gristmill-signature"], request.body.replace(b"completed", b"failed"))
        assert not verify("another-secret-of-sixteen", request.headers["gristmill-signature"], request.body)
    stale = f"t={int(time.time()) - 3600}," + receiver.requests[0].headers["gristmill-signature"].split(",")[1]
    assert not verify(SECRET, stale, receiver.requests[0].body)

    assert [(d.status, d.attempts, d.last_status_code) for d in deliveries(subscription)] == [
        (DeliveryStatus.delivered, 1, 200), (DeliveryStatus.delivered, 1, 200),
    ]
    # Delivered means done: another run sends nothing again.
    assert deliver_now().message == "nothing to deliver"
    assert len(receiver.requests) == 2


def test_a_receiver_answering_500_then_200_gets_the_event_twice_after_a_back_off(
    home: Path, receiver: LoopbackServer
) -> None:
    arrivals: list[float] = []
    replies = [Reply(500, b"busy"), Reply(200, b"ok")]

    def flaky(_request: RecordedRequest) -> Reply:
        arrivals.append(time.monotonic())
        return replies[min(len(arrivals), len(replies)) - 1]

    receiver.route("/flaky", flaky)
    library = a_library()
    subscription = subscribe(receiver.url("/flaky"), events=["source_ingested"])
    a_failed_source(library)

    state = deliver_now()

    first, second = receiver.requests
    assert first.body == second.body and first.headers["gristmill-event-id"] == second.headers["gristmill-event-id"]
    assert [first.headers["gristmill-delivery-attempt"], second.headers["gristmill-delivery-attempt"]] == ["1", "2"]
    assert arrivals[1] - arrivals[0] >= webhooks.QUICK_RETRY_DELAYS_SECONDS[0]
    [delivery] = deliveries(subscription)
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        DeliveryStatus.delivered, 2, 200, None,
    )
    # The Prefect UI tells it too: the delivery's task run ran twice and completed.
    attempts = recorded_task_run(state.state_details.flow_run_id, f"webhook-{delivery.id}")
    assert attempts.state.is_completed() and attempts.run_count == 2
    assert state.message == "1 delivered"


def test_a_receiver_that_keeps_failing_is_retried_later_and_its_other_events_wait_behind(
    home: Path, receiver: LoopbackServer
) -> None:
    receiver.serve("/down", "broken", status=500)
    library = a_library()
    subscription = subscribe(receiver.url("/down"), events=["source_ingested"])
    a_failed_source(library, "first")
    a_failed_source(library, "second")

    state = deliver_now()

    assert state.is_completed()
    assert state.message == "0 delivered; 1 failed and will be retried later; 1 held behind a failing delivery to the same receiver"
    assert receiver.hits("/down") == webhooks.ATTEMPTS_PER_RUN  # the first event only; the second was not tried
    first, second = deliveries(subscription)
    assert (first.status, first.attempts, first.last_status_code, first.last_error) == (
        DeliveryStatus.pending, 3, 500, "answered 500: broken",
    )
    assert as_utc(first.next_attempt_at) - as_utc(first.last_attempt_at) == webhooks.LATER_RETRY_DELAYS[0]
    assert (second.status, second.attempts) == (DeliveryStatus.pending, 0)
    with session_scope(database_url()) as session:
        assert not webhooks.deliveries_waiting(session)  # nothing is due until the retry is

    receiver.serve("/down", "back")
    move_next_attempts_to_the_past(subscription)
    assert deliver_now().message == "2 delivered"
    later = [json.loads(r.body)["data"]["error"] for r in receiver.requests[webhooks.ATTEMPTS_PER_RUN :]]
    assert later == ["first", "second"]  # in the order they were recorded
    assert [(d.status, d.attempts) for d in deliveries(subscription)] == [
        (DeliveryStatus.delivered, 4), (DeliveryStatus.delivered, 1),
    ]


def test_a_run_watches_the_outbox_for_the_jobs_that_end_while_it_runs(home: Path, receiver: LoopbackServer) -> None:
    receiver.serve("/hook", "ok")
    subscribe(receiver.url("/hook"), events=["source_ingested"])
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(state=deliver_webhooks(watch_seconds=4, return_state=True)))
    run.start()
    time.sleep(1.5)  # the run found nothing and watches
    assert receiver.requests == []
    a_failed_source(a_library(), "ended while the run watched")
    run.join(timeout=60)
    assert outcome["state"].message == "1 delivered"
    assert [json.loads(r.body)["data"]["error"] for r in receiver.requests] == ["ended while the run watched"]


def test_a_delivery_still_failing_a_day_after_its_event_is_given_up(home: Path, receiver: LoopbackServer) -> None:
    receiver.serve("/down", "broken", status=503)
    subscription = subscribe(receiver.url("/down"), events=["source_ingested"])
    a_failed_source(a_library())
    with session_scope(database_url()) as session:
        [row] = session.exec(select(WebhookDelivery)).all()
        row.created_at = utcnow() - webhooks.GIVE_UP_AFTER
        session.add(row)
        session.commit()

    assert deliver_now().message == "0 delivered; 1 given up"
    assert receiver.hits("/down") == 1  # given up: no quick retries either
    [delivery] = deliveries(subscription)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 1, 503)


def test_blocked_urls_are_refused_when_subscribing_and_when_delivering(
    home: Path, receiver: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/hook", "http://localhost:8080/hook",
                "http://[::ffff:192.168.0.1]/hook", "http://metadata.google.internal/"):
        with pytest.raises(BlockedUrl) as refused:
            subscribe(url)
        assert refused.value.status == 400 and refused.value.code == "blocked_url"

    receiver.serve("/hook", "ok")
    subscription = subscribe(receiver.url("/hook"), events=["source_ingested"])
    a_failed_source(a_library())
    # The operator stops allowing loopback: each attempt checks the address it would connect to.
    monkeypatch.delenv("GRISTMILL_FETCH_ALLOWED_NETWORKS")
    get_settings.cache_clear()

    assert deliver_now().message == "0 delivered; 1 given up"
    assert receiver.requests == []
    [delivery] = deliveries(subscription)
    assert delivery.status == DeliveryStatus.failed and delivery.attempts == 1
    assert "127.0.0.1, a loopback address" in delivery.last_error


def test_an_event_whose_writer_died_before_starting_a_delivery_run_is_sent_by_the_next_sweep(
    home: Path, receiver: LoopbackServer, delivery_deployment: str
) -> None:
    receiver.serve("/hook", "ok")
    subscription = subscribe(receiver.url("/hook"))
    a_failed_source(a_library())  # what a flow run records before it would ask for a run, and then dies
    sweeper = DeliverySweeper(get_settings())

    run_id = sweeper.sweep()

    assert run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    assert str(run.deployment_id) == delivery_deployment and run.idempotency_key.startswith("sweep-")
    assert sweeper.sweep() is None  # that run has not finished: no second one piles up behind it
    # What the run does (tests/test_service.py watches the service's runner do it):
    state = deliver_now()
    assert state.is_completed() and state.message == "2 delivered"
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["source_ingested", "job_finished"]
    assert [d.status for d in deliveries(subscription)] == [DeliveryStatus.delivered, DeliveryStatus.delivered]
    assert sweeper.sweep() is None  # nothing waits


def test_two_claimers_never_hold_one_delivery_and_a_lapsed_claim_is_taken_again(home: Path) -> None:
    library = a_library()
    quiet = [subscribe(f"http://127.0.0.1:9/hook-{i}", events=["source_ingested"]) for i in range(3)]
    a_failed_source(library)
    with session_scope(database_url()) as session:
        first_token, first = webhooks.claim_due_deliveries(session, 2)
        second_token, second = webhooks.claim_due_deliveries(session, 10)
        third_token, third = webhooks.claim_due_deliveries(session, 10)
    assert len(first) == 2 and len(second) == 1 and third == []
    assert {d for d, _ in first} | {d for d, _ in second} == {d.id for s in quiet for d in deliveries(s)}
    lapsed, _ = first[0]
    with session_scope(database_url()) as session:
        assert webhooks.take_delivery(session, lapsed, second_token) is None  # another claim's delivery
        row = session.get(WebhookDelivery, lapsed)
        row.claimed_until = utcnow() - timedelta(seconds=1)  # its run died
        session.add(row)
        session.commit()
        token, again = webhooks.claim_due_deliveries(session, 10)
        assert [d for d, _ in again] == [lapsed]
        assert webhooks.take_delivery(session, lapsed, first_token) is None  # the dead run's claim is void
        assert webhooks.take_delivery(session, lapsed, token).attempt == 1


def test_each_final_state_is_announced_once_and_only_to_who_listens(home: Path) -> None:
    library, other_library = a_library("one"), a_library("two")
    workspace_wide = subscribe("http://127.0.0.1:9/all")
    jobs_of_one = subscribe("http://127.0.0.1:9/jobs", events=["job_finished"], library=library)
    subscribe("http://127.0.0.1:9/other", library=other_library)
    with session_scope(database_url()) as session:
        kept = Source(workspace_id=library.workspace_id, library_id=library.id, origin="inline")
        repeated = Source(workspace_id=library.workspace_id, library_id=library.id, origin="inline", status=SourceStatus.duplicate)
        job = repository.create_job(session, library, [kept, repeated])  # a duplicate found at submission
    assert [(e["type"], e["data"]["source_id"], e["data"]["status"]) for e in events()] == [
        ("source_ingested", repeated.id, "duplicate")
    ]
    with session_scope(database_url()) as session:
        repository.update_source(session, kept.id, status=SourceStatus.embedding)
        repository.update_source(session, kept.id, status=SourceStatus.completed, chunk_count=3)
        repository.update_source(session, kept.id, progress_current=3)  # still completed: no news
        for _ in range(3):
            repository.refresh_job_progress(session, job.id)  # every recount after the first finds it finished
        repository.fail_job(session, job.id, "a late crash hook")  # nothing unfinished left to fail
    assert [(e["type"], e["data"]["status"]) for e in events()] == [
        ("source_ingested", "duplicate"), ("source_ingested", "completed"), ("job_finished", "completed")
    ]
    assert len(deliveries(workspace_wide)) == 3 and [d.event_type for d in deliveries(jobs_of_one)] == ["job_finished"]

    # Two sources finishing at once both see their job end: the news is recorded once.
    with session_scope(database_url()) as session:
        raced = repository.create_job(session, library, [])
    with session_scope(database_url()) as one, session_scope(database_url()) as two:
        racers = [session.get(IngestJob, raced.id) for session in (one, two)]  # both read it unfinished
        for session, racer in zip((one, two), racers):
            racer.status = JobStatus.completed
            webhooks.record_job_finished(session, racer)
            session.commit()
    assert [e["data"].get("job_id") for e in events() if e["type"] == "job_finished"] == [job.id, raced.id]


def test_a_resync_announces_only_what_changed_or_failed(home: Path) -> None:
    library = a_library()
    subscription = subscribe("http://127.0.0.1:9/all")
    with session_scope(database_url()) as session:
        unchanged = Source(workspace_id=library.workspace_id, library_id=library.id, origin="url", uri="https://example.com/a")
        quiet_job = repository.create_job(session, library, [unchanged], trigger=JobTrigger.sync)
        repository.update_source(session, unchanged.id, status=SourceStatus.duplicate)
        repository.refresh_job_progress(session, quiet_job.id)
        moved = Source(workspace_id=library.workspace_id, library_id=library.id, origin="url", uri="https://example.com/b")
        busy_job = repository.create_job(session, library, [moved], trigger=JobTrigger.sync)
        repository.update_source(session, moved.id, status=SourceStatus.completed, chunk_count=2)
        repository.refresh_job_progress(session, busy_job.id)
    assert [(e["type"], e["data"]["status"]) for e in events()] == [("source_ingested", "completed"), ("job_finished", "completed")]
    assert events()[1]["data"]["trigger"] == "sync" and len(deliveries(subscription)) == 2

    # A re-sync with a failure and an unchanged page ends partial; forgetting the unchanged one makes
    # the recount say failed, which is no new end of the job.
    with session_scope(database_url()) as session:
        gone = Source(workspace_id=library.workspace_id, library_id=library.id, origin="url", uri="https://example.com/c")
        same = Source(workspace_id=library.workspace_id, library_id=library.id, origin="url", uri="https://example.com/d")
        mixed_job = repository.create_job(session, library, [gone, same], trigger=JobTrigger.sync)
        repository.update_source(session, gone.id, status=SourceStatus.failed, error="answered 404")
        repository.update_source(session, same.id, status=SourceStatus.duplicate)
        assert repository.refresh_job_progress(session, mixed_job.id).status == JobStatus.partial
        # As the sync settles its pages: the unchanged page's fresh row goes, the job is recounted.
        repository.delete_source(session, repository.find_source(session, same.id))
        repository.forget_job_if_empty(session, mixed_job.id)
        assert repository.find_job(session, mixed_job.id).status == JobStatus.failed
    assert [(e["type"], e["data"]["status"]) for e in events()][2:] == [("source_ingested", "failed"), ("job_finished", "partial")]


def test_deleting_a_webhook_or_its_library_removes_the_subscription_and_its_log(home: Path) -> None:
    library = a_library("short-lived")
    scoped = subscribe("http://127.0.0.1:9/scoped", library=library)
    kept = subscribe("http://127.0.0.1:9/kept")
    a_failed_source(library)
    with session_scope(database_url()) as session:
        workspace_id = library.workspace_id
        webhooks.delete_subscription(session, webhooks.get_subscription(session, workspace_id, kept))
        assert len(session.exec(select(WebhookEvent)).all()) == 2  # the scoped subscription still waits for both
        repository.delete_library(session, repository.get_library(session, workspace_id, library.id))
        assert webhooks.list_subscriptions(session, workspace_id) == []
        assert session.exec(select(WebhookDelivery)).all() == [] and session.exec(select(WebhookEvent)).all() == []
        with pytest.raises(GristmillError) as missing:
            webhooks.get_subscription(session, workspace_id, scoped)
    assert missing.value.code == "webhook_not_found" and missing.value.status == 404
