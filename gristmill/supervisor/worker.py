"""`gristmill worker`: runs the flow runs of the work pool (GRISTMILL_WORK_POOL) on this machine.

It registers every deployment of prefect.yaml in the pool (the same upsert from each worker, so a
machine with only workers is complete), then becomes Prefect's own process worker for the pool.
Each flow run is a fresh Python process started by that worker, with this process's environment:
the worker's machine needs only the shared settings (database, object store, embeddings URL,
PREFECT_API_URL), no folder of another machine's.
"""

import os
import sys

from gristmill.errors import InvalidRequest
from gristmill.settings import Settings


def worker_command(settings: Settings, pool: str, *, name: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
               "--limit", str(settings.runner_flow_limit)]
    return command + (["--name", name] if name else [])


def run_worker(settings: Settings, *, pool: str | None = None, name: str | None = None) -> int:
    pool = pool or settings.work_pool
    if not pool:
        raise InvalidRequest("name the work pool with --pool or GRISTMILL_WORK_POOL", code="work_pool_missing")
    from flows.runner import register_in_work_pool

    register_in_work_pool(settings, pool)
    # Prefect's worker asks for scheduled runs every 10 s by default: a small job would wait 5 s on average.
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    # exec: signals reach Prefect's worker directly, and it stops its runs as it would alone.
    command = worker_command(settings, pool, name=name)
    os.execv(command[0], command)
    return 0  # not reached
