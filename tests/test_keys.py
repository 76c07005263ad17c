"""The life cycle of API keys and workspaces: through the admin API and the `gristmill keys` command."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from storage.tables import utcnow
from tests.conftest import LocalApi

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def test_an_admin_key_manages_workspaces_and_keys(local_api: LocalApi) -> None:
    with local_api.client() as admin:
        workspace = admin.post("/v1/workspaces", json={"name": "acme"})
        assert workspace.status_code == 201, workspace.text
        acme = workspace.json()
        assert admin.post("/v1/workspaces", json={"name": "acme"}).json()["error"]["code"] == "workspace_exists"
        assert {"default", "acme"} <= {w["name"] for w in admin.get("/v1/workspaces").json()["data"]}

        expires = (utcnow() + timedelta(days=30)).isoformat()
        created = admin.post("/v1/keys", json={"workspace_id": acme["id"], "scopes": ["ingest.read"], "name": "ci", "expires_at": expires})
        assert created.status_code == 201, created.text
        key = created.json()
        assert key["key"].startswith("gm_") and key["prefix"] == key["key"][:10]
        assert (key["workspace_name"], key["scopes"], key["state"], key["last_used_at"]) == ("acme", ["ingest.read"], "active", None)

        with local_api.client(key["key"]) as reader:
            assert reader.get("/v1/libraries").status_code == 200
            assert reader.get("/v1/keys").json()["error"]["code"] == "insufficient_scope"  # admin only
            assert reader.post("/v1/workspaces", json={"name": "mine"}).status_code == 403

        listed = {k["id"]: k for k in admin.get("/v1/keys").json()["data"]}
        assert "key" not in listed[key["id"]]  # the key itself is shown once, never listed
        assert listed[key["id"]]["last_used_at"] is not None and listed[key["id"]]["expires_at"].startswith(expires[:16])

        assert admin.delete(f"/v1/keys/{key['id']}").status_code == 204
        with local_api.client(key["key"]) as revoked:
            answer = revoked.get("/v1/libraries")
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
        assert admin.delete(f"/v1/keys/{key['id']}").status_code == 204  # revoking again changes nothing
        assert {k["id"]: k for k in admin.get("/v1/keys").json()["data"]}[key["id"]]["state"] == "revoked"

        assert admin.delete("/v1/keys/no-such-key").json()["error"]["code"] == "key_not_found"
        assert admin.post("/v1/keys", json={"workspace_id": "nope", "scopes": ["ingest.read"]}).status_code == 404
        past = admin.post("/v1/keys", json={"scopes": ["ingest.read"], "expires_at": "2020-01-01T00:00:00Z"})
        assert past.status_code == 422 and past.json()["error"]["code"] == "invalid_expiry"
        assert admin.post("/v1/keys", json={"scopes": ["root"]}).status_code == 422


def test_the_keys_command_creates_lists_and_revokes(gristmill_home: Path) -> None:
    env = {**os.environ, "GRISTMILL_HOME": str(gristmill_home)}

    def gristmill(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gristmill.cli", "keys", *args], env=env, capture_output=True, text=True, timeout=120)

    made = gristmill("create", "--workspace", "acme", "--scopes", "ingest.read", "--name", "nightly", "--expires-in-days", "7")
    assert made.returncode == 0, made.stderr
    plain = made.stdout.strip()
    assert "expires" in made.stderr
    listed = json.loads(gristmill("list", "--json").stdout)["keys"]
    (row,) = [k for k in listed if k["prefix"] == plain[:10]]
    assert (row["workspace"], row["scopes"], row["name"], row["state"]) == ("acme", ["ingest.read"], "nightly", "active")
    assert row["expires_at"] and row["last_used_at"] is None

    revoked = gristmill("revoke", row["prefix"])
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(gristmill("list", "--workspace", "acme", "--json").stdout)["keys"][0]["state"] == "revoked"
    assert gristmill("revoke", "gm_nothing").returncode == 1
    assert "control character" in gristmill("create", "--workspace", "bad\x1bname").stderr
