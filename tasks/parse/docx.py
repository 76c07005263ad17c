"""DOCX: body paragraphs and tables in order; Title and Heading N styles make the heading path.

The ZIP is vetted before python-docx sees it, because python-docx inflates every part into memory:
a small upload that unzips to gigabytes must be refused from the ZIP directory alone.

The body is walked here rather than through python-docx's `iter_inner_content` and `Paragraph.text`,
which see only direct `w:p`/`w:r` children: text inside content controls (`w:sdt`, which templates
and forms are full of), tracked insertions (`w:ins`), fields and text boxes would be lost.
"""

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.text.paragraph import Paragraph
from lxml.etree import LxmlError, _Element

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import (
    OLE_SIGNATURE,
    is_encrypted_office_file,
    pick_title,
    source_name,
    table_markdown,
    title_from_filename,
)

MB = 1024 * 1024
# Deflate tops out near 1000:1 and real DOCX parts compress 3-30:1, so 250:1 on a part of any size
# is a bomb, not a document.
MAX_COMPRESSION_RATIO = 250
_RATIO_MIN_BYTES = 1 * MB  # tiny parts (empty styles) can have silly ratios harmlessly
_HEADING_STYLE = re.compile(r"^heading\s*(\d+)$", re.I)
_LIST_STYLE = re.compile(r"^list(?:\s+(?:bullet|number|continue|paragraph))?(?:\s+(\d+))?$", re.I)
# Word's generated table of contents repeats every heading; as a chunk it would answer every question.
_TOC_STYLE = re.compile(r"^toc\s*(?:heading|\d+)$", re.I)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_P, _TBL, _TR, _TC, _R = _W + "p", _W + "tbl", _W + "tr", _W + "tc", _W + "r"
_SDT, _SDT_CONTENT, _TXBX = _W + "sdt", _W + "sdtContent", _W + "txbxContent"
# Elements that only wrap content of the level they sit at: the content counts, the wrapper does not.
_WRAPPERS = frozenset({_W + "customXml", _W + "ins", _W + "moveTo", _W + "smartTag", _W + "fldSimple", _W + "hyperlink"})
# Never text: deleted or moved-away revisions, properties, and the legacy copy of a drawing that
# Word writes next to the modern one (its text box would appear twice).
_NOT_TEXT = frozenset(
    {_W + "del", _W + "moveFrom", _W + "pPr", _W + "rPr", _W + "sdtPr", _W + "sdtEndPr", _W + "tblPr",
     _W + "tblGrid", _W + "trPr", _W + "tcPr", _MC + "Fallback"}
)  # fmt: skip


@dataclass
class _Item:
    element: _Element  # a w:p or w:tbl
    in_body: bool  # False inside text boxes: their paragraphs are never headings


def parse_docx(
    data: bytes, *, filename: str | None = None, max_uncompressed_bytes: int = 200 * MB
) -> Document:
    """A Word document as sections under its headings: paragraphs, list items and Markdown tables as blocks."""
    check_docx_zip(data, max_uncompressed_bytes=max_uncompressed_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
        body = document.element.body
        core_title = document.core_properties.title
        part = document.part
    except (PackageNotFoundError, KeyError, ValueError, LxmlError, zipfile.BadZipFile, AttributeError) as exc:
        raise ParseError(
            f"corrupt DOCX: its parts could not be read ({type(exc).__name__}: {exc})", code="corrupt_docx"
        ) from exc

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    first_heading: str | None = None
    paragraph_count = 0

    def close_section() -> None:
        if blocks:
            sections.append(Section(blocks=list(blocks), heading_path=[title for _, title in stack]))
        blocks.clear()

    for item in _items(body, in_body=True):
        if item.element.tag == _TBL:
            table = table_markdown(table_rows(item.element))
            if table:
                blocks.append(table)
            continue
        paragraph = Paragraph(item.element, part)  # python-docx resolves its style through the part
        style = _style_name(paragraph)
        text = " ".join(paragraph_text(item.element).split())
        if not text or _TOC_STYLE.match(style):
            continue
        paragraph_count += 1
        level = _heading_level(paragraph, style) if item.in_body else None
        if level is not None:
            close_section()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            first_heading = first_heading or text
            continue
        list_level = _list_level(paragraph, style)
        blocks.append(text if list_level is None else "  " * list_level + "- " + text)
    close_section()

    if not sections:
        raise ParseError("DOCX has no text", code="no_text")
    name = source_name(filename, None)
    return Document(
        sections=sections,
        content_format="docx",
        title=pick_title(core_title, first_heading, title_from_filename(name)),
        metadata={"paragraph_count": paragraph_count},
    )


def check_docx_zip(data: bytes, *, max_uncompressed_bytes: int) -> None:
    """Refuse what is not a DOCX ("corrupt_docx", "password_protected") or would unzip to too much ("zip_bomb")."""
    if is_encrypted_office_file(data):
        raise ParseError(
            "password-protected DOCX",
            code="password_protected",
            details={"hint": "remove the password (or send a copy without one) and upload it again"},
        )
    if data.startswith(OLE_SIGNATURE):
        raise ParseError(
            "not a DOCX: this is a Word 97-2003 (.doc) file; save it as .docx and upload it again",
            code="corrupt_docx",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if data.startswith(b"PK\x03\x04"):  # a ZIP's first member, but no central directory at the end
            raise ParseError(f"corrupt or truncated DOCX: the ZIP archive is incomplete ({exc})", code="corrupt_docx") from exc
        raise ParseError(f"corrupt DOCX: not a ZIP archive ({exc})", code="corrupt_docx") from exc
    if not any(info.filename == "word/document.xml" for info in infos):
        raise ParseError("corrupt DOCX: the archive has no word/document.xml", code="corrupt_docx")
    # zipfile stops inflating a member at its declared size, so the directory's sizes are a true bound.
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed_bytes:
        raise ParseError(
            f"DOCX unzips to {total / MB:.0f} MB, over the {max_uncompressed_bytes / MB:.0f} MB limit "
            "(zip bomb?)",
            code="zip_bomb",
            details={"uncompressed_bytes": total, "limit_bytes": max_uncompressed_bytes},
        )
    for info in infos:
        if info.file_size >= _RATIO_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ParseError(
                f"DOCX part {info.filename} compresses {ratio:.0f}:1, far beyond any real document "
                "(zip bomb?)",
                code="zip_bomb",
                details={"part": info.filename, "ratio": round(ratio)},
            )


def _items(container: _Element, *, in_body: bool) -> Iterator[_Item]:
    """The paragraphs and tables of a body, cell or text box in reading order, wrappers opened."""
    for child in container:
        tag = child.tag
        if tag == _P:
            yield _Item(child, in_body)
            for box in _text_boxes(child):  # a text box anchored in a paragraph reads after it
                yield from _items(box, in_body=False)
        elif tag == _TBL:
            yield _Item(child, in_body)
        elif tag == _SDT:
            if not _is_table_of_contents(child):
                for content in child.iterchildren(_SDT_CONTENT):
                    yield from _items(content, in_body=in_body)
        elif tag in _WRAPPERS:
            yield from _items(child, in_body=in_body)


def _is_table_of_contents(sdt: _Element) -> bool:
    gallery = sdt.find(f"{_W}sdtPr/{_W}docPartObj/{_W}docPartGallery")
    return gallery is not None and (gallery.get(_W + "val") or "").lower() == "table of contents"


def _text_boxes(paragraph: _Element) -> Iterator[_Element]:
    """w:txbxContent elements in a paragraph's runs, outermost only, the legacy fallback copies skipped."""
    for child in paragraph:
        tag = child.tag
        if not isinstance(tag, str) or tag in _NOT_TEXT:
            continue
        if tag == _TXBX:
            yield child
        else:
            yield from _text_boxes(child)


def paragraph_text(paragraph: _Element) -> str:
    """The visible text of a w:p: runs at any depth (links, fields, content controls, insertions),
    not deleted revisions, not text boxes (read as paragraphs of their own)."""
    parts: list[str] = []
    _collect_text(paragraph, parts)
    return "".join(parts)


def _collect_text(element: _Element, parts: list[str]) -> None:
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or tag in _NOT_TEXT or tag == _TXBX:
            continue
        if tag == _R:
            parts.append(_run_text(child))
        else:
            _collect_text(child, parts)


def _run_text(run: _Element) -> str:
    parts = []
    for child in run:
        tag = child.tag
        if tag == _W + "t":
            parts.append(child.text or "")
        elif tag in (_W + "tab", _W + "ptab"):
            parts.append("\t")
        elif tag in (_W + "br", _W + "cr"):
            parts.append("\n")
        elif tag == _W + "noBreakHyphen":
            parts.append("-")
    return "".join(parts)


def table_rows(table: _Element) -> list[list[str]]:
    """A w:tbl's cell texts, one entry per grid column: a cell spanning columns fills the first and
    leaves the rest empty; a cell merged down from above repeats the text above, so each row reads whole."""
    rows: list[list[str]] = []
    above: dict[int, str] = {}
    for tr in _children(table, _TR):
        before = tr.find(f"{_W}trPr/{_W}gridBefore")
        column = _int(before.get(_W + "val"), 0) if before is not None else 0
        row = [""] * column
        for tc in _children(tr, _TC):
            span = tc.find(f"{_W}tcPr/{_W}gridSpan")
            width = max(1, _int(span.get(_W + "val"), 1)) if span is not None else 1
            merge = tc.find(f"{_W}tcPr/{_W}vMerge")
            if merge is not None and merge.get(_W + "val", "continue") != "restart":
                text = above.get(column, "")
            else:
                text = _cell_text(tc)
            above[column] = text
            row += [text] + [""] * (width - 1)
            column += width
        rows.append(row)
    return rows


def _children(element: _Element, tag: str) -> Iterator[_Element]:
    """Children with `tag`, looking through content controls and other wrappers."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag == _SDT:
            for content in child.iterchildren(_SDT_CONTENT):
                yield from _children(content, tag)
        elif child.tag in _WRAPPERS:
            yield from _children(child, tag)


def _cell_text(cell: _Element) -> str:
    texts = []
    for item in _items(cell, in_body=False):
        if item.element.tag == _TBL:  # a nested table flattens into its cell
            texts += [text for row in table_rows(item.element) for text in row if text]
        else:
            texts.append(paragraph_text(item.element))
    return " ".join(" ".join(texts).split())


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _heading_level(paragraph: Paragraph, style: str) -> int | None:
    if style.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(style)
    if match:
        return int(match.group(1))
    outline = paragraph._p.pPr.outlineLvl if paragraph._p.pPr is not None else None  # noqa: SLF001
    if outline is not None and outline.val is not None and int(outline.val) < 9:
        return int(outline.val) + 1
    return None


def _list_level(paragraph: Paragraph, style: str) -> int | None:
    ppr = paragraph._p.pPr  # noqa: SLF001 - numbering has no public API in python-docx
    if ppr is not None and ppr.numPr is not None:
        ilvl = ppr.numPr.ilvl
        return int(ilvl.val) if ilvl is not None and ilvl.val is not None else 0
    match = _LIST_STYLE.match(style)
    if match:
        return int(match.group(1)) - 1 if match.group(1) else 0
    return None


def _style_name(paragraph: Paragraph) -> str:
    try:
        style = paragraph.style
    except (KeyError, ValueError, AttributeError):
        return ""
    return (style.name or "") if style is not None else ""
