"""`gristmill serve` before it starts anything: it refuses to run beside another server on its ports."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


@pytest.mark.parametrize("setting", ["GRISTMILL_API_PORT", "GRISTMILL_PREFECT_PORT", "GRISTMILL_EMBEDDINGS_PORT"])
def test_serve_refuses_a_port_in_use_and_starts_nothing(tmp_path: Path, setting: str) -> None:
    home = tmp_path / "home"
    embeddings_port = free_port()
    env = {
        **os.environ,
        "GRISTMILL_HOME": str(home),
        "GRISTMILL_API_PORT": str(free_port()),
        "GRISTMILL_PREFECT_PORT": str(free_port()),
        "GRISTMILL_EMBEDDINGS_PORT": str(embeddings_port),
        "GRISTMILL_EMBEDDINGS_URL": f"http://127.0.0.1:{embeddings_port}/v1",
    }
    env.pop("PREFECT_API_URL")  # so that serve would start a Prefect server of its own
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env[setting])))
        busy.listen()  # it never answers: on the embeddings port, an answer would pass for a running server
        done = subprocess.run(
            [sys.executable, "-m", "gristmill.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"127.0.0.1:{env[setting]} is already in use" in done.stderr
    assert f"choose another port with {setting}" in done.stderr
    assert not (home / "admin.key").exists()
    assert "starting" not in done.stdout
