"""deploy/docker-compose.yml as far as it can be checked without a Docker engine: every command a
service runs exists, every GRISTMILL_* variable is a setting, and the pieces a scaled-out service
needs are there."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gristmill.cli.main import _parser
from gristmill.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "deploy" / "docker-compose.yml"


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_compose_file_has_every_part_of_a_scaled_out_service() -> None:
    found = services()
    assert {"postgres", "prefect", "minio", "migrate", "embeddings", "api", "worker"} <= set(found)
    assert found["worker"]["deploy"]["replicas"] >= 2
    env = found["api"]["environment"]
    assert env["GRISTMILL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["GRISTMILL_LANCEDB_URI"].startswith("s3://") and env["GRISTMILL_BLOB_URI"].startswith("s3://")
    assert env == found["worker"]["environment"]  # the API and the workers share every setting
    assert found["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")


def test_every_gristmill_variable_is_a_setting() -> None:
    names = {f"GRISTMILL_{name.upper()}" for name in Settings.model_fields}
    used = {k for service in services().values() for k in (service.get("environment") or {}) if k.startswith("GRISTMILL_")}
    assert used and used <= names, used - names
    Settings(**{k.removeprefix("GRISTMILL_").lower(): v for k, v in services()["api"]["environment"].items()
                if k.startswith("GRISTMILL_")})  # and each value parses


@pytest.mark.parametrize("name", [n for n, s in services().items() if s.get("command") and s.get("image") == "gristmill:local"])
def test_every_gristmill_command_exists(name: str) -> None:
    command = services()[name]["command"]
    if command[0] == "gristmill":
        _parser().parse_args(command[1:])  # an unknown subcommand or option exits
    elif command[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(command[2]) is not None, command
    elif command[:3] == ["prefect", "server", "start"]:
        done = subprocess.run([sys.executable, "-m", "prefect", *command[1:], "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    else:
        pytest.fail(f"{name} runs {command}, which this test does not know how to check")


def test_the_image_copies_every_package_gristmill_installs() -> None:
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    for package in ("api", "connectors", "flows", "gristmill", "storage", "tasks"):
        assert f"COPY {package} {package}" in dockerfile
