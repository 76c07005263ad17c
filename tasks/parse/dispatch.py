"""Detect, check size, hand the bytes to the right format parser: in-process or in the sandbox."""

from gristmill.documents import Document, FetchedContent
from gristmill.errors import GristmillError, ParseError
from gristmill.settings import Settings
from tasks.parse.common import first_line_title, pick_title, source_name, title_from_filename
from tasks.parse.formats import JSON_LINES_MIMES, SUPPORTED_FORMATS, check_size, detect_format
from tasks.parse.sandbox import run_isolated

# Pure-Python parsers with linear, bounded work on at most max_text_bytes: a child process would
# add its fixed start cost to every small note for no safety gained.
IN_PROCESS_FORMATS = frozenset({"text", "markdown", "code"})


def parse_document(content: FetchedContent, settings: Settings) -> Document:
    """The source's Document, parsed in this process. Raises UnsupportedType, PayloadTooLarge, ParseError."""
    fmt = detect_format(content)
    check_size(fmt, len(content.data), settings)
    return parse_detected(fmt, content, settings)


def parse_isolated(content: FetchedContent, settings: Settings) -> Document:
    """parse_document, with the risky parsers (PDF, DOCX, HTML, CSV, JSON) in a limited child process."""
    fmt = detect_format(content)
    check_size(fmt, len(content.data), settings)
    if fmt in IN_PROCESS_FORMATS:
        return parse_detected(fmt, content, settings)
    return run_isolated(
        parse_detected,
        fmt,
        content,
        settings,
        timeout=settings.parse_timeout_seconds,
        memory_bytes=settings.parse_memory_bytes,
    )


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
        from tasks.parse.code import LANGUAGES_BY_MIME, language_for, parse_code

        return parse_code(data, filename=name, language=language_for(name) or LANGUAGES_BY_MIME.get(mime))
    if fmt == "markdown":
        from tasks.parse.markdown import parse_markdown

        return parse_markdown(data, filename=name)
    if fmt == "text":
        from tasks.parse.markdown import parse_text

        return parse_text(data, filename=name)
    raise ParseError(f"no parser for format {fmt!r}", code="unsupported_format")


def _label(fmt: str) -> str:
    return SUPPORTED_FORMATS[fmt].label if fmt in SUPPORTED_FORMATS else fmt
