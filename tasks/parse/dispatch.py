"""Detect, check size, hand the bytes to the right format parser: in-process or in the sandbox."""

from gristmill.documents import Document, FetchedContent
from gristmill.errors import GristmillError, ParseError
from gristmill.file_types import JSON_LINES_MIMES, LANGUAGE_BY_MIME
from gristmill.settings import Settings
from tasks.parse.common import first_line_title, pick_title, source_name, title_from_filename
from tasks.parse.formats import SUPPORTED_FORMATS, check_size, declared_format, detect_format
from tasks.parse.sandbox import run_isolated

# Pure-Python parsers with linear work: on a small note a child process would add its fixed start
# cost (~20 ms) for no safety gained. Larger files of these formats go to the child like the rest,
# so every parse that can take real time or memory runs under the limits.
IN_PROCESS_FORMATS = frozenset({"text", "markdown", "code"})
IN_PROCESS_MAX_BYTES = 256 * 1024


def parse_document(content: FetchedContent, settings: Settings) -> Document:
    """The source's Document, parsed in this process. Raises UnsupportedType, PayloadTooLarge, ParseError."""
    fmt = _checked_format(content, settings)
    return parse_detected(fmt, content, settings)


def parse_isolated(content: FetchedContent, settings: Settings) -> Document:
    """parse_document, in a child process under the time and memory limits, except small text notes."""
    fmt = _checked_format(content, settings)
    if fmt in IN_PROCESS_FORMATS and len(content.data) <= IN_PROCESS_MAX_BYTES:
        return parse_detected(fmt, content, settings)
    return run_isolated(
        parse_detected,
        fmt,
        content,
        settings,
        timeout=settings.parse_timeout_seconds,
        memory_bytes=settings.parse_memory_bytes,
    )


def _checked_format(content: FetchedContent, settings: Settings) -> str:
    """The source's format once it is known to be supported, within its size limit and not empty."""
    if not content.data or content.data.isspace():  # nothing to detect a format from
        label = _label(declared_format(content) or "text")
        raise ParseError(f"{label} has no text to ingest (the file is empty)", code="no_text")
    fmt = detect_format(content)
    check_size(fmt, len(content.data), settings)
    return fmt


def parse_detected(fmt: str, content: FetchedContent, settings: Settings) -> Document:
    """Parse bytes already known to be `fmt`; a library's unexpected exception becomes a ParseError."""
    try:
        document = _parse(fmt, content, settings)
    except GristmillError:
        raise
    except MemoryError as exc:
        raise ParseError("parsing ran out of memory", code="parse_memory") from exc
    except RecursionError as exc:
        raise ParseError(f"{_label(fmt)} is nested too deeply to parse", code="unparseable") from exc
    except Exception as exc:  # noqa: BLE001 - third-party parsers raise anything on malformed input
        raise ParseError(
            f"{_label(fmt)} could not be parsed: {type(exc).__name__}: {exc}", code="unparseable"
        ) from exc
    if not document.text.strip():
        raise ParseError(f"{_label(fmt)} has no text to ingest (the file is empty)", code="no_text")
    if not document.title:
        name = source_name(content.filename, content.uri)
        document.title = pick_title(title_from_filename(name), first_line_title(document.text))
    declared = declared_format(content)
    if declared in ("pdf", "docx") and fmt not in ("pdf", "docx"):
        # Often an error or login page served in place of the document: stored, but flagged.
        document.warnings.append(
            f"declared as {_label(declared)} but the content is {_label(fmt)}; it was read as {_label(fmt)}"
        )
    return document


def _parse(fmt: str, content: FetchedContent, settings: Settings) -> Document:
    # Format modules are imported on first use: a process that only detects formats (the API) or
    # only sandboxes (the flow run) never loads pypdf, trafilatura or duckdb; the forkserver preloads them.
    data = content.data
    name = source_name(content.filename, content.uri)
    mime = (content.content_type or "").split(";", 1)[0].strip().lower()
    if fmt == "pdf":
        from tasks.parse.pdf import parse_pdf

        return parse_pdf(data, filename=name)
    if fmt == "docx":
        from tasks.parse.docx import parse_docx

        return parse_docx(data, filename=name, max_uncompressed_bytes=settings.max_docx_uncompressed_bytes)
    if fmt == "html":
        from tasks.parse.html import parse_html

        url = content.uri if content.uri and content.uri.startswith(("http://", "https://")) else None
        return parse_html(data, filename=content.filename, url=url)
    if fmt == "csv":
        from tasks.parse.csv import parse_csv

        memory_limit = min(256 * 1024 * 1024, settings.parse_memory_bytes // 4)
        return parse_csv(data, filename=name, memory_limit_bytes=memory_limit)
    if fmt == "json":
        from tasks.parse.json import parse_json

        lines = True if mime in JSON_LINES_MIMES else None  # None: by extension, else by content
        return parse_json(data, filename=name, lines=lines)
    if fmt == "code":
        from tasks.parse.code import language_for, parse_code

        return parse_code(data, filename=name, language=language_for(name) or LANGUAGE_BY_MIME.get(mime))
    if fmt == "markdown":
        from tasks.parse.markdown import parse_markdown

        return parse_markdown(data, filename=name)
    if fmt == "text":
        from tasks.parse.markdown import parse_text

        return parse_text(data, filename=name)
    raise ParseError(f"no parser for format {fmt!r}", code="unsupported_format")


def _label(fmt: str) -> str:
    return SUPPORTED_FORMATS[fmt].label if fmt in SUPPORTED_FORMATS else fmt
