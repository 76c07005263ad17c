"""API keys: random `gm_` tokens stored only as SHA-256 hashes, each tied to one workspace and scopes."""

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import Session, select

from gristmill.errors import InvalidRequest
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


def find_active_key(session: Session, plain: str) -> ApiKey | None:
    """The unrevoked key `plain` is, its use recorded (at most once per LAST_USED_PRECISION)."""
    record = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(plain))).first()
    if record is None or record.revoked_at is not None:
        return None
    now = utcnow()
    if record.last_used_at is None or now - as_utc(record.last_used_at) >= LAST_USED_PRECISION:
        record.last_used_at = now
        session.add(record)
        session.commit()
    return record
