"""Nothing local is open: the home is its user's alone, the Prefect server and the embeddings server
Gristmill starts require the secrets it made once in the home."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gristmill.embeddings.server import build_app
from gristmill.home import EMBEDDINGS_KEY_FILE, PREFECT_AUTH_FILE, make_private, prefect_auth_string
from gristmill.probes import basic_auth
from tests.conftest import free_port, wait_for_http
from tests.embedder import HashingEncoder, serve_app


def modes(home: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(home.stat().st_mode)}
    for root, folders, files in os.walk(home):
        for name in folders + files:
            path = Path(root) / name
            found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_make_private_closes_a_home_left_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "lancedb" / "lib.lance").mkdir(parents=True)
    (home / "lancedb" / "lib.lance" / "data.lance").write_bytes(b"rows")
    (home / "gristmill.db").write_bytes(b"")
    for path in (home, home / "lancedb", home / "lancedb" / "lib.lance"):
        path.chmod(0o755)
    for path in (home / "lancedb" / "lib.lance" / "data.lance", home / "gristmill.db"):
        path.chmod(0o644)
    (home / "elsewhere").symlink_to(tmp_path)
    make_private(home)
    found = modes(home)
    found.pop("elsewhere")  # a link is left alone, and so is what it points at
    assert found == {".": 0o700, "lancedb": 0o700, "lancedb/lib.lance": 0o700, "lancedb/lib.lance/data.lance": 0o600, "gristmill.db": 0o600}


def test_every_gristmill_process_writes_private_files(tmp_path: Path) -> None:
    """prepare_process sets the umask, so files LanceDB (Rust) and SQLite write later are private too."""
    home = tmp_path / "home"
    script = (
        "from gristmill.environment import prepare_process\n"
        "from gristmill.settings import get_settings\n"
        "prepare_process(get_settings())\n"
        "from storage.db import migrate\n"
        "import lancedb, pyarrow as pa\n"
        "migrate(get_settings().resolved_database_url)\n"
        "db = lancedb.connect(get_settings().resolved_lancedb_uri)\n"
        "table = db.create_table('t', pa.table({'x': list(range(100))}))\n"
        "table.add(pa.table({'x': [1]}))\n"
    )
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "GRISTMILL_HOME": str(home)}, check=True, timeout=120)
    found = modes(home)
    assert any(name.startswith("lancedb/t.lance/") for name in found) and "gristmill.db" in found
    assert {name: mode for name, mode in found.items() if mode not in (0o600, 0o700)} == {}


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    first = prefect_auth_string(tmp_path)
    assert first.startswith("gristmill:") and len(first) > 40
    assert prefect_auth_string(tmp_path) == first
    assert stat.S_IMODE((tmp_path / PREFECT_AUTH_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREFECT_AUTH_FILE]  # no draft left behind


def test_the_embeddings_server_requires_its_key_and_keeps_healthz_open() -> None:
    with serve_app(build_app(lambda: HashingEncoder(), api_key="gme_secret")) as root:
        body = {"input": ["hello"]}
        missing = httpx.post(f"{root}/v1/embeddings", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        wrong = httpx.get(f"{root}/v1/models", headers={"Authorization": "Bearer gme_guess"})
        assert wrong.status_code == 401
        right = httpx.post(f"{root}/v1/embeddings", json=body, headers={"Authorization": "Bearer gme_secret"})
        assert right.status_code == 200 and len(right.json()["data"][0]["embedding"]) == 384
        assert httpx.get(f"{root}/healthz").status_code == 200


@pytest.mark.slow
def test_the_prefect_server_serve_starts_requires_the_home_s_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gristmill.settings import get_settings
    from gristmill.supervisor.serve import build_children

    home = tmp_path / "home"
    port = free_port()
    monkeypatch.delenv("PREFECT_API_URL")  # so that serve starts its own Prefect server
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))
    monkeypatch.setenv("GRISTMILL_HOME", str(home))
    monkeypatch.setenv("GRISTMILL_PREFECT_PORT", str(port))
    monkeypatch.setenv("GRISTMILL_EMBEDDINGS_PORT", str(free_port()))
    get_settings.cache_clear()
    make_private(home)
    (home / "logs").mkdir()
    children = build_children(get_settings())
    prefect = next(child for child in children if child.name == "Prefect server")
    auth = (home / PREFECT_AUTH_FILE).read_text().strip()
    for child in children:  # every child talks to it with the same secret
        assert child.env["PREFECT_API_AUTH_STRING"] == auth
    embeddings = next(child for child in children if child.name == "embeddings server")
    assert embeddings.env["GRISTMILL_EMBEDDINGS_API_KEY"] == (home / EMBEDDINGS_KEY_FILE).read_text().strip()
    assert stat.S_IMODE((home / EMBEDDINGS_KEY_FILE).stat().st_mode) == 0o600

    prefect.start()
    try:
        api = f"http://127.0.0.1:{port}/api"
        wait_for_http(f"{api}/health", timeout=120, process=prefect.process)  # probes stay open
        anonymous = httpx.post(f"{api}/flow_runs/filter", json={})
        assert anonymous.status_code == 401
        guessed = httpx.post(f"{api}/flow_runs/filter", json={}, headers=basic_auth("gristmill:guess"))
        assert guessed.status_code == 401
        assert httpx.post(f"{api}/flow_runs/filter", json={}, headers=basic_auth(auth)).status_code == 200
    finally:
        prefect.stop()
    get_settings.cache_clear()
