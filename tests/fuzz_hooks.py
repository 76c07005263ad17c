"""Schemathesis hooks for tests/test_fuzz.py (loaded by the `st` process through SCHEMATHESIS_HOOKS).

Whatever the fuzzer puts into a `url` field, the request goes out with a URL on the test's loopback
web server instead: the API under test never stores, and no flow could ever fetch, another address.
And the fuzzer's own key is not revoked under it (its stateful phase finds the key's id in
`GET /v1/keys` and deletes it, after which every answer is a 401). Both run right before every
call, so every phase's cases pass through them, shrunk ones included.
"""

import os
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis.internal import lambda_sources

LOOPBACK_URL = os.environ.get("GRISTMILL_FUZZ_LOOPBACK_URL", "http://127.0.0.1:9/fuzz")
OWN_KEY_ID = os.environ.get("GRISTMILL_FUZZ_KEY_ID")


def _tolerant(describe: Callable[[Callable[..., Any]], str]) -> Callable[[Callable[..., Any]], str]:
    """CPython 3.11.7's `ast.parse` can raise SystemError ("AST constructor recursion depth mismatch",
    python/cpython#106905, fixed in 3.11.8) deep in a stack. Hypothesis parses a lambda's source only
    to name it in a strategy's repr, and that error ended a fuzz run as a tool error; a plainer name
    is all this costs."""

    def described(f: Callable[..., Any]) -> str:
        try:
            return describe(f)
        except SystemError:
            return "lambda"

    return described


lambda_sources.lambda_description = _tolerant(lambda_sources.lambda_description)


def on_loopback(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (LOOPBACK_URL if k == "url" and isinstance(v, str) else on_loopback(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [on_loopback(v) for v in value]
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict | list):
        case.body = on_loopback(case.body)
    if isinstance(kwargs.get("json"), dict | list):
        kwargs["json"] = on_loopback(kwargs["json"])
    if OWN_KEY_ID and (case.path_parameters or {}).get("key_id") == OWN_KEY_ID:
        case.path_parameters["key_id"] = "not-the-fuzzer-s-own-key"
