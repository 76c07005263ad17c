"""The webhook stage: one signed POST of one delivery to its receiver, recorded whatever the outcome.

`deliver` is the plain function; `deliver_task` wraps it with the quick retries of the schedule in
storage/webhooks.py. The request goes through connectors/outbound.py, so a receiver is held to the
addresses URL sources may reach, checked again on every attempt against the address connected to.
"""

import hashlib
import hmac
import time

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.outbound import policy_for, send
from gristmill.errors import BlockedUrl, GristmillError, WebhookDeliveryFailed, WebhookGivenUp
from gristmill.settings import Settings
from gristmill.tls import tls_context
from storage import webhooks
from storage.db import session_scope
from storage.tables import DeliveryStatus
from storage.webhooks import DeliveryAttempt
from tasks.retries import retry_if_retryable

SIGNATURE_HEADER = "Gristmill-Signature"
USER_AGENT = "Gristmill-Webhooks/0.1"
ERROR_BODY_BYTES = 200  # of a refusing answer, kept in the delivery log to say why


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: a receiver recomputes it with the
    secret and refuses old timestamps, so a captured request cannot be replayed later."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(delivery_id: str, claim_token: str, settings: Settings) -> str:
    """Send the delivery once, if it is still this claim's to send: "delivered" or "skipped".

    Raises WebhookDeliveryFailed when the receiver failed and the delivery is retried later, and
    WebhookGivenUp when it is not (a day of failures, or a refused address).
    """
    with session_scope(settings.resolved_database_url) as session:
        attempt = webhooks.take_delivery(session, delivery_id, claim_token)
    if attempt is None:
        return "skipped"
    status_code, error, refused = _post(attempt, settings)
    with session_scope(settings.resolved_database_url) as session:
        recorded = webhooks.record_attempt(
            session, delivery_id, claim_token, delivered=error is None, status_code=status_code, error=error, give_up=refused
        )
    if recorded is None:  # the subscription was deleted while we sent
        return "skipped"
    if recorded.status == DeliveryStatus.delivered:
        return "delivered"
    where = f"{attempt.event_type} {attempt.event_id} to {attempt.url}"
    if recorded.status == DeliveryStatus.failed:
        raise WebhookGivenUp(f"gave up delivering {where} after {recorded.attempts} attempt(s): {error}")
    raise WebhookDeliveryFailed(f"attempt {recorded.attempts} of delivering {where} failed: {error}")


def _post(attempt: DeliveryAttempt, settings: Settings) -> tuple[int | None, str | None, bool]:
    """(status code, error or None, whether the address is refused)."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Gristmill-Event": attempt.event_type,
        "Gristmill-Event-Id": attempt.event_id,
        "Gristmill-Delivery-Attempt": str(attempt.attempt),
        SIGNATURE_HEADER: signature(attempt.secret, timestamp, attempt.body),
    }
    limit = settings.webhook_timeout_seconds
    timeout = httpx.Timeout(limit, connect=min(5.0, limit), pool=min(5.0, limit))
    try:
        with httpx.Client(verify=tls_context()) as http:
            response = send(http, policy_for(settings), "POST", attempt.url, headers=headers, content=attempt.body, timeout=timeout)
            try:
                if 200 <= response.status_code < 300:
                    return response.status_code, None, False
                said = _start_of(response)
            finally:
                response.close()
    except BlockedUrl as error:
        return None, error.message, True
    except GristmillError as error:  # e.g. the host name does not resolve (now)
        return None, error.message, False
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, False
    if 300 <= response.status_code < 400:
        return response.status_code, f"answered {response.status_code} (redirects are not followed)", False
    return response.status_code, f"answered {response.status_code}" + (f": {said}" if said else ""), False


def _start_of(response: httpx.Response) -> str:
    try:
        data = b""
        for piece in response.iter_bytes():
            data += piece
            if len(data) >= ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        return ""
    return data[:ERROR_BODY_BYTES].decode("utf-8", "replace").strip()


# The quick retries of the schedule: within the run, each attempt a retry of this task in the UI.
deliver_task = task(
    name="deliver-webhook",
    retries=len(webhooks.QUICK_RETRY_DELAYS_SECONDS),
    retry_delay_seconds=list(webhooks.QUICK_RETRY_DELAYS_SECONDS),
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
    persist_result=False,
    task_run_name="webhook-{delivery_id}",
)(deliver)
