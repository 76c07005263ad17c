"""Serves the deployments listed in prefect.yaml from one long-lived runner process.

Flow runs start as child processes of this runner, so they stay light: no model is loaded in them
(embeddings come from the embeddings server over HTTP). Each run still gets a process of its own,
forked from a forkserver that has imported the flows (flows/flow_run_preload.py) instead of started
fresh: bench/bench_latency.py measured a single note's submit-to-searchable p50 at 6.4 s with fresh
processes and a 1 s poll, 0.74 s with forked ones and a 0.25 s poll.
"""

import asyncio
import importlib
import multiprocessing
import threading
from multiprocessing import forkserver
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from gristmill.settings import get_settings

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
FLOW_RUN_PRELOAD = ["flows.flow_run_preload"]


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    with open(path) as handle:
        return yaml.safe_load(handle)["deployments"]


def flows_to_serve(specs: list[dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """Each deployment's flow object and the options `Runner.add_flow` registers it with."""
    from prefect.deployments.runner import EntrypointType

    settings = get_settings()
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


def start_flow_runs_from_forkserver(preload: list[str] = FLOW_RUN_PRELOAD) -> None:
    """Make the runner fork each flow-run process from a forkserver with `preload` imported.

    For a flow it holds (`add_flow`), Prefect's DirectSubprocessStarter calls its module's
    `run_flow_in_subprocess`, a seam its docstring offers for overriding. Ours calls Prefect's own
    function with a forkserver context where it asks for "spawn", so the child is prepared, and its
    run reported, exactly as Prefect does it. Should a Prefect release stop asking for the context
    that way, runs start spawned again: slower, never wrong (tests/test_service.py checks the fork).
    """
    from prefect import flow_engine
    from prefect.runner import _starter_direct

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    prefect_start = flow_engine.run_flow_in_subprocess
    forkserver_only = SimpleNamespace(get_context=lambda _method=None: context, context=multiprocessing.context)
    lock = threading.Lock()

    def run_flow_in_forked_subprocess(*args: Any, **kwargs: Any) -> Any:
        with lock:  # flow_engine's `multiprocessing` is swapped only while one run starts
            flow_engine.multiprocessing = forkserver_only
            try:
                return prefect_start(*args, **kwargs)
            finally:
                flow_engine.multiprocessing = multiprocessing

    _starter_direct.run_flow_in_subprocess = run_flow_in_forked_subprocess
    forkserver.ensure_running()  # now, while the runner registers its deployments, not on the first run


def main() -> None:
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    settings = get_settings()
    start_flow_runs_from_forkserver()
    # query_seconds, unlike Prefect's PREFECT_RUNNER_POLL_FREQUENCY, takes fractions of a second.
    runner = Runner(limit=settings.runner_flow_limit, pause_on_shutdown=True, query_seconds=settings.runner_poll_seconds)
    for flow, options in flows_to_serve(load_deployment_specs()):
        runner.add_flow(flow, **options)  # the runner keeps the flow object and starts each run from it
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


if __name__ == "__main__":
    main()
