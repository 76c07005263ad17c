"""Serves the deployments listed in prefect.yaml from one long-lived runner process.

Flow runs start as child processes of this runner, so they stay light: no model is loaded in them
(embeddings come from the embeddings server over HTTP).
"""

import importlib
import os
from pathlib import Path
from typing import Any

import yaml

from gristmill.settings import get_settings

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    with open(path) as handle:
        return yaml.safe_load(handle)["deployments"]


def build_deployments(specs: list[dict[str, Any]]):
    from prefect.deployments.runner import EntrypointType

    settings = get_settings()
    deployments = []
    for spec in specs:
        module_name, function_name = spec["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module_name), function_name)
        interval = spec.get("interval")
        if interval is not None and spec["name"] == "sync-url-sources":
            interval = settings.sync_interval_seconds
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or None,
                interval=interval,
                # Module paths resolve wherever Gristmill is installed, whatever the working directory.
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def main() -> None:
    settings = get_settings()
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", str(max(1, round(settings.runner_poll_seconds))))
    from prefect import serve

    serve(*build_deployments(load_deployment_specs()), print_starting_message=False, limit=settings.runner_flow_limit)


if __name__ == "__main__":
    main()
