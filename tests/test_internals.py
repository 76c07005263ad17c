"""The private interfaces of Prefect and the standard library that gristmill.internals relies on are
still there: an upgrade that moves one fails here, naming it, instead of slowing or breaking a run."""

import asyncio
import importlib
import inspect
import json
from pathlib import Path

import pytest
from prefect.states import Failed

from gristmill import internals

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("api", "connectors", "flows", "gristmill", "storage", "tasks")


@pytest.mark.parametrize(("module", "path"), internals.PRIVATE_ATTRIBUTES, ids=lambda v: v or "module")
def test_each_private_attribute_we_use_still_exists(module: str, path: str) -> None:
    target = importlib.import_module(module)
    for part in filter(None, path.split(".")):
        assert hasattr(target, part), f"{module}.{path} is gone: {part!r} is missing; see gristmill/internals.py"
        target = getattr(target, part)


def test_prefects_flow_run_start_still_asks_multiprocessing_for_its_context() -> None:
    from prefect import flow_engine

    source = inspect.getsource(flow_engine.run_flow_in_subprocess)
    assert "multiprocessing.get_context(" in source, (
        "prefect.flow_engine.run_flow_in_subprocess no longer calls multiprocessing.get_context: "
        "flow runs would start spawned again (gristmill.internals.start_flow_runs_from_forkserver)"
    )


def test_a_state_result_resolves_synchronously_inside_an_event_loop() -> None:
    state = Failed(data=None, message="no data")

    async def resolve_in_a_loop() -> object:
        return state.result(raise_on_failure=False, _sync=True)

    resolved = asyncio.run(resolve_in_a_loop())
    assert not inspect.isawaitable(resolved), "State.result(_sync=True) handed back a coroutine inside an event loop"
    assert internals.failed_state_exception(Failed(data=ValueError("boom"))).args == ("boom",)


def test_prefects_server_still_has_the_routes_we_post_to() -> None:
    from prefect.server.api import deployments

    paths = {route.path for route in deployments.router.routes}
    for path in ("/deployments/name/{flow_name}/{deployment_name}", "/deployments/{id:uuid}/create_flow_run"):
        assert path in paths, f"Prefect's REST API has no {path} any more (gristmill.internals.DeploymentRuns)"


def test_the_request_body_we_send_is_prefects_own_schema() -> None:
    from prefect.client.schemas.actions import DeploymentFlowRunCreate

    fields = set(DeploymentFlowRunCreate.model_fields)
    assert {"parameters", "idempotency_key", "state", "name"} <= fields, sorted(fields)
    json.dumps(DeploymentFlowRunCreate(parameters={"job_id": "j"}, idempotency_key="k").model_dump(mode="json"))


def test_no_other_module_reaches_into_a_private_prefect_or_multiprocessing_name() -> None:
    """gristmill/internals.py is the one seam: nothing else imports `prefect._...` or the private
    parts of multiprocessing."""
    private = ("prefect._internal", "prefect.runner._", "_starter_direct", "popen_forkserver", "forkserver._forkserver",
               "_sync=True", "spawn.get_preparation_data", "set_spawning_popen")
    offenders = []
    for package in OUR_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "gristmill" / "internals.py":
                continue
            text = path.read_text()
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in private if name in text]
    assert offenders == []


def test_deployment_runs_authenticate_to_a_prefect_server_that_requires_it() -> None:
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    with temporary_settings({PREFECT_API_AUTH_STRING: "admin:s3cret"}):
        runs = internals.DeploymentRuns("http://127.0.0.1:9/api")
    assert runs.http.headers["Authorization"] == "Basic YWRtaW46czNjcmV0"
    runs.http.close()
