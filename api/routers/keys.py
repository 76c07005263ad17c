"""API keys, for an admin key: list them, create one (shown once), revoke one (401 from the next request on)."""

from fastapi import APIRouter, Response, status

from api.auth import AdminReader, AdminWriter
from api.deps import SessionDep
from api.schemas import KeyCreate, KeyCreated, KeyList, KeyOut, errors, rate_limited
from storage import repository
from storage.keys import KeyListing, create_key, get_key, list_keys, revoke_key
from storage.tables import ApiKey, utcnow

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_out(key: ApiKey, workspace_name: str) -> KeyOut:
    return KeyOut(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        workspace_id=key.workspace_id,
        workspace_name=workspace_name,
        scopes=key.scopes,
        state=key.state(utcnow()).value,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


def _listing_out(listing: KeyListing) -> KeyOut:
    return key_out(listing.key, listing.workspace_name)


@router.get("", response_model=KeyList, responses=errors(401, 403, 422))
def list_all_keys(principal: AdminReader, session: SessionDep) -> KeyList:
    """Every key of every workspace, revoked and expired ones included, oldest first."""
    return KeyList(data=[_listing_out(listing) for listing in list_keys(session)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=rate_limited(201, errors(400, 401, 403, 404, 413, 422, 429, 503, descriptions={404: "No such workspace."})),
)
def create_api_key(body: KeyCreate, principal: AdminWriter, session: SessionDep) -> KeyCreated:
    workspace = repository.get_workspace(session, body.workspace_id or principal.workspace_id)
    plain, record = create_key(session, workspace, list(body.scopes), name=body.name, expires_at=body.expires_at)
    return KeyCreated(**key_out(record, workspace.name).model_dump(), key=plain)


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=rate_limited(204, errors(401, 403, 404, 429, 503))
)
def revoke_api_key(key_id: str, principal: AdminWriter, session: SessionDep) -> Response:
    """Revoke a key: every request with it from now on answers 401. Revoking a revoked key is no error."""
    revoke_key(session, get_key(session, key_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
