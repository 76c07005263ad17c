"""Who is calling: the API key of a request, its workspace and its scopes (keys live in storage/keys.py),
and what it may still spend (api/rate_limits.py)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlmodel import Session

from api.deps import get_session
from api.rate_limits import Budget, RateLimiter, remember_quota
from gristmill.errors import AuthenticationFailed, PermissionDenied
from storage.keys import find_key, record_use
from storage.tables import KeyState, utcnow

# Declared so that the OpenAPI document names both ways of sending a key; the header is read as sent.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer gm_...`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: gm_...`")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the workspace their key belongs to and what it may do."""

    key_id: str
    workspace_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise PermissionDenied(f"this API key lacks the {scope!r} scope", code="insufficient_scope")


def authenticate(session: Session, authorization: str | None = None, x_api_key: str | None = None) -> Principal:
    key = x_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'", code="invalid_authorization")
        key = token.strip()
    if not key:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", code="missing_api_key")
    record = find_key(session, key)
    state = record.state(utcnow()) if record is not None else None
    if record is None or state is KeyState.revoked:
        raise AuthenticationFailed("invalid or revoked API key", code="invalid_api_key")
    if state is KeyState.expired:
        raise AuthenticationFailed(f"this API key expired at {record.expires_at:%Y-%m-%d %H:%M} UTC", code="expired_api_key")
    record_use(session, record)
    return Principal(key_id=record.id, workspace_id=record.workspace_id, scopes=frozenset(record.scopes))


def current_principal(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _bearer_declared: Annotated[object, Security(_bearer)],
    _header_declared: Annotated[object, Security(_api_key_header)],
) -> Principal:
    return authenticate(session, request.headers.get("authorization"), request.headers.get("x-api-key"))


def spend(request: Request, principal: Principal, budget: Budget) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    remember_quota(request.scope, limiter.spend(budget, principal.key_id))


def _allowed(scope: str, budget: Budget | None = None) -> Callable[..., Principal]:
    """A dependency: the caller, if its key has `scope`, after spending one request of `budget`."""

    def allowed(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require(scope)
        if budget is not None:
            spend(request, principal, budget)
        return principal

    return allowed


Reader = Annotated[Principal, Depends(_allowed("ingest.read"))]
Writer = Annotated[Principal, Depends(_allowed("ingest.write", "writes"))]
Searcher = Annotated[Principal, Depends(_allowed("ingest.read", "searches"))]
AdminReader = Annotated[Principal, Depends(_allowed("admin"))]
AdminWriter = Annotated[Principal, Depends(_allowed("admin", "writes"))]
