"""When a stage's Prefect task retries: only on errors that may pass (GristmillError.retryable)."""

from typing import Any

from gristmill.errors import GristmillError

# Back-off between attempts of stages that touch the network (fetch, embed).
NETWORK_RETRY_DELAYS_SECONDS = [2, 5, 15]


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry timeouts, 5xx, 429 and resets, never a corrupt file or a 404.

    Prefect 3.9's task engine hands over `Failed(data=exception)` for a task that raised; a returned
    failed state may hold a result record instead, which `result(raise_on_failure=False)` resolves to
    the exception (`_sync=True` because a sync task may run under an async flow's event loop).
    """
    if not state.is_failed():
        return False
    error = state.data
    if not isinstance(error, BaseException):
        error = state.result(raise_on_failure=False, _sync=True)
    return isinstance(error, GristmillError) and error.retryable
