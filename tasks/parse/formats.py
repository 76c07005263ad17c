"""Which format a source is in, and whether it is small enough to parse.

Order of evidence: the bytes themselves when they are decisive (a PDF header, a ZIP holding
word/document.xml, a PNG signature), then the declared MIME type, then the file extension, then a
sniff of text versus binary. Declared types lie often (a PDF served as application/octet-stream or
named .txt); magic bytes do not.
"""

import io
import json
import re
import zipfile
from dataclasses import dataclass

from gristmill.documents import FetchedContent
from gristmill.errors import PayloadTooLarge, UnsupportedType
from gristmill.settings import MB, Settings
from tasks.parse.code import LANGUAGES_BY_EXTENSION, LANGUAGES_BY_MIME
from tasks.parse.common import extension, source_name

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
JSON_LINES_MIMES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq")


@dataclass(frozen=True)
class FormatSpec:
    name: str
    label: str
    mime_types: tuple[str, ...]
    extensions: tuple[str, ...]


SUPPORTED_FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("pdf", "PDF", ("application/pdf",), (".pdf",)),
        FormatSpec("docx", "Word (DOCX)", (DOCX_MIME,), (".docx",)),
        FormatSpec("html", "HTML", ("text/html", "application/xhtml+xml"), (".html", ".htm", ".xhtml")),
        FormatSpec("markdown", "Markdown", ("text/markdown", "text/x-markdown"), (".md", ".markdown", ".mdx")),
        FormatSpec(
            "text",
            "plain text",
            ("text/plain", "application/x-yaml", "application/yaml", "text/yaml", "application/toml"),
            (".txt", ".text", ".log", ".rst", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf"),
        ),
        FormatSpec("csv", "CSV", ("text/csv", "application/csv", "text/tab-separated-values"), (".csv", ".tsv")),
        FormatSpec(
            "json", "JSON", ("application/json", "text/json", *JSON_LINES_MIMES), (".json", ".jsonl", ".ndjson")
        ),
        FormatSpec("code", "source code", tuple(LANGUAGES_BY_MIME), tuple(LANGUAGES_BY_EXTENSION)),
    )
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(ext for spec in SUPPORTED_FORMATS.values() for ext in spec.extensions)
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
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls/.ppt)"),
    (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_SNIFF_JSON_MAX_BYTES = 8 * MB
_HTML_START = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)


def detect_format(content: FetchedContent) -> str:
    """One of pdf, docx, html, markdown, text, csv, json, code; UnsupportedType for anything else."""
    data = content.data
    head = data[:4096]
    mime = (content.content_type or "").split(";", 1)[0].strip().lower()
    ext = extension(content.filename, content.uri)

    pdf_at = data.find(b"%PDF-", 0, 1024)
    # Readers accept junk before the header, but a Markdown page about PDFs is not a PDF.
    if pdf_at == 0 or (pdf_at > 0 and _BY_MIME.get(mime, _BY_EXTENSION.get(ext, "pdf")) == "pdf"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        if _is_docx(data):
            return "docx"
        if mime != DOCX_MIME and ext != ".docx":
            raise _unsupported(content, "a ZIP archive that is not a Word document")
    for signature, what in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise _unsupported(content, what)

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
        if _HTML_START.match(head):
            return "html"
        if _looks_like_json(data):
            return "json"
        return "text"
    raise _unsupported(content, "binary data of an unknown type")


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


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
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
