"""Webhook subscriptions as a caller makes them, and the sweeper that keeps deliveries moving."""

import logging
import secrets
import threading
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from sqlmodel import Session

from connectors.outbound import policy_for
from flows.webhooks import RUN_BUDGET_SECONDS, request_deliveries
from gristmill.settings import Settings
from storage import repository, webhooks
from storage.tables import WebhookSubscription, as_utc, utcnow

SECRET_PREFIX = "whsec_"
log = logging.getLogger("gristmill.webhooks")


def create_subscription(
    session: Session,
    settings: Settings,
    workspace_id: str,
    *,
    url: str,
    events: list[str],
    secret: str | None = None,
    library_id: str | None = None,
    description: str | None = None,
) -> WebhookSubscription:
    """Subscribe `url` to `events` of a library (or, without one, of the whole workspace).

    The URL must be one Gristmill may send to, as far as can be told now (BlockedUrl otherwise);
    each delivery checks the address it connects to again. Without a secret, one is made.
    """
    policy_for(settings).check_url(url)
    if library_id is not None:
        repository.get_library(session, workspace_id, library_id)
    return webhooks.create_subscription(
        session,
        workspace_id,
        url=url,
        events=list(dict.fromkeys(events)),
        secret=secret or SECRET_PREFIX + secrets.token_urlsafe(32),
        library_id=library_id,
        description=description,
    )


class DeliverySweeper:
    """Starts a delivery run whenever a delivery could be sent that no run holds: events whose writer
    died before starting one, and deliveries whose later attempt is due. Checks every
    `webhook_sweep_interval_seconds` in a daemon thread of the API process.

    While the run it started last has not begun claiming (or runs, for less than a run may take),
    it starts no other: with the runner down, one run waits in Prefect, not one per sweep.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last_run_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gristmill-webhook-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sweep(self) -> str | None:
        """One look; the id of the run it started, if it started one."""
        if self.last_run_id and self._still_coming(self.last_run_id):
            return None
        run_id = request_deliveries(self.settings, "sweep")
        if run_id:
            self.last_run_id = run_id
        return run_id

    def _still_coming(self, flow_run_id: str) -> bool:
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:  # deleted in the Prefect UI
            return False
        state = run.state.type.value if run.state else None
        if state in ("SCHEDULED", "PENDING"):
            return True
        if state == "RUNNING" and run.start_time is not None:
            # Longer than a run claims plus a claim lasts: its process is gone, whatever Prefect says.
            return utcnow() - as_utc(run.start_time) < timedelta(seconds=RUN_BUDGET_SECONDS) + webhooks.CLAIM_LEASE
        return False

    def _loop(self) -> None:
        while True:
            try:
                started = self.sweep()
                if started:
                    log.info("started webhook delivery run %s", started)
            except Exception:  # Prefect briefly unreachable: look again next round
                log.exception("webhook sweep failed")
            if self._stop.wait(self.settings.webhook_sweep_interval_seconds):
                return
