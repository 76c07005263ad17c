"""What a caller attaches to a library or a source, checked the same way however it arrives (a JSON
body, an upload form, the CLI): metadata within its limits, names, titles and ids without control
characters.
"""

import json
import re
from typing import Any

from gristmill.errors import InvalidRequest

# Metadata is copied into every chunk's tags and returned by every listing and search: these keep
# that cheap, and far from the 255 levels past which answers failed to serialise.
MAX_METADATA_DEPTH = 8  # levels of objects and arrays; {"a": 1} is 1 deep
MAX_METADATA_KEYS = 100  # keys at all levels together
MAX_METADATA_KEY_LENGTH = 200
MAX_METADATA_BYTES = 16 * 1024  # as compact UTF-8 JSON

# C0 controls, DEL and C1 controls (Unicode category Cc). NUL cannot be stored in PostgreSQL text
# at all, and the others in a name or an id only ever come from a mistake or an attack.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_CHARACTERS_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"  # the same, as the OpenAPI declares it


def check_plain_text(value: str, where: str) -> str:
    """`value` (a name, title, id or metadata key) if it holds no control character."""
    found = CONTROL_CHARACTERS.search(value)
    if found:
        raise InvalidRequest(
            f"{where} holds the control character U+{ord(found.group()):04X} at position {found.start()}; "
            "names, titles, ids and metadata keys may not contain control characters",
            code="control_characters",
            details={"field": where, "position": found.start()},
        )
    return value


def check_metadata(value: Any, where: str = "metadata") -> dict[str, Any]:
    """`value` if it is a JSON object within the limits above; else InvalidRequest naming the limit."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object", code="invalid_metadata")
    keys = 0
    pending: list[tuple[Any, int]] = [(value, 1)]  # iterative: the nesting is what is being checked
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list) and depth > MAX_METADATA_DEPTH:
            raise _over(where, "metadata_too_deep", f"is nested deeper than {MAX_METADATA_DEPTH} levels", MAX_METADATA_DEPTH)
        if isinstance(node, dict):
            keys += len(node)
            if keys > MAX_METADATA_KEYS:
                raise _over(where, "metadata_too_many_keys", f"has more than {MAX_METADATA_KEYS} keys", MAX_METADATA_KEYS)
            for key, child in node.items():
                _check_key(key, where)
                pending.append((child, depth + 1))
        elif isinstance(node, list):
            pending.extend((child, depth + 1) for child in node)
        elif isinstance(node, str) and "\x00" in node:
            raise InvalidRequest(f"{where} holds a string with a NUL character", code="control_characters", details={"field": where})
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise _over(where, "metadata_too_large", f"is {size:,} bytes as JSON; the limit is {MAX_METADATA_BYTES:,}", MAX_METADATA_BYTES)
    return value


def metadata_from_json(text: str | None, where: str) -> dict[str, Any]:
    """The JSON object in `text` (a form field, a command-line flag named by `where`); {} for none."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"{where} is not valid JSON: {error}", code="invalid_metadata") from None
    except RecursionError:
        raise _over(where, "metadata_too_deep", f"is nested deeper than {MAX_METADATA_DEPTH} levels", MAX_METADATA_DEPTH) from None
    return check_metadata(value, where)


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


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise InvalidRequest(f"{where} keys must be strings", code="invalid_metadata_key")
    if len(key) > MAX_METADATA_KEY_LENGTH:
        raise _over(
            where, "invalid_metadata_key", f"has a key of {len(key)} characters; the limit is {MAX_METADATA_KEY_LENGTH}", MAX_METADATA_KEY_LENGTH
        )
    check_plain_text(key, f"a key of {where}")


def _over(where: str, code: str, what: str, limit: int) -> InvalidRequest:
    return InvalidRequest(f"{where} {what}", code=code, details={"field": where, "limit": limit})
