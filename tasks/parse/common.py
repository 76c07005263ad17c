"""Helpers every format parser shares: decoding text of unknown encoding, titles, JSON-safe metadata."""

import codecs
import datetime as dt
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from gristmill.errors import ParseError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newline, vertical tab, form feed and carriage return; DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# A non-ASCII non-letter between two letters, as cp1252 renders Central European letters
# (ł -> ³, ż -> ¿); curly apostrophes, middle dots and soft hyphens do sit inside Western words.
_SYMBOL_INSIDE_WORD = re.compile(r"[^\W\d_](?:(?![^\W\d_]|[\u2018\u2019\u00b7\u00ad])[^\x00-\x7f])[^\W\d_]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_LETTER = re.compile(r"[^\W\d_]")
_SAMPLE_CHARS = 200_000
MAX_TITLE_CHARS = 200
# Compound File Binary: Office 97-2003 files, and the wrapper Office puts around an encrypted
# DOCX/XLSX/PPTX, whose directory then names an "EncryptedPackage" stream (UTF-16LE, as CFB spells names).
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def is_encrypted_office_file(data: bytes) -> bool:
    """True for a password-protected Office 2007+ file (a CFB container holding an EncryptedPackage)."""
    return data.startswith(OLE_SIGNATURE) and _ENCRYPTED_PACKAGE in data


def decode_text(data: bytes, *, what: str = "file") -> tuple[str, str]:
    """Decode bytes of unknown encoding to text; return (text, encoding).

    Raises ParseError "not_text" for binary content: NUL bytes outside UTF-16/32, or text that no
    encoding turns into mostly printable characters.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(data.decode(encoding, errors="replace"), encoding, what), encoding
    utf16 = utf16_without_bom(data[:4096])
    if utf16:
        return _checked(data.decode(utf16, errors="replace"), utf16, what), utf16
    if b"\x00" in data:
        raise ParseError(f"{what} contains NUL bytes: it looks binary, not text", code="not_text")
    try:
        return _checked(data.decode("utf-8"), "utf-8", what), "utf-8"
    except UnicodeDecodeError:
        pass
    # charset-normalizer misreads short Western text (Latin-1 "très" as cp1257 "trčs"), and
    # cp1252 is by far the commonest legacy encoding, so it is tried first with a plausibility check.
    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None and _plausibly_western(western):
        return _checked(western, "cp1252", what), "cp1252"
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise ParseError(f"{what} is not text in any encoding recognised (binary?)", code="not_text")
    return _checked(data.decode(best.encoding, errors="replace"), best.encoding, what), best.encoding


def utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" or "utf-16-be" for UTF-16 text written without a byte-order mark, judged on its
    opening bytes: mostly-Latin UTF-16 has a zero in every other byte and almost none in the others."""
    if len(head) < 8:
        return None
    head = head[: len(head) // 2 * 2]
    even, odd = head[0::2], head[1::2]
    for zeros, letters, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros.count(0) >= 0.9 * len(zeros) and letters.count(0) <= 0.05 * len(letters):
            return encoding
    return None


def _plausibly_western(text: str) -> bool:
    sample = text[:_SAMPLE_CHARS]
    if _CONTROL.search(sample) or _SYMBOL_INSIDE_WORD.search(sample):
        return False
    letters = len(_LETTER.findall(sample))
    # Western European text is mostly ASCII letters; Cyrillic or Greek read as cp1252 is mostly not.
    return letters > 0 and len(_NON_ASCII.findall(sample)) / letters < 0.3


def _checked(text: str, encoding: str, what: str) -> str:
    sample = text[:_SAMPLE_CHARS]
    if not sample:
        return text
    junk = len(_CONTROL.findall(sample)) + sample.count("\ufffd")
    if junk / len(sample) > 0.02:
        raise ParseError(
            f"{what} is mostly binary junk ({junk} control or undecodable characters in the first "
            f"{len(sample)} as {encoding}), not text",
            code="not_text",
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")


def source_name(filename: str | None, uri: str | None) -> str | None:
    """The file name a source is known by: its filename, else the last segment of its URI's path."""
    if filename:
        return PurePosixPath(filename.replace("\\", "/")).name or None
    if uri:
        name = PurePosixPath(unquote(urlparse(uri).path)).name
        return name or None
    return None


def extension(filename: str | None, uri: str | None) -> str:
    """Lower-case extension with its dot (".pdf"), or "" when the source has none."""
    name = source_name(filename, uri)
    return PurePosixPath(name).suffix.lower() if name else ""


def title_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    stem = PurePosixPath(filename).stem.strip()
    return stem or None


def clean_title(title: Any) -> str | None:
    """A metadata title fit for display, or None for empty ones."""
    if not isinstance(title, str):
        return None
    title = " ".join(title.split())
    return title[:MAX_TITLE_CHARS] or None


# What tools write into a title field when nobody gave one: a template's default, the file name.
_PLACEHOLDER_TITLE = re.compile(
    r"^(?:untitled(?:[ -]?\d+)?|untitled document|no title|title|document\d*|new document|word document"
    r"|microsoft word - .*|microsoft powerpoint - .*|powerpoint presentation|presentation\d*|slide \d+"
    r"|[^/\\]*\.(?:docx?|dotx?|rtf|odt|pdf|tex|dvi|ps|pptx?|indd|pages|txt))$",
    re.I,
)


def is_placeholder_title(title: str) -> bool:
    """True for a default that an editor or converter wrote in the title field: not the document's title."""
    return bool(_PLACEHOLDER_TITLE.match(" ".join(title.split())))


def first_line_title(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if any(c.isalnum() for c in line):  # not a rule like "---" or "==="
            return line[:MAX_TITLE_CHARS]
    return None


def pick_title(*candidates: str | None) -> str | None:
    """The first candidate that is a title: not empty, not a placeholder such as "Word Document"."""
    for candidate in candidates:
        cleaned = clean_title(candidate)
        if cleaned and not is_placeholder_title(cleaned):
            return cleaned
    return None


def json_safe(value: Any) -> Any:
    """Metadata values as JSON can carry them (YAML gives dates; PDF metadata gives odd objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    return str(value)


def page_list(pages: list[int]) -> str:
    """1, 2, 3, 5, 7, 8 -> "1-3, 5, 7-8": short enough for a warning even for thousands of pages."""
    ranges: list[str] = []
    start = prev = None
    for page in sorted(pages):
        if start is None:
            start = prev = page
        elif page == prev + 1:
            prev = page
        else:
            ranges.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = page
    if start is not None:
        ranges.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(ranges)


def table_markdown(rows: list[list[str]]) -> str:
    """Table rows as a Markdown table, the first row taken as the header."""
    rows = [[cell.replace("|", "\\|") for cell in row] for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)
