"""API keys against a real SQLite database: hashing, scopes, and how often a use is recorded."""

from datetime import timedelta
from pathlib import Path

import pytest

from api.auth import authenticate
from gristmill.errors import AuthenticationFailed, PermissionDenied
from gristmill.settings import get_settings
from storage.db import session_scope
from storage.keys import LAST_USED_PRECISION, create_key, hash_key, revoke_key
from storage.repository import ensure_workspace
from storage.tables import ApiKey, as_utc, utcnow

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def stored_key(key_id: str) -> ApiKey:
    with session_scope(get_settings().resolved_database_url) as session:
        return session.get(ApiKey, key_id)


def test_a_key_is_stored_hashed_and_its_use_recorded_at_most_once_a_minute(gristmill_home: Path) -> None:
    with session_scope(get_settings().resolved_database_url) as session:
        plain, record = create_key(session, ensure_workspace(session, "acme"), ["ingest.read"])
        assert record.key_hash == hash_key(plain) and plain not in record.key_hash
        principal = authenticate(session, authorization=f"Bearer {plain}")
    assert principal.scopes == frozenset({"ingest.read"})
    first_use = as_utc(stored_key(principal.key_id).last_used_at)

    with session_scope(get_settings().resolved_database_url) as session:
        authenticate(session, x_api_key=plain)
    assert as_utc(stored_key(principal.key_id).last_used_at) == first_use  # within the minute: no write

    with session_scope(get_settings().resolved_database_url) as session:
        record = session.get(ApiKey, principal.key_id)
        record.last_used_at = first_use - LAST_USED_PRECISION - timedelta(seconds=1)
        session.add(record)
        session.commit()
        authenticate(session, x_api_key=plain)
    assert as_utc(stored_key(principal.key_id).last_used_at) > first_use


def test_wrong_keys_and_missing_scopes_are_refused(gristmill_home: Path) -> None:
    with session_scope(get_settings().resolved_database_url) as session:
        plain, _ = create_key(session, ensure_workspace(session, "acme"), ["ingest.read"])
        with pytest.raises(AuthenticationFailed) as wrong:
            authenticate(session, authorization="Bearer gm_not-a-key")
        assert wrong.value.code == "invalid_api_key"
        with pytest.raises(AuthenticationFailed) as scheme:
            authenticate(session, authorization=f"Basic {plain}")
        assert scheme.value.code == "invalid_authorization"
        with pytest.raises(PermissionDenied):
            authenticate(session, authorization=f"Bearer {plain}").require("ingest.write")


def test_revoked_and_expired_keys_are_refused_at_once(gristmill_home: Path) -> None:
    with session_scope(get_settings().resolved_database_url) as session:
        acme = ensure_workspace(session, "acme")
        plain, record = create_key(session, acme, ["ingest.read"], expires_at=utcnow() + timedelta(hours=1))
        assert authenticate(session, x_api_key=plain).key_id == record.id
        revoke_key(session, record)
        with pytest.raises(AuthenticationFailed) as revoked:
            authenticate(session, x_api_key=plain)
        assert revoked.value.code == "invalid_api_key"

        soon, short_lived = create_key(session, acme, ["ingest.read"], expires_at=utcnow() + timedelta(seconds=30))
        short_lived.expires_at = utcnow() - timedelta(seconds=1)  # as if the 30 s had passed
        session.add(short_lived)
        session.commit()
        with pytest.raises(AuthenticationFailed) as expired:
            authenticate(session, x_api_key=soon)
        assert expired.value.code == "expired_api_key"
