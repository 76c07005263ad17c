"""Markdown and plain text: headings (ATX and setext) make sections, blank lines separate blocks.

Plain text gets the same treatment because notes pushed as text/plain are usually Markdown-ish; a
text without headings simply becomes one section of paragraphs. HTML reuses `split_markdown` on the
Markdown that trafilatura produces.
"""

import re
from typing import Any

from gristmill.documents import Document, Section
from tasks.parse.common import decode_text, first_line_title, json_safe, pick_title, source_name, title_from_filename

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_TOML_FRONT_MATTER = re.compile(r"\A\+\+\+[ \t]*\n(.*?\n)?\+\+\+[ \t]*(?:\n|\Z)", re.S)  # Hugo, Zola
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t])#+[ \t]*$")  # "## Title ##": the closing hashes are not text
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_OR_TABLE = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|\||>)")
_SIMPLE_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")


def parse_markdown(data: bytes, *, filename: str | None = None) -> Document:
    """Markdown as sections under their heading paths; front matter becomes document metadata."""
    return _parse(data, filename=filename, content_format="markdown")


def parse_text(data: bytes, *, filename: str | None = None) -> Document:
    """Plain text: paragraphs as blocks, split into sections wherever a Markdown-style heading stands."""
    return _parse(data, filename=filename, content_format="text")


def _parse(data: bytes, *, filename: str | None, content_format: str) -> Document:
    name = source_name(filename, None)
    text, encoding = decode_text(data, what="markdown file" if content_format == "markdown" else "text file")
    front, body = split_front_matter(text)
    sections, first_h1 = split_markdown(body)
    metadata: dict[str, Any] = {"encoding": encoding, **front}
    return Document(
        sections=sections,
        content_format=content_format,
        title=pick_title(front.get("title"), first_h1, title_from_filename(name), first_line_title(body)),
        metadata=metadata,
    )


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, rest) for a text opening with a `---` ... `---` (YAML) or `+++` ... `+++` (TOML)
    block; ({}, text) otherwise."""
    toml_match = _TOML_FRONT_MATTER.match(text)
    if toml_match:
        import tomllib

        try:
            loaded = tomllib.loads(toml_match.group(1) or "")
        except tomllib.TOMLDecodeError:
            return {}, text
        return {str(k): json_safe(v) for k, v in loaded.items()}, text[toml_match.end() :]
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    raw = match.group(1) or ""
    rest = text[match.end() :]
    try:
        import yaml

        loaded = yaml.safe_load(raw)
    except Exception:  # noqa: BLE001 - any YAML failure means "use the simple reading"
        loaded = None
    if isinstance(loaded, dict):
        return {str(k): json_safe(v) for k, v in loaded.items()}, rest
    simple = {}
    for line in raw.splitlines():
        m = _SIMPLE_KEY.match(line.strip())
        if m:
            simple[m.group(1)] = m.group(2).strip().strip("\"'")
    if not simple:
        return {}, text  # a leading thematic break, not front matter
    return simple, rest


def split_markdown(text: str) -> tuple[list[Section], str | None]:
    """Sections of Markdown text: each heading starts one, its path is the stack of enclosing headings.

    Blocks are paragraphs, lists, tables and whole fenced code blocks; heading lines are not repeated
    as blocks (they are the section's heading_path). Returns the sections and the first H1's text.
    """
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    paragraph: list[str] = []
    fence: str | None = None
    first_h1: str | None = None

    def flush_paragraph() -> None:
        block = "\n".join(paragraph).strip("\n")
        if block.strip():
            blocks.append(block)
        paragraph.clear()

    def close_section() -> None:
        flush_paragraph()
        if blocks:
            sections.append(Section(blocks=list(blocks), heading_path=[title for _, title in stack]))
        blocks.clear()

    def open_heading(level: int, title: str) -> None:
        nonlocal first_h1
        if level == 1 and first_h1 is None:
            first_h1 = title
        close_section()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))

    for line in text.split("\n"):
        if fence is not None:
            paragraph.append(line)
            if line.lstrip().startswith(fence):
                fence = None
                flush_paragraph()
            continue
        fence_match = _FENCE.match(line)
        if fence_match:
            flush_paragraph()
            fence = fence_match.group(1)
            paragraph.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            title = _ATX_CLOSING.sub("", atx.group(2) or "").strip()
            if title:
                open_heading(len(atx.group(1)), title)
            continue
        setext = _SETEXT.match(line)
        if setext and paragraph and len(paragraph) <= 3 and not _LIST_OR_TABLE.match(paragraph[0]):
            title = " ".join(p.strip() for p in paragraph)
            paragraph.clear()
            open_heading(1 if setext.group(1)[0] == "=" else 2, title)
            continue
        if not line.strip() or _THEMATIC_BREAK.match(line):
            flush_paragraph()
            continue
        paragraph.append(line)
    close_section()
    return sections, first_h1
