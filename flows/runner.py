"""Serves the deployments listed in prefect.yaml from one long-lived runner process.

Flow runs start as child processes of this runner, so they stay light: no model is loaded in them
(embeddings come from the embeddings server over HTTP). Each run still gets a process of its own,
forked from a forkserver that has imported the flows (flows/flow_run_preload.py) instead of started
fresh: bench/bench_latency.py measured a single note's submit-to-searchable p50 at 6.4 s with fresh
processes and a 1 s poll, 0.74 s with forked ones and a 0.25 s poll.
"""

import asyncio
import importlib
from pathlib import Path
from typing import Any

import yaml

from gristmill.environment import prepare_process
from gristmill.internals import start_flow_runs_from_forkserver
from gristmill.settings import Settings, get_settings

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
FLOW_RUN_PRELOAD = ["flows.flow_run_preload"]


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    with open(path) as handle:
        return yaml.safe_load(handle)["deployments"]


def flows_to_serve(specs: list[dict[str, Any]], settings: Settings) -> list[tuple[Any, dict[str, Any]]]:
    """Each deployment's flow object and the options `Runner.add_flow` registers it with."""
    from prefect.deployments.runner import EntrypointType

    served = []
    for spec in specs:
        module_name, function_name = spec["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module_name), function_name)
        interval = spec.get("interval")
        if interval is not None and spec["name"] == "sync-url-sources":
            interval = settings.sync_interval_seconds
        options = {
            "name": spec["name"],
            "description": spec.get("description"),
            "tags": spec.get("tags"),
            "parameters": spec.get("parameters") or None,
            "interval": interval,
            # Module paths resolve wherever Gristmill is installed, whatever the working directory.
            "entrypoint_type": EntrypointType.MODULE_PATH,
        }
        served.append((flow, options))
    return served


def register_in_work_pool(settings: Settings, pool: str) -> list[str]:
    """Register every deployment in work pool `pool` (made as a process pool if missing), so that
    workers of the pool run their flow runs; the deployments' names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    names = []
    for flow, options in flows_to_serve(load_deployment_specs(), settings):
        flow.to_deployment(**options).apply(work_pool_name=pool)
        names.append(f"{flow.name}/{options['name']}")
    return names


def main() -> None:
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    settings = get_settings()
    prepare_process(settings)
    start_flow_runs_from_forkserver(FLOW_RUN_PRELOAD)
    # query_seconds, unlike Prefect's PREFECT_RUNNER_POLL_FREQUENCY, takes fractions of a second.
    runner = Runner(limit=settings.runner_flow_limit, pause_on_shutdown=True, query_seconds=settings.runner_poll_seconds)
    for flow, options in flows_to_serve(load_deployment_specs(), settings):
        runner.add_flow(flow, **options)  # the runner keeps the flow object and starts each run from it
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


if __name__ == "__main__":
    main()
