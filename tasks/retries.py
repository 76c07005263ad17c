"""When a stage's Prefect task retries: only on errors that may pass (GristmillError.retryable)."""

from typing import Any

from gristmill.errors import GristmillError
from gristmill.internals import failed_state_exception

# Back-off between attempts of stages that touch the network (fetch, embed).
NETWORK_RETRY_DELAYS_SECONDS = [2, 5, 15]


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry timeouts, 5xx, 429 and resets, never a corrupt file or a 404."""
    if not state.is_failed():
        return False
    return isinstance(error := failed_state_exception(state), GristmillError) and error.retryable
