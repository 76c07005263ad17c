"""Webhooks in SQL: subscriptions, the outbox of events, one delivery row per event and subscription.

An event is written in the transaction that records the final state it announces (the callers
commit), so it exists exactly when that state does, whoever dies afterwards. Delivery runs claim
due rows for a while; a claim that lapses (its run died) is the next run's. Nothing here sends.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, inspect, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, select

from gristmill.errors import NotFound
from storage.tables import (
    DeliveryStatus,
    IngestJob,
    JobKind,
    JobTrigger,
    Source,
    SourceStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventType,
    WebhookSubscription,
    as_utc,
    new_id,
    utcnow,
)

# The retry schedule, all of it. A delivery run tries a delivery, then again after each of the
# quick delays (Prefect task retries, seen in the UI); a delivery still failing waits for a later
# run: 1 min after the first run's attempts, then 5 min, 30 min, 2 h, and 6 h from then on. A day
# after it was recorded, its next failure gives it up. Every failed attempt records the later time
# at once, so a run that dies between quick retries leaves its delivery to the next sweep.
QUICK_RETRY_DELAYS_SECONDS = (1, 5)
ATTEMPTS_PER_RUN = len(QUICK_RETRY_DELAYS_SECONDS) + 1
LATER_RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
GIVE_UP_AFTER = timedelta(hours=24)
# Far longer than one attempt (GRISTMILL_WEBHOOK_TIMEOUT_SECONDS) and the quick delays; each attempt
# extends it for the deliveries its run still holds of that subscription.
CLAIM_LEASE = timedelta(minutes=5)
EVENT_ID_NAMESPACE = uuid.UUID("6a1f3c2e-58b4-4d0e-9a57-2f1c0d7e9b11")


# --- the outbox: called where final states are recorded, inside their transactions --------------


def record_source_final(session: Session, source: Source, job: IngestJob | None = None) -> None:
    """Queue `source_ingested` for the subscriptions that want it, if `source` became final in this
    unit of work. A re-sync's unchanged source (forgotten right after) announces nothing."""
    if not _became_final(source):
        return
    job = job or (session.get(IngestJob, source.job_id) if source.job_id else None)
    if job is not None and job.trigger == JobTrigger.sync and source.status == SourceStatus.duplicate:
        return
    # Once per outcome of a source in a job: a retried source (a new job), or a job run again,
    # announces its new outcome; two writers of the same outcome record it once.
    occasion = f"{source.id}:{source.job_id}:{source.status.value}"
    _record(session, WebhookEventType.source_ingested, occasion, source.workspace_id, source.library_id, source.id, source_data(source))


def record_job_finished(session: Session, job: IngestJob) -> None:
    """Queue `job_finished` for the subscriptions that want it, if `job` became final in this unit of
    work. A re-sync that changed nothing and failed nothing announces nothing."""
    if not _became_final(job):
        return
    if job.trigger == JobTrigger.sync and job.completed_count + job.partial_count + job.failed_count == 0:
        return
    # Once per outcome of a job's flow run: two sources finishing at once both see the job end.
    occasion = f"{job.id}:{job.flow_run_id}:{job.status.value}"
    _record(session, WebhookEventType.job_finished, occasion, job.workspace_id, job.library_id, job.id, job_data(job))


def source_data(source: Source) -> dict[str, Any]:
    return {
        "source_id": source.id,
        "library_id": source.library_id,
        "job_id": source.job_id,
        "status": source.status.value,
        "title": source.title,
        "origin": source.origin,
        "uri": source.uri,
        "external_id": source.external_id,
        "content_type": source.content_type,
        "content_format": source.content_format,
        "content_hash": source.content_hash,
        "size_bytes": source.size_bytes,
        "chunk_count": source.chunk_count,
        "token_count": source.token_count,
        "page_count": source.page_count,
        "warnings": list(source.warnings or []),
        "error": source.error,
        "error_code": source.error_code,
        "duplicate_of": source.duplicate_of,
        "metadata": source.metadata_,
        "created_at": _iso(source.created_at),
        "processed_at": _iso(source.processed_at),
    }


def job_data(job: IngestJob) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "library_id": job.library_id,
        "kind": JobKind(job.kind).value,
        "status": job.status.value,
        "trigger": job.trigger.value,
        "progress": {"current": job.progress_current, "total": job.progress_total},
        "counts": {
            "completed": job.completed_count,
            "partial": job.partial_count,
            "failed": job.failed_count,
            "duplicate": job.duplicate_count,
            "removed": job.removed_count,
            "cancelled": job.cancelled_count,
        },
        "chunk_count": job.chunk_count,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
    }


def _became_final(row: Source | IngestJob) -> bool:
    """Whether the row's status is final now and was not when this unit of work began (a new row
    counts as not final before): a recount of a finished job announces nothing again."""
    if not row.status.is_final:
        return False
    state = inspect(row)
    if state.transient or state.pending:
        return True
    history = state.attrs.status.history
    if not history.added:
        return False
    return not history.deleted or not type(row.status)(history.deleted[0]).is_final


def _record(
    session: Session,
    event_type: WebhookEventType,
    occasion: str,
    workspace_id: str,
    library_id: str,
    subject_id: str,
    data: dict[str, Any],
) -> None:
    subscriptions = [
        s for s in session.exec(
            select(WebhookSubscription).where(
                WebhookSubscription.workspace_id == workspace_id,
                or_(col(WebhookSubscription.library_id).is_(None), WebhookSubscription.library_id == library_id),
            )
        )
        if event_type.value in s.events
    ]
    if not subscriptions:  # nobody listens: nothing is written
        return
    now = utcnow()
    # The id follows from the occasion, so a second writer of the same news inserts nothing; and
    # never raises, which would undo the caller's transaction, the final state with it.
    event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type.value}:{occasion}"))
    body = json.dumps(
        {"id": event_id, "type": event_type.value, "created_at": _iso(now), "workspace_id": workspace_id, "data": data},
        separators=(",", ":"),
    )
    event = {
        "id": event_id, "workspace_id": workspace_id, "library_id": library_id, "type": event_type,
        "subject_id": subject_id, "body": body, "created_at": now,
    }
    if not _insert_new(session, WebhookEvent, [event]):
        return
    deliveries = [
        {
            "id": new_id(), "subscription_id": s.id, "event_id": event_id, "event_type": event_type,
            "status": DeliveryStatus.pending, "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
        }
        for s in subscriptions
    ]
    _insert_new(session, WebhookDelivery, deliveries)


def _insert_new(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING: how many of `rows` were new."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return session.execute(insert(model.__table__).values(rows).on_conflict_do_nothing()).rowcount


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


# --- subscriptions ---------------------------------------------------------------------------------


def create_subscription(
    session: Session,
    workspace_id: str,
    *,
    url: str,
    events: list[str],
    secret: str,
    library_id: str | None = None,
    description: str | None = None,
) -> WebhookSubscription:
    subscription = WebhookSubscription(
        workspace_id=workspace_id, library_id=library_id, url=url, events=events, secret=secret, description=description
    )
    session.add(subscription)
    session.commit()
    return subscription


def list_subscriptions(session: Session, workspace_id: str) -> list[WebhookSubscription]:
    query = select(WebhookSubscription).where(WebhookSubscription.workspace_id == workspace_id)
    return list(session.exec(query.order_by(WebhookSubscription.created_at, WebhookSubscription.id)))


def get_subscription(session: Session, workspace_id: str, subscription_id: str) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.workspace_id != workspace_id:
        raise NotFound(f"webhook {subscription_id} not found", code="webhook_not_found")
    return subscription


def delete_subscription(session: Session, subscription: WebhookSubscription) -> None:
    """The subscription, its deliveries (sent or not) and the events nobody else waits for."""
    _delete_subscriptions(session, [subscription.id])
    session.commit()


def delete_library_subscriptions(session: Session, library_id: str) -> None:
    """Part of deleting a library (the caller commits): the subscriptions scoped to it go too."""
    ids = list(session.exec(select(WebhookSubscription.id).where(WebhookSubscription.library_id == library_id)))
    if ids:
        _delete_subscriptions(session, ids)


def _delete_subscriptions(session: Session, subscription_ids: list[str]) -> None:
    event_ids = set(
        session.exec(select(WebhookDelivery.event_id).where(col(WebhookDelivery.subscription_id).in_(subscription_ids)))
    )
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.subscription_id).in_(subscription_ids)))
    session.execute(delete(WebhookSubscription).where(col(WebhookSubscription.id).in_(subscription_ids)))
    if event_ids:
        still_wanted = select(WebhookDelivery.event_id).where(col(WebhookDelivery.event_id).in_(event_ids))
        session.execute(
            delete(WebhookEvent).where(col(WebhookEvent.id).in_(event_ids), col(WebhookEvent.id).not_in(still_wanted))
        )


def list_deliveries(
    session: Session, subscription_id: str, *, page: int, page_size: int, status: DeliveryStatus | None = None
) -> tuple[list[WebhookDelivery], int]:
    """One page of the subscription's deliveries, newest first, and how many there are in all."""
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return list(rows), int(total)


def delivery_subjects(session: Session, event_ids: list[str]) -> dict[str, str]:
    """The source or job id each event announces."""
    rows = session.exec(select(WebhookEvent.id, WebhookEvent.subject_id).where(col(WebhookEvent.id).in_(event_ids)))
    return dict(rows.all())


# --- deliveries: claimed, attempted, recorded --------------------------------------------------------


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one attempt sends, and where."""

    delivery_id: str
    event_id: str
    event_type: str
    url: str
    secret: str
    body: bytes
    attempt: int  # 1 for the first


def _due(now: datetime):
    return and_(
        WebhookDelivery.status == DeliveryStatus.pending,
        WebhookDelivery.next_attempt_at <= now,
        or_(col(WebhookDelivery.claimed_until).is_(None), WebhookDelivery.claimed_until < now),
    )


def _claimable(now: datetime):
    """Due, and its subscription is neither held by a run nor waiting out a failure: a receiver that
    fails costs one delivery's attempts per round, not one per event, and gets its events in order."""
    other = aliased(WebhookDelivery)
    subscription_busy = (
        select(other.id)
        .where(
            other.subscription_id == WebhookDelivery.subscription_id,
            other.id != WebhookDelivery.id,
            other.status == DeliveryStatus.pending,
            or_(other.claimed_until > now, and_(other.attempts > 0, other.next_attempt_at > now)),
        )
        .exists()
    )
    return and_(_due(now), ~subscription_busy)


def deliveries_waiting(session: Session) -> bool:
    """Whether a delivery waits that a run could send now (then a delivery run should start)."""
    return session.exec(select(WebhookDelivery.id).where(_claimable(utcnow())).limit(1)).first() is not None


def claim_due_deliveries(session: Session, limit: int) -> tuple[str, list[tuple[str, str]]]:
    """Claim up to `limit` sendable deliveries, oldest first: the claim's token and (delivery id,
    subscription id) pairs, in the order to send them.

    One UPDATE; the row's own condition is repeated outside the subquery so that of two claimers at
    once the one that waited re-checks the rows it got (PostgreSQL re-evaluates it on the newest
    version of a row; SQLite lets one writer in at a time anyway).
    """
    now = utcnow()
    token = new_id()
    candidates = select(WebhookDelivery.id).where(_claimable(now)).order_by(WebhookDelivery.created_at).limit(limit)
    session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id).in_(candidates.scalar_subquery()), _due(now))
        .values(claim_token=token, claimed_until=now + CLAIM_LEASE)
    )
    session.commit()
    claimed = session.exec(
        select(WebhookDelivery.id, WebhookDelivery.subscription_id)
        .where(WebhookDelivery.claim_token == token, WebhookDelivery.status == DeliveryStatus.pending)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return token, [(delivery_id, subscription_id) for delivery_id, subscription_id in claimed]


def release_deliveries(session: Session, delivery_ids: list[str], token: str) -> None:
    """Let go of claimed deliveries unsent (their subscription's receiver is failing): they wait
    behind the failing one."""
    session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id).in_(delivery_ids), WebhookDelivery.claim_token == token)
        .values(claimed_until=None)
    )
    session.commit()


def take_delivery(session: Session, delivery_id: str, token: str) -> DeliveryAttempt | None:
    """Renew the claim for one attempt, and for the deliveries of the same subscription queued behind
    it in this claim (so a long queue to a slow receiver does not lapse); None when it is no longer
    this claim's to send (delivered, given up, claimed by another run after a lapse, or its
    subscription deleted)."""
    now = utcnow()
    taken = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.claim_token == token,
            WebhookDelivery.status == DeliveryStatus.pending,
        )
        .values(claimed_until=now + CLAIM_LEASE)
    )
    if taken.rowcount == 1:
        subscription_id = select(WebhookDelivery.subscription_id).where(WebhookDelivery.id == delivery_id).scalar_subquery()
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.claim_token == token,
                WebhookDelivery.subscription_id == subscription_id,
                WebhookDelivery.status == DeliveryStatus.pending,
                col(WebhookDelivery.claimed_until).is_not(None),
            )
            .values(claimed_until=now + CLAIM_LEASE)
        )
    session.commit()
    if taken.rowcount != 1:
        return None
    row = session.exec(
        select(WebhookDelivery, WebhookSubscription, WebhookEvent)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    if row is None:
        return None
    delivery, subscription, event = row
    return DeliveryAttempt(
        delivery_id=delivery.id,
        event_id=event.id,
        event_type=event.type.value,
        url=subscription.url,
        secret=subscription.secret,
        body=event.body.encode("utf-8"),
        attempt=delivery.attempts + 1,
    )


def record_attempt(
    session: Session,
    delivery_id: str,
    token: str,
    *,
    delivered: bool,
    status_code: int | None = None,
    error: str | None = None,
    give_up: bool = False,
) -> WebhookDelivery | None:
    """One attempt's outcome. A failure schedules the next attempt (or gives the delivery up: with
    `give_up`, or once it is GIVE_UP_AFTER old) and lets go of the claim; a quick retry takes it back
    by its token."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # its subscription was deleted meanwhile
        return None
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:1000] if error else None
    delivery.last_attempt_at = delivery.updated_at = now
    if delivery.status == DeliveryStatus.pending:  # not already sent by a run whose claim overlapped
        if delivered:
            delivery.status = DeliveryStatus.delivered
            delivery.delivered_at = now
        elif give_up or now - as_utc(delivery.created_at) >= GIVE_UP_AFTER:
            delivery.status = DeliveryStatus.failed
        else:
            delivery.next_attempt_at = now + later_retry_delay(delivery.attempts)
    if delivery.claim_token == token:
        delivery.claimed_until = None
    session.add(delivery)
    session.commit()
    return delivery


def later_retry_delay(failed_attempts: int) -> timedelta:
    """How long after its latest failed attempt a delivery is due for a later run."""
    round_index = (failed_attempts - 1) // ATTEMPTS_PER_RUN
    return LATER_RETRY_DELAYS[min(round_index, len(LATER_RETRY_DELAYS) - 1)]
