"""The normalised shapes that flow between stages: connector → parse → chunk → embed → upsert."""

from dataclasses import dataclass, field
from typing import Any, Literal

Origin = Literal["inline", "file", "url"]


@dataclass(frozen=True)
class FetchedContent:
    """Bytes of one source and what is known of them before parsing."""

    data: bytes
    content_type: str | None  # a MIME type if one was declared or sniffed
    uri: str | None  # file path or final URL after redirects
    filename: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. HTTP etag, last-modified


@dataclass
class Section:
    """A structural unit of a document: text under one heading path, tied to pages, rows or a record.

    `blocks` are the pieces the chunker may put in different chunks (paragraphs, list items, a table,
    a code definition, a CSV row, a JSON record); it never splits inside a block unless the block alone
    is over the token limit. Adjacent sections with the same heading path may share a chunk, whose
    page and row ranges then cover both (`page_start`/`page_end`, `metadata["row_start"/"row_end"]`).
    """

    blocks: list[str]
    heading_path: list[str] = field(default_factory=list)
    page_start: int | None = None
    page_end: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. row_start/row_end, language

    @property
    def text(self) -> str:
        return "\n\n".join(b for b in self.blocks if b)


@dataclass
class Document:
    """One source's extracted content, independent of its format."""

    sections: list[Section]
    content_format: str  # pdf, docx, html, markdown, text, csv, json, code
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # page_count, row_count, canonical_url, ...
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections if s.text)


def context_header(title: str | None, heading_path: list[str]) -> str:
    """The line that says where a chunk sits: "Title > Heading > Subheading" (a heading equal to the
    part before it is said once)."""
    parts: list[str] = []
    for part in (title, *heading_path):
        part = " ".join((part or "").split())
        if part and (not parts or parts[-1] != part):
            parts.append(part)
    return " > ".join(parts)


def indexed_text(context: str, text: str) -> str:
    """What is embedded and keyword-indexed for a chunk: its context header, a blank line, its text."""
    return f"{context}\n\n{text}" if context else text


@dataclass
class Chunk:
    """A piece of a document small enough to embed, with where it came from.

    `text` is the document's own text; `context` (title and heading path, see `context_header`)
    goes with it into the embedding and the keyword index, never into what a search returns.
    """

    index: int
    text: str
    token_count: int  # of `text`; with the context header the model reads at most its window
    heading_path: list[str] = field(default_factory=list)
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None  # offsets into Document.text
    char_end: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: str = ""

    @property
    def indexed_text(self) -> str:
        return indexed_text(self.context, self.text)
