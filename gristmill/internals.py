"""Every use of Prefect's and the standard library's private interfaces, each for a measured gain.

Nothing else in Gristmill reaches past a public interface. Each use below says what it buys; a
release that moves one fails tests/test_internals.py, which names the attribute (`PRIVATE_ATTRIBUTES`).
Where one is gone at run time, Gristmill falls back to the slower public way, never to a wrong answer.
"""

import base64
import importlib
import io
import multiprocessing
import os
import threading
import time
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util
from types import SimpleNamespace
from typing import Any

import httpx

from gristmill.tls import tls_context

# (module, attribute path): what this module relies on. The test imports each and resolves the path.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("prefect.runner._starter_direct", "run_flow_in_subprocess"),
    ("prefect.flow_engine", "run_flow_in_subprocess"),
    ("prefect.flow_engine", "multiprocessing"),
    ("prefect._internal.observers", ""),
    ("prefect.client.schemas.objects", "State.result"),
    ("multiprocessing.popen_forkserver", "Popen._launch"),
    ("multiprocessing.spawn", "get_preparation_data"),
    ("multiprocessing.context", "set_spawning_popen"),
    ("multiprocessing.forkserver", "connect_to_new_process"),
    ("multiprocessing.forkserver", "read_signed"),
    ("multiprocessing.forkserver", "_forkserver._stop"),
)


# --- flow-run processes forked, not spawned ------------------------------------------------------


def start_flow_runs_from_forkserver(preload: list[str]) -> None:
    """Make this process's Prefect runner fork each flow-run process from a forkserver with `preload`
    imported, where Prefect spawns a fresh interpreter.

    Buys: a single note's submit-to-searchable p50 went from 6.4 s to 0.74 s (bench/bench_latency.py);
    a fresh process spent 5-8 s of CPU importing Prefect, LanceDB and the flows.

    For a flow it holds (`add_flow`), Prefect's DirectSubprocessStarter calls its module's
    `run_flow_in_subprocess`, a seam its docstring offers for overriding. Ours calls Prefect's own
    function with a forkserver context where it asks for "spawn", so the child is prepared, and its
    run reported, exactly as Prefect does it. Should a release stop asking for the context that way,
    runs start spawned again: slower, never wrong.
    """
    from prefect import flow_engine
    from prefect.runner import _starter_direct

    forkserver_context = multiprocessing.get_context("forkserver")
    forkserver_context.set_forkserver_preload(preload)
    prefect_start = flow_engine.run_flow_in_subprocess
    forkserver_only = SimpleNamespace(get_context=lambda _method=None: forkserver_context, context=multiprocessing.context)
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


def import_late_prefect_modules() -> None:
    """Import what a flow run of Prefect's would import on first use, so the forkserver holds it.

    Buys: ~0.1 s of CPU per flow run (py-spy over bench/bench_latency.py), part of which is this module.
    """
    try:
        importlib.import_module("prefect._internal.observers")
    except ImportError:  # moved: each run imports whatever replaced it, as before
        pass


# --- flow runs created with one request -----------------------------------------------------------

QUICK_RETRY_DELAYS_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


class DeploymentRuns:
    """Creates flow runs of deployments with plain requests to Prefect's REST API, authenticated as
    Prefect's own client would be, over one kept-alive connection.

    Buys: under 20 concurrent clients the API took 10-14 s to accept a note through Prefect's client,
    0.1 s this way (bench/bench_latency.py). Concurrent creates mostly conflict with each other in
    Prefect's SQLite (a write after a read in one transaction fails at once when another write got
    in between); such a conflict is answered 503 and passes in milliseconds, but Prefect's client
    sleeps 2 s after any 503, even with retries off. Here a 503 is retried within milliseconds for
    ~3 s in all, one create at a time per process; anything longer (Prefect down) is raised, so a
    request never hangs. The body is Prefect's own request schema.
    """

    def __init__(self, api_url: str) -> None:
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

        headers = {}
        if auth := _plain(PREFECT_API_AUTH_STRING.value()):
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        elif key := _plain(PREFECT_API_KEY.value()):
            headers["Authorization"] = f"Bearer {key}"
        self.api_url = api_url
        self.http = httpx.Client(
            base_url=api_url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(30, connect=5), verify=tls_context()
        )
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def create(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str, name: str | None = None
    ) -> str:
        """The id of a new (or, for a key seen before, the same) scheduled run of `deployment`
        ("flow/deployment"). Raises httpx.HTTPError when Prefect cannot be reached or keeps refusing."""
        from prefect.client.schemas.actions import DeploymentFlowRunCreate
        from prefect.states import Scheduled, to_state_create

        fields: dict[str, Any] = {"parameters": parameters, "idempotency_key": idempotency_key, "state": to_state_create(Scheduled())}
        if name:
            fields["name"] = name
        body = DeploymentFlowRunCreate(**fields).model_dump(mode="json", exclude_unset=True)
        with self._lock:
            for delay in (*QUICK_RETRY_DELAYS_SECONDS, None):
                response = self._post(deployment, body)
                if response.status_code != 503 or delay is None:
                    break
                time.sleep(delay)
        response.raise_for_status()
        return str(response.json()["id"])

    def _post(self, deployment: str, body: dict[str, Any]) -> httpx.Response:
        if deployment not in self._ids:
            found = self.http.get(f"deployments/name/{deployment}")
            found.raise_for_status()
            self._ids[deployment] = found.json()["id"]
        response = self.http.post(f"deployments/{self._ids[deployment]}/create_flow_run", json=body)
        if response.status_code == 404:
            self._ids.pop(deployment, None)  # registered again under a new id: look it up next time
        return response


# --- what a failed task state holds ---------------------------------------------------------------


def failed_state_exception(state: Any) -> BaseException | None:
    """The exception behind a failed Prefect task state, for a `retry_condition_fn`.

    Prefect 3.9's task engine hands over `Failed(data=exception)` for a task that raised; a returned
    failed state may hold a result record instead, which `result(raise_on_failure=False)` resolves
    to the exception. `_sync=True` because a sync task may run under an async flow's event loop,
    where the public call would hand back a coroutine.
    """
    error = state.data
    if isinstance(error, BaseException):
        return error
    resolved = state.result(raise_on_failure=False, _sync=True)
    return resolved if isinstance(resolved, BaseException) else None


# --- the parse sandbox's processes -----------------------------------------------------------------


class _MainlessPopen(popen_forkserver.Popen):
    """popen_forkserver.Popen whose child does not import the parent's __main__.

    Buys: ~2.5 s per parse. multiprocessing makes every forkserver child re-run the parent's
    `__main__` module before the target runs (so functions defined there unpickle); for a flow run
    started as `python -m prefect.engine` that is importing Prefect again. Our targets live in
    importable modules, so the child's preparation leaves `__main__` out.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class MainlessForkServerProcess(context.ForkServerProcess):
    """A forkserver process started without re-running `__main__` (see `_MainlessPopen`)."""

    @staticmethod
    def _Popen(process_obj: Any) -> _MainlessPopen:  # noqa: N802 - multiprocessing's name
        return _MainlessPopen(process_obj)


def stop_forkserver() -> None:
    """Stop this process's forkserver; the next forkserver process starts a new one.

    Buys: ~100 MB per flow run once its sources are past parsing (the parsers' imports,
    bench/bench_memory.py). The stdlib stops a forkserver only in its own tests (`_stop`), so this
    is a no-op where that is gone.
    """
    stop_server = getattr(forkserver._forkserver, "_stop", None)
    if stop_server is not None:
        stop_server()


def _plain(secret) -> str | None:
    # Prefect 3.9's legacy `Setting.value()` hands back a secret setting as a plain str (its settings
    # models hold a SecretStr): take either.
    if secret is None:
        return None
    return secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
