"""The parse stage: FetchedContent in, one normalised Document out.

`parse_isolated` is what the pipeline calls (risky parsers run in a limited child process);
`parse_document` parses in-process; `parse_task` is `parse_isolated` as a Prefect task.
"""

from typing import Any

from tasks.parse.dispatch import parse_detected, parse_document, parse_isolated
from tasks.parse.formats import (
    SUPPORTED_FORMATS,
    SUPPORTED_MIME_TYPES,
    FormatSpec,
    check_size,
    detect_format,
    largest_size_limit,
)
from tasks.parse.sandbox import run_isolated

__all__ = [
    "SUPPORTED_FORMATS",
    "SUPPORTED_MIME_TYPES",
    "FormatSpec",
    "check_size",
    "detect_format",
    "largest_size_limit",
    "parse_detected",
    "parse_document",
    "parse_isolated",
    "parse_task",
    "run_isolated",
]


def __getattr__(name: str) -> Any:
    # Built on first access, not at import: importing Prefect takes ~2 s, and this package is
    # imported by every sandbox child and by the forkserver, which never need the task.
    if name == "parse_task":
        from prefect import task

        globals()["parse_task"] = task(name="parse", retries=0)(parse_isolated)
        return globals()["parse_task"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
