"""API keys: random `gm_` tokens stored only as SHA-256 hashes, each tied to one workspace and scopes."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header
from sqlmodel import Session, select

from api.deps import get_session
from gristmill.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from storage import repository
from storage.tables import ApiKey, as_utc, utcnow

SCOPES = ("ingest.read", "ingest.write", "admin")
KEY_PREFIX = "gm_"
# Recording every use made each request, searches included, a write transaction (SQLite takes one
# writer at a time, flow runs among them); "last used" needs no finer precision than this.
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, workspace_name: str, scopes: list[str], name: str | None = None) -> tuple[str, ApiKey]:
    """A new key for the workspace (created if needed); the plain key is returned once and never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidRequest(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}", code="invalid_scope")
    workspace = repository.ensure_workspace(session, workspace_name)
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(workspace_id=workspace.id, prefix=plain[:10], key_hash=hash_key(plain), scopes=sorted(set(scopes)), name=name)
    session.add(record)
    session.commit()
    return plain, record


def any_key_exists(session: Session) -> bool:
    return session.exec(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).first() is not None


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
    record = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if record is None or record.revoked_at is not None:
        raise AuthenticationFailed("invalid or revoked API key", code="invalid_api_key")
    now = utcnow()
    if record.last_used_at is None or now - as_utc(record.last_used_at) >= LAST_USED_PRECISION:
        record.last_used_at = now
        session.add(record)
        session.commit()
    return Principal(key_id=record.id, workspace_id=record.workspace_id, scopes=frozenset(record.scopes))


def reader(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    principal.require("ingest.read")
    return principal


def writer(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    principal.require("ingest.write")
    return principal


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
