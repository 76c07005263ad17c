"""API keys: random `gm_` tokens stored only as SHA-256 hashes, each tied to one workspace and scopes."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from gristmill.errors import InvalidRequest, NotFound
from storage.tables import ApiKey, Workspace, as_utc, utcnow

SCOPES = ("ingest.read", "ingest.write", "admin")
KEY_PREFIX = "gm_"
PREFIX_LENGTH = 10  # "gm_" and 7 random characters: shown in listings so users can tell keys apart
# Recording every use made each request, searches included, a write transaction (SQLite takes one
# writer at a time, flow runs among them); "last used" needs no finer precision than this.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyListing:
    """A key as its listing shows it: never the key itself, which is not stored."""

    key: ApiKey
    workspace_name: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidRequest(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}", code="invalid_scope")
    return sorted(set(scopes))


def create_key(
    session: Session,
    workspace: Workspace,
    scopes: list[str],
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key for the workspace; the plain key is returned once and never stored."""
    scopes = check_scopes(scopes)
    if expires_at is not None and as_utc(expires_at) <= utcnow():
        raise InvalidRequest("expires_at must be in the future", code="invalid_expiry")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        workspace_id=workspace.id,
        prefix=plain[:PREFIX_LENGTH],
        key_hash=hash_key(plain),
        scopes=scopes,
        name=name,
        expires_at=as_utc(expires_at) if expires_at else None,
    )
    session.add(record)
    session.commit()
    return plain, record


def any_key_exists(session: Session) -> bool:
    return session.exec(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).first() is not None


def find_key(session: Session, plain: str) -> ApiKey | None:
    """The key `plain` is, whatever its state (revoked and expired keys included)."""
    return session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(plain))).first()


def record_use(session: Session, record: ApiKey) -> None:
    """Note that the key was used now, at most once per LAST_USED_PRECISION."""
    now = utcnow()
    if record.last_used_at is None or now - as_utc(record.last_used_at) >= LAST_USED_PRECISION:
        record.last_used_at = now
        session.add(record)
        session.commit()


def list_keys(session: Session, workspace_id: str | None = None) -> list[KeyListing]:
    """Every key (of one workspace, if given), oldest first, with its workspace's name."""
    query = select(ApiKey, Workspace.name).join(Workspace, Workspace.id == ApiKey.workspace_id)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    rows = session.exec(query.order_by(col(ApiKey.created_at), col(ApiKey.id))).all()
    return [KeyListing(key, workspace_name) for key, workspace_name in rows]


def find_key_by_id_or_prefix(session: Session, reference: str) -> ApiKey:
    """The key with this id, or the one key whose listed prefix this is (for the CLI)."""
    record = session.get(ApiKey, reference)
    if record is not None:
        return record
    matches = session.exec(select(ApiKey).where(ApiKey.prefix == reference)).all() if reference.startswith(KEY_PREFIX) else []
    if len(matches) > 1:
        raise InvalidRequest(f"{len(matches)} keys start with {reference}; give the key's id", code="ambiguous_key")
    if not matches:
        raise NotFound(f"key {reference} not found", code="key_not_found")
    return matches[0]


def get_key(session: Session, key_id: str) -> ApiKey:
    record = session.get(ApiKey, key_id)
    if record is None:
        raise NotFound(f"key {key_id} not found", code="key_not_found")
    return record


def revoke_key(session: Session, record: ApiKey) -> ApiKey:
    """Revoke the key: from the next request on it answers 401. Revoking a revoked key changes nothing."""
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
        session.commit()
    return record
