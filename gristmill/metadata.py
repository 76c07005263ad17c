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


# A source's own fields for agent memory. Its chunks carry them as `key=value` tags beside its
# metadata, so a metadata key of the same name would be indistinguishable from them.
MEMORY_FIELDS = ("user_id", "agent_id", "role", "categories")


def refuse_memory_field_keys(metadata: dict[str, Any], where: str = "metadata") -> None:
    """InvalidRequest (reserved_metadata_key) when `metadata` uses one of the MEMORY_FIELDS as a key."""
    reserved = [key for key in MEMORY_FIELDS if key in metadata]
    if reserved:
        raise InvalidRequest(
            f"{where} may not hold {reserved[0]!r}: it is a field of its own; give it beside {where}, not inside it",
            code="reserved_metadata_key",
        )
