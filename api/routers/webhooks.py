from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.auth import Reader, Writer
from api.deps import SessionDep, SettingsDep
from api.schemas import (
    DeliveryOut,
    DeliveryPage,
    PageNumber,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    errors,
    rate_limited,
)
from gristmill.usecases import webhooks as webhook_cases
from storage import webhooks
from storage.tables import DeliveryStatus, WebhookDelivery, WebhookSubscription

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

# What a 404 means here: the webhook, or the library a new subscription names.
_NOT_FOUND = {404: "No such webhook (or library) in this workspace."}


def webhook_out(subscription: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=subscription.id,
        url=subscription.url,
        events=subscription.events,
        library_id=subscription.library_id,
        description=subscription.description,
        created_at=subscription.created_at,
    )


def delivery_out(delivery: WebhookDelivery, subject_id: str) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type.value,
        subject_id=subject_id,
        status=delivery.status.value,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.pending else None,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        last_attempt_at=delivery.last_attempt_at,
        delivered_at=delivery.delivered_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=rate_limited(201, errors(400, 401, 403, 404, 413, 422, 429, 503, descriptions=_NOT_FOUND)),
)
def create_webhook(body: WebhookCreate, principal: Writer, session: SessionDep, settings: SettingsDep) -> WebhookCreated:
    """Subscribe a URL to `source_ingested` and/or `job_finished` of one library or the whole workspace."""
    subscription = webhook_cases.create_subscription(
        session,
        settings,
        principal.workspace_id,
        url=str(body.url),
        events=[event.value for event in body.events],
        secret=body.secret,
        library_id=body.library_id,
        description=body.description,
    )
    return WebhookCreated(**webhook_out(subscription).model_dump(), secret=subscription.secret)


@router.get("", response_model=WebhookList, responses=errors(401, 403, 422))
def list_webhooks(principal: Reader, session: SessionDep) -> WebhookList:
    return WebhookList(data=[webhook_out(s) for s in webhooks.list_subscriptions(session, principal.workspace_id)])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=errors(401, 403, 404, 422, descriptions=_NOT_FOUND))
def get_webhook(webhook_id: str, principal: Reader, session: SessionDep) -> WebhookOut:
    return webhook_out(webhooks.get_subscription(session, principal.workspace_id, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=rate_limited(204, errors(401, 403, 404, 422, 429, 503, descriptions=_NOT_FOUND)),
)
def delete_webhook(webhook_id: str, principal: Writer, session: SessionDep) -> Response:
    """Stop deliveries to it; its delivery log goes with it."""
    webhooks.delete_subscription(session, webhooks.get_subscription(session, principal.workspace_id, webhook_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries", response_model=DeliveryPage, responses=errors(401, 403, 404, 422, descriptions=_NOT_FOUND)
)
def list_deliveries(
    webhook_id: str,
    principal: Reader,
    session: SessionDep,
    page: PageNumber = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    status: DeliveryStatus | None = None,
) -> DeliveryPage:
    """The subscription's deliveries, newest first: one per event, with its attempts so far."""
    subscription = webhooks.get_subscription(session, principal.workspace_id, webhook_id)
    rows, total = webhooks.list_deliveries(session, subscription.id, page=page, page_size=page_size, status=status)
    subjects = webhooks.delivery_subjects(session, [row.event_id for row in rows])
    return DeliveryPage(data=[delivery_out(row, subjects[row.event_id]) for row in rows], total=total, page=page, page_size=page_size)
