"""Metadata a caller attaches to a library or a source: a JSON object, however it arrives."""

import json
from typing import Any

from gristmill.errors import InvalidRequest


def metadata_from_json(text: str | None, where: str) -> dict[str, Any]:
    """The JSON object in `text` (a form field, a command-line flag named by `where`); {} for none."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"{where} is not valid JSON: {error}", code="invalid_metadata") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object", code="invalid_metadata")
    return value
