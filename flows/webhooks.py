"""The deliver-webhooks flow: send what the outbox holds, and how runs of it are started.

A run claims sendable deliveries, sends each subscription's in the order they were recorded
(subscriptions side by side), and claims again until nothing is sendable and it has watched the
outbox for WATCH_SECONDS, or its time is spent. A delivery that keeps failing holds back the rest
of its subscription's until its next attempt, so a dead receiver costs one delivery's attempts per
round. Runs are started by an ingest flow run once it has recorded its job's outcome, and by the
API's sweeper (gristmill/usecases/webhooks.py) whenever a sendable delivery waits that no run
holds; the job never waits for either.
"""

import logging
import threading
import time
from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from gristmill.errors import ServiceUnavailable, WebhookGivenUp
from gristmill.internals import DeploymentRuns, failed_state_exception
from gristmill.settings import Settings, get_settings
from storage import webhooks
from storage.db import session_scope
from tasks.webhook import deliver_task

DELIVERY_DEPLOYMENT = "deliver-webhooks/deliver-webhooks"
SUBSCRIPTIONS_AT_ONCE = 8
CLAIM_BATCH = 100
# A run stops claiming after this, so it holds one of the runner's slots for a bounded time; what
# is left is the next run's.
RUN_BUDGET_SECONDS = 120.0
# A delivery run per job costs a third of a one-note job's CPU again (its fork and Prefect's
# bookkeeping: 2.6 -> 3.5 CPU-seconds per note, bench/bench_webhooks.py). The jobs that end within
# one window share a run instead (its idempotency key), which watches the outbox at least this
# long, polling every WATCH_POLL_SECONDS, so it is still there for the last of them; jobs that end
# further apart than that (a light load) still get a run each.
WATCH_SECONDS = 5.0
WATCH_POLL_SECONDS = 0.5
log = logging.getLogger("gristmill.webhooks")


@task(name="deliver-to-subscription", cache_policy=NO_CACHE, task_run_name="subscription-{subscription_id}")
def deliver_to_subscription(
    subscription_id: str, delivery_ids: list[str], claim_token: str, settings: Settings
) -> dict[str, int]:
    """Send one subscription's claimed deliveries in order; at the first that will be retried
    later, let go of the rest (they wait behind it)."""
    outcome: Counter[str] = Counter()
    for index, delivery_id in enumerate(delivery_ids):
        state = deliver_task(delivery_id, claim_token, settings, return_state=True)
        if state.is_completed():
            outcome[state.result()] += 1
            continue
        if isinstance(failed_state_exception(state), WebhookGivenUp):
            outcome["given_up"] += 1
            continue
        outcome["retrying"] += 1
        held = delivery_ids[index + 1 :]
        if held:
            with session_scope(settings.resolved_database_url) as session:
                webhooks.release_deliveries(session, held, claim_token)
            outcome["held"] += len(held)
        break
    return dict(outcome)


@flow(name="deliver-webhooks", task_runner=ThreadPoolTaskRunner(max_workers=SUBSCRIPTIONS_AT_ONCE))
def deliver_webhooks(watch_seconds: float = WATCH_SECONDS) -> State:
    """Deliver every sendable webhook delivery, and those recorded while it watches (`watch_seconds`
    at least), within RUN_BUDGET_SECONDS."""
    settings = get_settings()
    totals: Counter[str] = Counter()
    started = time.monotonic()
    while time.monotonic() - started < RUN_BUDGET_SECONDS:
        with session_scope(settings.resolved_database_url) as session:
            token, claimed = webhooks.claim_due_deliveries(session, CLAIM_BATCH)
        if not claimed:
            if time.monotonic() - started >= watch_seconds:
                break
            _wait_for_deliveries(settings, until=started + watch_seconds)
            continue
        by_subscription: dict[str, list[str]] = {}
        for delivery_id, subscription_id in claimed:
            by_subscription.setdefault(subscription_id, []).append(delivery_id)
        outcomes = deliver_to_subscription.map(
            list(by_subscription), list(by_subscription.values()), claim_token=unmapped(token), settings=unmapped(settings)
        ).result()
        for outcome in outcomes:
            totals.update(outcome)
    summary = delivery_summary(totals)
    get_run_logger().info(summary)
    return Completed(message=summary, data=dict(totals))


def _wait_for_deliveries(settings: Settings, *, until: float) -> None:
    while time.monotonic() < until:
        with session_scope(settings.resolved_database_url) as session:
            if webhooks.deliveries_waiting(session):
                return
        time.sleep(WATCH_POLL_SECONDS)


def delivery_summary(totals: Counter[str]) -> str:
    if not totals:
        return "nothing to deliver"
    parts = [f"{totals['delivered']} delivered"]
    if totals["retrying"]:
        parts.append(f"{totals['retrying']} failed and will be retried later")
    if totals["held"]:
        parts.append(f"{totals['held']} held behind a failing delivery to the same receiver")
    if totals["given_up"]:
        parts.append(f"{totals['given_up']} given up")
    if totals["skipped"]:
        parts.append(f"{totals['skipped']} no longer ours to send")
    return "; ".join(parts)


# --- starting runs ---------------------------------------------------------------------------------

_runs: dict[str, DeploymentRuns] = {}
_runs_lock = threading.Lock()


def start_delivery_run(idempotency_key: str) -> str:
    """A run of deliver-webhooks (the same run for a key seen before); raises when Prefect cannot take it."""
    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise ServiceUnavailable("PREFECT_API_URL is not set: no Prefect server to deliver webhooks on")
    with _runs_lock:
        runs = _runs.get(api_url) or _runs.setdefault(api_url, DeploymentRuns(api_url))
    return runs.create(DELIVERY_DEPLOYMENT, {}, idempotency_key=idempotency_key)


def request_deliveries(settings: Settings, reason: str) -> str | None:
    """Start a delivery run if a delivery can be sent now, shared by every request with the same
    `reason` within one WATCH_SECONDS window; the run's id, else None.

    Never raises: the events are stored, and the API's sweeper starts a run for them later.
    """
    try:
        with session_scope(settings.resolved_database_url) as session:
            if not webhooks.deliveries_waiting(session):
                return None
        return start_delivery_run(f"{reason}-{int(time.time() // WATCH_SECONDS)}")
    except Exception as error:  # noqa: BLE001 - Prefect away or busy: the sweep covers it
        log.warning("could not start a webhook delivery run yet (the sweep will): %s", error)
        return None
