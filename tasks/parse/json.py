"""JSON and JSON Lines: values flattened to `path.to.key: value` lines, one section per record.

A top-level array gives one section per element (metadata record_index); a top-level object gives
one section per key holding an object or array, and one for its plain values together; JSON Lines
give one section per line (metadata record_index and line).
"""

import json
from typing import Any

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import decode_text, pick_title, source_name, title_from_filename

MAX_DEPTH = 100  # deeper nesting is an attack or a mistake, and would exhaust the recursion limit


def parse_json(data: bytes, *, filename: str | None = None, lines: bool | None = None) -> Document:
    """JSON (or JSON Lines when `lines`, or when the text is several JSON values one per line)."""
    text, encoding = decode_text(data, what="JSON file")
    name = source_name(filename, None)
    if lines is None:
        lines = (name or "").lower().endswith((".jsonl", ".ndjson"))
    if lines:
        document = _document_for_lines(_load_lines(text))
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            document = _document_for_lines(_maybe_lines(text, exc))
        except RecursionError as exc:
            raise _too_deep() from exc
        else:
            document = _document_for_value(value)
    document.title = pick_title(document.title, title_from_filename(name)) or "JSON"
    document.metadata["encoding"] = encoding
    return document


def flatten(value: Any, path: str = "", *, depth: int = 0) -> list[str]:
    """`path: value` lines for every leaf: objects add `.key`, arrays add `[i]`; empty ones stay visible.

    A record's own fields start the paths (`name: Ada`, `tags[0]: x`): the section says which record.
    """
    if depth > MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, dict):
        if not value:
            return [f"{path or '.'}: {{}}"]
        lines = []
        for key, child in value.items():
            lines += flatten(child, f"{path}.{key}" if path else str(key), depth=depth + 1)
        return lines
    if isinstance(value, list):
        if not value:
            return [f"{path or '.'}: []"]
        lines = []
        for index, child in enumerate(value):
            lines += flatten(child, f"{path}[{index}]", depth=depth + 1)
        return lines
    return [f"{path}: {_scalar(value)}" if path else _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false/null and numbers as JSON spells them


def _document_for_value(value: Any) -> Document:
    sections: list[Section] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            sections.append(
                Section(blocks=["\n".join(flatten(item))], metadata={"record_index": index})
            )
        return Document(sections=sections, content_format="json", metadata={"record_count": len(value)})
    if not isinstance(value, dict):
        return Document(sections=[Section(blocks=[_scalar(value)])], content_format="json")
    plain: list[str] = []
    for key, child in value.items():
        if isinstance(child, (dict, list)) and child:
            if plain:
                sections.append(Section(blocks=["\n".join(plain)]))
                plain = []
            sections.append(Section(blocks=_key_blocks(str(key), child), heading_path=[str(key)]))
        else:
            plain += flatten(child, str(key))
    if plain:
        sections.append(Section(blocks=["\n".join(plain)]))
    title = value.get("title") or value.get("name")
    return Document(
        sections=sections,
        content_format="json",
        title=title if isinstance(title, str) else None,
        metadata={"key_count": len(value)},
    )


def _key_blocks(key: str, child: dict[str, Any] | list[Any]) -> list[str]:
    """Blocks of a top-level key's value: one per record, so a chunk boundary never falls inside one.

    The elements of an array are its records. An object is opened down to its arrays, so the
    records of `{"data": {"items": [...]}}` are the items, not the whole of "data"; an object's
    plain values between its containers travel together as one block.
    """
    blocks: list[str] = []
    _collect_blocks(child, key, 1, blocks)
    return blocks


def _collect_blocks(value: dict[str, Any] | list[Any], path: str, depth: int, blocks: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, list):
        for index, item in enumerate(value):
            blocks.append("\n".join(flatten(item, f"{path}[{index}]", depth=depth + 1)))
        return
    plain: list[str] = []
    for key, child in value.items():
        child_path = f"{path}.{key}"
        if isinstance(child, (dict, list)) and child:
            if plain:
                blocks.append("\n".join(plain))
                plain = []
            _collect_blocks(child, child_path, depth + 1, blocks)
        else:
            plain += flatten(child, child_path, depth=depth + 1)
    if plain:
        blocks.append("\n".join(plain))


def _document_for_lines(records: list[tuple[int, Any]]) -> Document:
    sections = [
        Section(
            blocks=["\n".join(flatten(record))],
            metadata={"record_index": index, "line": line},
        )
        for index, (line, record) in enumerate(records)
    ]
    if not sections:
        raise ParseError("JSON Lines file has no records", code="invalid_json")
    return Document(
        sections=sections, content_format="json", metadata={"record_count": len(records), "json_lines": True}
    )


def _load_lines(text: str) -> list[tuple[int, Any]]:
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ParseError(
                f"invalid JSON on line {number}, column {exc.colno}: {exc.msg}",
                code="invalid_json",
                details={"line": number, "column": exc.colno},
            ) from exc
        except RecursionError as exc:
            raise _too_deep() from exc
    return records


def _maybe_lines(text: str, error: json.JSONDecodeError) -> list[tuple[int, Any]]:
    """JSON Lines sent as plain JSON: "Extra data" after a first value that filled its line."""
    if error.msg == "Extra data" and error.lineno > 1:
        try:
            return _load_lines(text)
        except ParseError:
            pass
    raise ParseError(
        f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
        code="invalid_json",
        details={"line": error.lineno, "column": error.colno},
    ) from error


def _too_deep() -> ParseError:
    return ParseError(f"JSON is nested more than {MAX_DEPTH} levels deep", code="invalid_json")
