"""PDF: sections per page, paragraphs found from line positions, running headers and footers dropped.

pypdf's plain extraction follows the content stream (which keeps columns in reading order) but puts
no blank line between paragraphs, so each line's baseline and font size are recorded through
pypdf's text visitor and a paragraph break is a vertical gap clearly larger than the page's usual
line spacing, a change of font size, or a bullet.

Headings are short paragraphs set larger than the body text; they open a new section and make its
heading path (a larger size ranks higher), so a chunk never runs from one topic into the next even
when both are on a page or a topic runs across pages. The heading line stays in the text too.
"""

import io
import logging
import re
import statistics
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, PyPdfError

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import (
    clean_title,
    is_placeholder_title,
    json_safe,
    page_list,
    pick_title,
    source_name,
    title_from_filename,
)

MAX_PAGES = 2000  # a 20 MB PDF can hold far more pages than anyone reads; keep the time bounded

_ROMAN = r"(?=[ivxlcdm])m{0,3}(?:c[md]|d?c{0,3})(?:x[cl]|l?x{0,3})(?:i[xv]|v?i{0,3})"
# "3", "- 3 -", "iv", "Page 3 of 10", "Seite 4", "3 / 10"
_PAGE_NUMBER = re.compile(
    rf"^(?:page|p\.|pg\.?|seite|página|pagina)?\s*[-–—(\[]?\s*(?:\d{{1,5}}|{_ROMAN})\s*[-–—)\]]?"
    r"\s*(?:(?:of|/|de|von|sur)\s*\d{1,5})?$",
    re.I,
)
_BULLET = re.compile(r"^\s*(?:[•◦▪▫■□●○·‣⁃∙*–-]\s+|\(?\d{1,2}[.)]\s+|\(?[a-z][.)]\s+)")
_HYPHENATED = re.compile(r"[^\W\d_]-$")
_DIGITS = re.compile(r"\d+")
_HEADER_ZONE = 2  # lines at each end of a page where running headers and footers live
_HEADER_SHARE = 0.6  # a line on at least this share of pages is a running header or footer
_HEADER_MIN_PAGES = 3
_RUNNING_MAX_CHARS = 120  # headers and footers are short; a repeated paragraph is content
_HEADING_MIN_STEP = 1.0  # points above the body size, and...
_HEADING_MIN_RATIO = 1.1  # ...times the body size, for a paragraph to be set as a heading
_HEADING_MAX_LINES = 3
# When most paragraphs would be headings (slides, posters), big type is the body, not structure.
_HEADING_MAX_SHARE = 0.5
# What pypdf raises on malformed files besides its own errors (it indexes, unpacks and inflates
# whatever the file claims). Not MemoryError: running out of memory is the sandbox's to report.
_PYPDF_FAILURES = (
    PyPdfError, ValueError, KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError,
    OverflowError, RecursionError, struct.error, zlib.error,
)  # fmt: skip


@dataclass
class _Line:
    text: str
    y: float | None  # baseline in PDF units (grows upwards), None if pypdf gave no position
    size: float  # effective font size, 0 when unknown


@dataclass
class _Paragraph:
    text: str
    size: float  # its largest line's font size
    line_count: int


def parse_pdf(data: bytes, *, filename: str | None = None, max_pages: int = MAX_PAGES) -> Document:
    """Text of a PDF as sections within a page (1-based page numbers) under its headings, paragraphs as blocks."""
    warnings: list[str] = []
    with _pypdf_warnings() as pypdf_log:
        reader = _open(data, pypdf_log)
        try:
            page_count = len(reader.pages)
        except _PYPDF_FAILURES as exc:
            raise _corrupt(exc, pypdf_log) from exc
        parsed_count = min(page_count, max_pages)
        if parsed_count < page_count:
            warnings.append(f"only the first {parsed_count} of {page_count} pages were parsed")
        pages: list[list[_Line]] = []
        unreadable: dict[int, str] = {}
        pictured: set[int] = set()  # pages with images and no text layer: scans that need OCR
        for index in range(parsed_count):
            try:
                pages.append(_page_lines(reader, index))
                if not pages[-1] and _has_images(reader.pages[index]):
                    pictured.add(index + 1)
            except _PYPDF_FAILURES as exc:
                unreadable[index + 1] = str(exc) or type(exc).__name__
                pages.append([])
        if unreadable and len(unreadable) == parsed_count:
            raise ParseError(
                f"corrupt or truncated PDF: no page could be read ({next(iter(unreadable.values()))})",
                code="corrupt_pdf",
            )
        metadata = _metadata(reader)

    _drop_running_lines(pages)
    paragraphs = [_paragraphs(lines) for lines in pages]
    # A page with neither text nor images is blank on purpose ("This page intentionally left blank"),
    # or holds only drawings: nothing is missing from it. Images without text are a scan.
    scanned_pages = [n for n, page in enumerate(paragraphs, start=1) if not page and n in pictured]
    sections = _sections(paragraphs, _heading_sizes(paragraphs, _body_size(pages)))
    if not sections:
        raise ParseError(
            "PDF has no extractable text (scanned?): it needs OCR before it can be ingested",
            code="no_text",
            details={"page_count": page_count},
        )
    if unreadable:
        reason = next(iter(unreadable.values()))
        warnings.append(f"pages that could not be read: {page_list(list(unreadable))} ({reason})")
    if scanned_pages:
        warnings.append(f"images but no text on pages {page_list(scanned_pages)} (scanned? they need OCR)")

    name = source_name(filename, None)
    first_page = pages[sections[0].page_start - 1]
    title = pick_title(
        metadata.pop("title", None),
        _heading_like(first_page, sections[0].blocks[0]),
        title_from_filename(name),
        first_page[0].text,
    )
    if parsed_count < page_count:
        metadata = {"pages_parsed": parsed_count, **metadata}
    return Document(
        sections=sections,
        content_format="pdf",
        title=title,
        metadata={"page_count": page_count, **metadata},
        warnings=warnings,
    )


def _open(data: bytes, pypdf_log: list[str]) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
    except _PYPDF_FAILURES as exc:
        raise _corrupt(exc, pypdf_log) from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError, PyPdfError) as exc:
            raise ParseError(
                "password-protected PDF", code="password_protected", details={"reason": str(exc)}
            ) from exc
        if opened == PasswordType.NOT_DECRYPTED:
            raise ParseError(
                "password-protected PDF",
                code="password_protected",
                details={"hint": "remove the password (or send a copy without one) and upload it again"},
            )
    return reader


def _corrupt(exc: BaseException, pypdf_log: list[str]) -> ParseError:
    reason = str(exc) or type(exc).__name__
    if pypdf_log:
        reason += f" ({'; '.join(dict.fromkeys(pypdf_log))})"
    return ParseError(f"corrupt or truncated PDF: {reason}", code="corrupt_pdf")


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    """Collect what pypdf logs (e.g. "EOF marker not found") to explain a failure, instead of stderr."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if len(messages) < 20:
                messages.append(record.getMessage())

    logger = logging.getLogger("pypdf")
    handler = _Collect(level=logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _page_lines(reader: PdfReader, index: int) -> list[_Line]:
    lines: list[_Line] = []
    parts: list[str] = []
    y: float | None = None
    size = 0.0

    def close_line() -> None:
        nonlocal y, size
        text = "".join(parts).strip()
        if text:
            lines.append(_Line(" ".join(text.split()), y, size))
        parts.clear()
        y, size = None, 0.0

    def visit(text: str, cm: list[float], tm: list[float], font: Any, font_size: float) -> None:
        nonlocal y, size
        for k, piece in enumerate(text.split("\n")):
            if k:
                close_line()
            if not piece:
                continue
            parts.append(piece)
            if piece.strip():
                if y is None:
                    y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
                scale = abs(tm[3] * cm[3]) or 1.0
                size = max(size, abs(font_size or 0.0) * scale)

    reader.pages[index].extract_text(visitor_text=visit)
    close_line()
    return lines


def _drop_running_lines(pages: list[list[_Line]]) -> None:
    """Remove running headers/footers and page numbers from the top and bottom of pages, in place.

    A running line is the same text on most pages, or the same text but for the page's own number
    ("Report 2024 - page 7"); "Chapter 3" atop page 12 differs by a number that is not the page's.
    """
    with_text = [lines for lines in pages if lines]
    exact: Counter[str] = Counter()
    numbered: Counter[str] = Counter()
    for lines in with_text:
        zone = [lines[i].text for i in _zone(lines) if len(lines[i].text) <= _RUNNING_MAX_CHARS]
        exact.update(set(zone))
        numbered.update({_DIGITS.sub("#", text) for text in zone})
    threshold = _HEADER_SHARE * len(with_text)
    enough_pages = len(with_text) >= _HEADER_MIN_PAGES
    for number, lines in enumerate(pages, start=1):
        drop = set()
        for i in _zone(lines):
            text = lines[i].text
            if _PAGE_NUMBER.match(text):
                drop.add(i)
            elif enough_pages and len(text) <= _RUNNING_MAX_CHARS and (
                exact[text] >= threshold
                or (numbered[_DIGITS.sub("#", text)] >= threshold and str(number) in _DIGITS.findall(text))
            ):
                drop.add(i)
        lines[:] = [line for i, line in enumerate(lines) if i not in drop]


def _zone(lines: list[_Line]) -> set[int]:
    """Indexes of lines that may be headers or footers: first and last in stream order and on the page."""
    n = len(lines)
    zone = set(range(min(_HEADER_ZONE, n))) | set(range(max(0, n - _HEADER_ZONE), n))
    placed = sorted((i for i in range(n) if lines[i].y is not None), key=lambda i: lines[i].y)
    zone.update(placed[:_HEADER_ZONE])
    zone.update(placed[-_HEADER_ZONE:])
    return zone


def _sections(pages: list[list[_Paragraph]], heading_sizes: set[float]) -> list[Section]:
    """Sections of at most one page each; a heading starts a new one under the enclosing headings.

    A heading followed at once by a subheading (a title over a chapter's first heading) travels
    with it into the subheading's section, rather than making a section of one line of its own.
    """
    sections: list[Section] = []
    stack: list[tuple[float, str]] = []  # (size, text) of the open headings, largest first
    for number, paragraphs in enumerate(pages, start=1):
        current = Section(blocks=[], heading_path=[text for _, text in stack], page_start=number, page_end=number)
        has_body = False
        for paragraph in paragraphs:
            if _is_heading(paragraph, heading_sizes):
                carried = [] if has_body else current.blocks
                if has_body:
                    sections.append(current)
                size = _rounded(paragraph.size)
                while stack and stack[-1][0] <= size:
                    stack.pop()
                stack.append((size, paragraph.text))
                current = Section(
                    blocks=carried, heading_path=[text for _, text in stack], page_start=number, page_end=number
                )
                has_body = False
            else:
                has_body = True
            current.blocks.append(paragraph.text)
        if current.blocks:
            sections.append(current)
    return sections


def _body_size(pages: list[list[_Line]]) -> float:
    """The font size most of the text is set in (by characters, not lines)."""
    chars: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            chars[_rounded(line.size)] += len(line.text)
    return chars.most_common(1)[0][0] if chars else 0.0


def _heading_sizes(pages: list[list[_Paragraph]], body_size: float) -> set[float]:
    if not body_size:
        return set()
    threshold = max(body_size + _HEADING_MIN_STEP, body_size * _HEADING_MIN_RATIO)
    candidates = [_rounded(p.size) for paragraphs in pages for p in paragraphs if p.size >= threshold and _heading_shaped(p)]
    total = sum(len(paragraphs) for paragraphs in pages)
    if len(candidates) > _HEADING_MAX_SHARE * total:
        return set()
    return set(candidates)


def _is_heading(paragraph: _Paragraph, heading_sizes: set[float]) -> bool:
    return _rounded(paragraph.size) in heading_sizes and _heading_shaped(paragraph)


def _heading_shaped(paragraph: _Paragraph) -> bool:
    return paragraph.line_count <= _HEADING_MAX_LINES and _looks_like_heading(paragraph.text)


def _rounded(size: float) -> float:
    return round(size * 2) / 2


def _paragraphs(lines: list[_Line]) -> list[_Paragraph]:
    if not lines:
        return []
    gaps = [
        prev.y - line.y
        for prev, line in zip(lines, lines[1:])
        if prev.y is not None and line.y is not None and 0 < prev.y - line.y < 3 * max(prev.size, 1.0)
    ]
    spacing = _line_spacing(gaps, statistics.median(line.size for line in lines))
    paragraphs: list[list[_Line]] = [[lines[0]]]
    for prev, line in zip(lines, lines[1:]):
        if _breaks(prev, line, spacing):
            paragraphs.append([])
        paragraphs[-1].append(line)
    return [
        _Paragraph(_join([line.text for line in paragraph]), max(line.size for line in paragraph), len(paragraph))
        for paragraph in paragraphs
        if paragraph
    ]


def _line_spacing(gaps: list[float], body_size: float) -> float | None:
    """The page's usual line spacing: its commonest gap, ties to the smaller.

    Not the median: on a page of few lines the paragraph gaps themselves pull a median up. With no
    gap seen twice, body text is rarely set looser than 1.5 times its font size.
    """
    if not gaps:
        return None
    counts = Counter(round(gap * 2) / 2 for gap in gaps)
    gap, seen = min(counts.items(), key=lambda item: (-item[1], item[0]))
    if seen >= 2:
        return gap
    return min(min(gaps), 1.5 * body_size) if body_size else min(gaps)


def _breaks(prev: _Line, line: _Line, spacing: float | None) -> bool:
    if _BULLET.match(line.text):
        return True
    if prev.size and line.size and abs(prev.size - line.size) > 1.0:
        return True
    if prev.y is None or line.y is None:
        return False
    gap = prev.y - line.y
    if gap < -1.0:
        return True  # moved up the page: a new column or box
    return spacing is not None and gap > spacing * 1.3


def _join(lines: list[str]) -> str:
    """Unwrap a paragraph's lines, joining words hyphenated across a line break ("infor-" "mation")."""
    text = ""
    for line in lines:
        if not text:
            text = line
        elif text.endswith("\xad"):
            text = text[:-1] + line
        elif _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text += " " + line
    return text.replace("\xad", "")


def _has_images(page: Any, depth: int = 0) -> bool:
    """The page draws an image: an image XObject, one inside a form XObject, or an inline image."""
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if resources is not None else None
        for reference in (xobjects.get_object() if xobjects is not None else {}).values():
            xobject = reference.get_object()
            subtype = xobject.get("/Subtype")
            if subtype == "/Image" or (subtype == "/Form" and depth < 3 and _has_images(xobject, depth + 1)):
                return True
        if depth == 0:
            contents = page.get_contents()
            return contents is not None and b"BI" in contents.get_data() and b"EI" in contents.get_data()
    except _PYPDF_FAILURES:
        return True  # unreadable resources: say so rather than call the page blank
    return False


def _heading_like(lines: list[_Line], first_block: str) -> str | None:
    """The first page's title: its largest-font line near the top, else a first line standing alone."""
    top = lines[:5]
    body_size = statistics.median(line.size for line in lines)
    biggest = max(top, key=lambda line: line.size)
    if biggest.size > body_size + 1.0 and _looks_like_heading(biggest.text):
        return biggest.text
    return first_block if first_block == top[0].text and _looks_like_heading(first_block) else None


def _looks_like_heading(text: str) -> bool:
    return 2 <= len(text) <= 120 and not text.endswith((".", ",", ";", ":")) and any(c.isalpha() for c in text)


def _metadata(reader: PdfReader) -> dict[str, Any]:
    try:
        info = reader.metadata
    except _PYPDF_FAILURES:
        return {}
    if not info:
        return {}
    found: dict[str, Any] = {}
    title = clean_title(info.title if isinstance(info.title, str) else None)
    if title and not is_placeholder_title(title):
        found["title"] = title
    for key, value in (("author", info.author), ("subject", info.subject)):
        cleaned = clean_title(value if isinstance(value, str) else None)
        if cleaned:
            found[key] = json_safe(cleaned)
    return found
