"""DOCX: body paragraphs and tables in order; Title and Heading N styles make the heading path.

The ZIP is vetted before python-docx sees it, because python-docx inflates every part into memory:
a small upload that unzips to gigabytes must be refused from the ZIP directory alone.
"""

import io
import re
import zipfile

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml.etree import LxmlError

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import pick_title, source_name, title_from_filename

MB = 1024 * 1024
# Deflate tops out near 1000:1 and real DOCX parts compress 3-30:1, so 250:1 on a part of any size
# is a bomb, not a document.
MAX_COMPRESSION_RATIO = 250
_RATIO_MIN_BYTES = 1 * MB  # tiny parts (empty styles) can have silly ratios harmlessly
_HEADING_STYLE = re.compile(r"^heading\s*(\d+)$", re.I)
_LIST_STYLE = re.compile(r"^list(?:\s+(?:bullet|number|continue|paragraph))?(?:\s+(\d+))?$", re.I)


def parse_docx(
    data: bytes, *, filename: str | None = None, max_uncompressed_bytes: int = 200 * MB
) -> Document:
    """A Word document as sections under its headings: paragraphs, list items and Markdown tables as blocks."""
    check_docx_zip(data, max_uncompressed_bytes=max_uncompressed_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
        items = list(document.iter_inner_content())
        core_title = document.core_properties.title
    except (PackageNotFoundError, KeyError, ValueError, LxmlError, zipfile.BadZipFile, AttributeError) as exc:
        raise ParseError(
            f"corrupt DOCX: its parts could not be read ({type(exc).__name__}: {exc})", code="corrupt_docx"
        ) from exc

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    first_heading: str | None = None
    warnings: list[str] = []

    def close_section() -> None:
        if blocks:
            sections.append(Section(blocks=list(blocks), heading_path=[title for _, title in stack]))
        blocks.clear()

    for item in items:
        if isinstance(item, Table):
            try:
                table = table_markdown(item)
            except (ValueError, IndexError, KeyError) as exc:
                warnings.append(f"a table could not be read: {exc}")
                continue
            if table:
                blocks.append(table)
            continue
        text = " ".join(item.text.split())
        if not text:
            continue
        level = _heading_level(item)
        if level is not None:
            close_section()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            first_heading = first_heading or text
            continue
        list_level = _list_level(item)
        blocks.append(text if list_level is None else "  " * list_level + "- " + text)
    close_section()

    if not sections:
        raise ParseError("DOCX has no text", code="no_text")
    name = source_name(filename, None)
    return Document(
        sections=sections,
        content_format="docx",
        title=pick_title(core_title, first_heading, title_from_filename(name)),
        metadata={"paragraph_count": sum(isinstance(i, Paragraph) for i in items)},
        warnings=warnings,
    )


def check_docx_zip(data: bytes, *, max_uncompressed_bytes: int) -> None:
    """Refuse what is not a DOCX ("corrupt_docx") or would unzip to too much ("zip_bomb")."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
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


def table_markdown(table: Table) -> str:
    """A Word table as a Markdown table, its first row taken as the header."""
    rows = [[_cell_text(cell.text) for cell in row.cells] for row in table.rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _cell_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _heading_level(paragraph: Paragraph) -> int | None:
    name = _style_name(paragraph)
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    if match:
        return int(match.group(1))
    outline = paragraph._p.pPr.outlineLvl if paragraph._p.pPr is not None else None  # noqa: SLF001
    if outline is not None and outline.val is not None and int(outline.val) < 9:
        return int(outline.val) + 1
    return None


def _list_level(paragraph: Paragraph) -> int | None:
    ppr = paragraph._p.pPr  # noqa: SLF001 - numbering has no public API in python-docx
    if ppr is not None and ppr.numPr is not None:
        ilvl = ppr.numPr.ilvl
        return int(ilvl.val) if ilvl is not None and ilvl.val is not None else 0
    match = _LIST_STYLE.match(_style_name(paragraph))
    if match:
        return int(match.group(1)) - 1 if match.group(1) else 0
    return None


def _style_name(paragraph: Paragraph) -> str:
    try:
        style = paragraph.style
    except (KeyError, ValueError):
        return ""
    return (style.name or "") if style is not None else ""
