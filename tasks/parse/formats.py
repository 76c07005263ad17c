"""Which format a source is in, and whether it is small enough to parse.

Order of evidence: the bytes themselves when they are decisive (a PDF header, a ZIP holding
word/document.xml, a PNG signature, a page opening with <!DOCTYPE html>), then the declared MIME type,
then the file extension, then a sniff of text versus binary. Declared types lie often (a PDF served as
application/octet-stream or named .txt, an error page served as application/pdf); magic bytes do not.
"""

import io
import json
import re
import zipfile
from dataclasses import dataclass

from gristmill.documents import FetchedContent
from gristmill.errors import PayloadTooLarge, UnsupportedType
from gristmill.file_types import FORMAT_LABELS, format_extensions, format_mime_types
from gristmill.settings import MB, Settings
from tasks.parse.common import OLE_SIGNATURE, extension, is_encrypted_office_file, source_name, utf16_without_bom


@dataclass(frozen=True)
class FormatSpec:
    name: str
    label: str
    mime_types: tuple[str, ...]
    extensions: tuple[str, ...]


SUPPORTED_FORMATS: dict[str, FormatSpec] = {
    name: FormatSpec(name, label, format_mime_types(name), format_extensions(name)) for name, label in FORMAT_LABELS.items()
}
SUPPORTED_MIME_TYPES: frozenset[str] = frozenset(m for spec in SUPPORTED_FORMATS.values() for m in spec.mime_types)

_BY_MIME = {mime: spec.name for spec in SUPPORTED_FORMATS.values() for mime in spec.mime_types}
_BY_EXTENSION = {ext: spec.name for spec in SUPPORTED_FORMATS.values() for ext in spec.extensions}
# Declared types that say nothing about the content: the extension or a sniff decides instead.
_GENERIC_MIMES = {"", "application/octet-stream", "binary/octet-stream", "application/unknown", "text/plain"}
# Only signatures no real text starts with (most hold control bytes): a note that begins "MZ" or
# "ID3" must not be refused as an executable or an MP3.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"{\\rtf", "an RTF document (save it as DOCX or PDF)"),  # text, but all markup
)
_SNIFF_JSON_MAX_BYTES = 8 * MB
_SNIFF_LINES_BYTES = 64 * 1024
_HTML_START = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)


def detect_format(content: FetchedContent) -> str:
    """One of pdf, docx, html, markdown, text, csv, json, code; UnsupportedType for anything else."""
    data = content.data
    head = data[:4096]
    mime = _mime(content)
    ext = extension(content.filename, content.uri)
    declared = declared_format(content)

    pdf_at = data.find(b"%PDF-", 0, 1024)
    # Readers accept junk before the header, but a Markdown page about PDFs is not a PDF.
    if pdf_at == 0 or (pdf_at > 0 and _BY_MIME.get(mime, _BY_EXTENSION.get(ext, "pdf")) == "pdf"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        if _is_docx(data):
            return "docx"
        if declared != "docx":
            raise _unsupported(content, "a ZIP archive that is not a Word document")
    if head.startswith(OLE_SIGNATURE):
        if is_encrypted_office_file(data):
            if declared == "docx":
                return "docx"  # the DOCX parser names the problem: a password
            raise _unsupported(content, "a password-protected Office document")
        raise _unsupported(content, "a legacy Office file (.doc/.xls/.ppt)")
    for signature, what in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise _unsupported(content, what)

    # A page that opens as HTML is HTML whatever it is called, except where HTML legitimately
    # starts a file of another kind (a PHP or JSX template is code).
    if _HTML_START.match(head) and declared in (None, "text", "markdown", "csv", "json", "pdf", "docx"):
        return "html"
    if declared in ("pdf", "docx") and _looks_like_text(head):
        return _sniff_text(data)  # no PDF or ZIP signature: the name or type is wrong, the text is not

    if mime not in _GENERIC_MIMES:
        if mime in _BY_MIME:
            return _BY_MIME[mime]
        if mime.endswith("+json"):
            return "json"
        if not mime.startswith("text/"):
            raise _unsupported(content, f"of type {mime}")
        # Other text/* types (reStructuredText, XML, calendars) read well enough as text.
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    if mime.startswith("text/") or _looks_like_text(head):
        return _sniff_text(data)
    raise _unsupported(content, "binary data of an unknown type")


def declared_format(content: FetchedContent) -> str | None:
    """The format the source's declared type, else its file name, claims; None when neither says."""
    mime = _mime(content)
    if mime not in _GENERIC_MIMES:
        if mime in _BY_MIME:
            return _BY_MIME[mime]
        if mime.endswith("+json"):
            return "json"
    return _BY_EXTENSION.get(extension(content.filename, content.uri))


def _mime(content: FetchedContent) -> str:
    return (content.content_type or "").split(";", 1)[0].strip().lower()


def _sniff_text(data: bytes) -> str:
    if _HTML_START.match(data[:4096]):
        return "html"
    if _looks_like_json(data) or _looks_like_json_lines(data):
        return "json"
    return "text"


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(info.filename == "word/document.xml" for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _looks_like_json(data: bytes) -> bool:
    stripped = data.strip()
    if stripped[:1] not in (b"{", b"[") or stripped[-1:] not in (b"}", b"]"):
        return False
    if len(stripped) > _SNIFF_JSON_MAX_BYTES:
        return True  # too big to parse just to decide; the size check refuses it next anyway
    try:
        json.loads(stripped)
        return True
    except (ValueError, RecursionError):
        return False


def _looks_like_json_lines(data: bytes) -> bool:
    """Several JSON objects or arrays, one per line (judged on the first five lines)."""
    window = data[:_SNIFF_LINES_BYTES]
    lines = window.split(b"\n")
    if len(data) > len(window):
        lines = lines[:-1]  # the window may end inside a line
    records = [line.strip() for line in lines if line.strip()][:5]
    if len(records) < 2:
        return False
    for record in records:
        if record[:1] not in (b"{", b"[") or record[-1:] not in (b"}", b"]"):
            return False
        try:
            json.loads(record)
        except (ValueError, RecursionError):
            return False
    return True


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")) or utf16_without_bom(head):
        return True
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:
            return True  # a multi-byte character cut by the 4 KB window
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls <= len(head) // 100


def supported_types_message() -> str:
    return "; ".join(
        f"{spec.label} ({', '.join(spec.extensions[:6])}{', …' if len(spec.extensions) > 6 else ''})"
        for spec in SUPPORTED_FORMATS.values()
    )


def supported_types_details() -> dict[str, dict[str, list[str]]]:
    return {
        name: {"mime_types": list(spec.mime_types), "extensions": list(spec.extensions)}
        for name, spec in SUPPORTED_FORMATS.items()
    }


def _unsupported(content: FetchedContent, what: str) -> UnsupportedType:
    name = source_name(content.filename, content.uri)
    subject = f"{name} is" if name else "the content is"
    return UnsupportedType(
        f"unsupported file type: {subject} {what}. Supported types: {supported_types_message()}",
        details={"declared_type": content.content_type, "supported": supported_types_details()},
    )


def size_limit(fmt: str, settings: Settings) -> int:
    limits = {"pdf": settings.max_pdf_bytes, "docx": settings.max_docx_bytes, "csv": settings.max_csv_bytes}
    return limits.get(fmt, settings.max_text_bytes)


def largest_size_limit(settings: Settings) -> int:
    """The loosest per-format limit: what bytes of a format not known yet (an upload being read, a
    URL being fetched) may not exceed."""
    return max(size_limit(fmt, settings) for fmt in SUPPORTED_FORMATS)


def check_size(fmt: str, size: int, settings: Settings) -> None:
    """PayloadTooLarge ("file_too_large") when `size` bytes is over the limit for `fmt`."""
    limit = size_limit(fmt, settings)
    if size > limit:
        label = SUPPORTED_FORMATS[fmt].label if fmt in SUPPORTED_FORMATS else fmt
        raise PayloadTooLarge(
            f"file of {_megabytes(size)} MB is over the {_megabytes(limit)} MB limit for {label} files",
            code="file_too_large",
            details={"format": fmt, "size_bytes": size, "limit_bytes": limit},
        )


def _megabytes(size: int) -> str:
    value = size / MB
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
