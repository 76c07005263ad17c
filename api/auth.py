"""Who is calling: the API key of a request, its workspace and its scopes (keys live in storage/keys.py)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header
from sqlmodel import Session

from api.deps import get_session
from gristmill.errors import AuthenticationFailed, PermissionDenied
from storage.keys import find_active_key


@dataclass(frozen=True)
class Principal:
    """Who is calling: the workspace their key belongs to and what it may do."""

    key_id: str
    workspace_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise PermissionDenied(f"this API key lacks the {scope!r} scope", code="insufficient_scope")


def authenticate(
    session: Annotated[Session, Depends(get_session)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    key = x_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'", code="invalid_authorization")
        key = token.strip()
    if not key:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", code="missing_api_key")
    record = find_active_key(session, key)
    if record is None:
        raise AuthenticationFailed("invalid or revoked API key", code="invalid_api_key")
    return Principal(key_id=record.id, workspace_id=record.workspace_id, scopes=frozenset(record.scopes))


def reader(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    principal.require("ingest.read")
    return principal


def writer(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    principal.require("ingest.write")
    return principal


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
