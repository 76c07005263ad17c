"""Work pools: what `gristmill worker` registers in Prefect, and what `serve` leaves to workers.
The workers themselves run jobs in tests/test_scale_out.py."""

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.runner import load_deployment_specs, register_in_work_pool
from gristmill.cli.main import main
from gristmill.settings import Settings
from gristmill.supervisor.serve import build_children
from gristmill.supervisor.worker import worker_command


def test_a_worker_needs_a_pool(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("GRISTMILL_WORK_POOL", raising=False)
    assert main(["worker"]) == 1
    assert "(work_pool_missing)" in capsys.readouterr().err


def test_the_worker_is_prefects_process_worker_for_the_pool(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, runner_flow_limit=3)
    assert worker_command(settings, "docs-pool", name="w1")[1:] == [
        "-m", "prefect", "worker", "start", "--pool", "docs-pool", "--type", "process", "--limit", "3", "--name", "w1"
    ]


def test_every_deployment_is_registered_in_the_pool(prefect_server: str, tmp_path: Path) -> None:
    pool = "test-register-pool"
    names = register_in_work_pool(Settings(home=tmp_path), pool)
    assert register_in_work_pool(Settings(home=tmp_path), pool) == names  # every worker registers: an upsert

    expected = {spec["name"] for spec in load_deployment_specs()}
    assert {name.split("/")[1] for name in names} == expected >= {"ingest", "ingest-url", "sync-library"}
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(pool).type == "process"
        for name in names:
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == pool, name
        ingest_url = client.read_deployment_by_name("ingest-url/ingest-url")
        assert ingest_url.parameter_openapi_schema["required"] == ["library", "url"]
        assert ingest_url.entrypoint == "gristmill.deployments.ingest_url"


def test_serve_with_a_work_pool_starts_no_runner(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    embedded = [c.name for c in build_children(Settings(home=tmp_path / "home"))]
    pooled = [c.name for c in build_children(Settings(home=tmp_path / "home", work_pool="docs-pool"))]
    assert "flow runner" in embedded and "flow runner" not in pooled and "REST API" in pooled
