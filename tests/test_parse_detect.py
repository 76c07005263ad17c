"""Format detection, size limits and dispatch through parse_document."""

import pytest

from gristmill.documents import FetchedContent
from gristmill.errors import ParseError, PayloadTooLarge, UnsupportedType
from gristmill.file_types import SUPPORTED_EXTENSIONS
from gristmill.settings import Settings
from tasks.parse import SUPPORTED_FORMATS, check_size, detect_format, parse_document
from tests.builders import MB, Heading, HtmlPage, build_docx, build_pdf, build_zip, build_zip_bomb

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


def content(data: bytes, content_type: str | None = None, filename: str | None = None, uri: str | None = None):
    return FetchedContent(data=data, content_type=content_type, uri=uri, filename=filename)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path)


def test_supported_formats_name_every_parser() -> None:
    assert list(SUPPORTED_FORMATS) == ["pdf", "docx", "html", "markdown", "text", "csv", "json", "code"]
    assert SUPPORTED_FORMATS["pdf"].mime_types == ("application/pdf",)
    assert ".py" in SUPPORTED_FORMATS["code"].extensions
    assert {".pdf", ".docx", ".html", ".md", ".txt", ".csv", ".json", ".jsonl", ".py", ".rs"} <= SUPPORTED_EXTENSIONS
    assert ".exe" not in SUPPORTED_EXTENSIONS


def test_magic_bytes_beat_the_declared_type_and_extension() -> None:
    pdf = build_pdf([["Hello."]])
    docx = build_docx(["Hello."])

    assert detect_format(content(pdf, "text/plain", "notes.txt")) == "pdf"
    assert detect_format(content(b"junk from a mail gateway\n" + pdf)) == "pdf"
    assert detect_format(content(b"# About\n\nA file starts %PDF-1.7.", None, "pdf-notes.md")) == "markdown"
    assert detect_format(content(docx, "application/octet-stream")) == "docx"
    assert detect_format(content(docx, "application/zip", "report.zip")) == "docx"


@pytest.mark.parametrize(
    ("declared", "filename", "uri", "expected"),
    [
        ("text/markdown; charset=utf-8", None, None, "markdown"),
        ("text/html; charset=ISO-8859-1", "page.txt", None, "html"),
        ("application/x-ndjson", None, None, "json"),
        ("application/ld+json", None, None, "json"),
        ("text/plain", "notes.md", None, "markdown"),
        ("text/plain", "data.csv", None, "csv"),
        ("text/plain", None, None, "text"),
        ("text/x-python", None, None, "code"),
        ("text/x-rst", "readme", None, "text"),
        (None, "app.tsx", None, "code"),
        (None, None, "https://example.com/api/items.json?page=2", "json"),
        ("application/octet-stream", "main.go", None, "code"),
        (None, "config.yaml", None, "text"),
        ("text/x-typescript", "app.ts", None, "code"),
    ],
)
def test_declared_type_then_extension(
    declared: str | None, filename: str | None, uri: str | None, expected: str
) -> None:
    assert detect_format(content(b"x = 1\n", declared, filename, uri)) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<!DOCTYPE html><html><body>Hi</body></html>", "html"),
        (b'  {"a": [1, 2]}\n', "json"),
        (b"Just some words.\n", "text"),
        ("Grüße".encode("latin-1"), "text"),
        ("Grüße aus Köln".encode("utf-16-le"), "text"),
        (b'{"event": "login"}\n{"event": "logout"}\n', "json"),
    ],
)
def test_sniffing_when_nothing_is_declared(data: bytes, expected: str) -> None:
    assert detect_format(content(data)) == expected


def test_png_named_txt_is_unsupported_and_the_message_lists_what_is() -> None:
    with pytest.raises(UnsupportedType) as error:
        detect_format(content(PNG, "text/plain", "photo.txt"))

    assert error.value.code == "unsupported_type"
    assert error.value.message.startswith(
        "unsupported file type: photo.txt is a PNG image. Supported types: PDF (.pdf); Word (DOCX) (.docx); "
        "HTML (.html, .htm, .xhtml); Markdown (.md, .markdown, .mdx); "
    )
    assert error.value.details["supported"]["pdf"] == {"mime_types": ["application/pdf"], "extensions": [".pdf"]}
    assert set(error.value.details["supported"]) == set(SUPPORTED_FORMATS)


def test_unsupported_declared_type_and_non_word_zip_are_refused() -> None:
    with pytest.raises(UnsupportedType) as declared:
        detect_format(content(b"GIF89a....", "image/gif", "anim.gif"))
    with pytest.raises(UnsupportedType) as workbook:
        detect_format(content(build_zip({"xl/workbook.xml": b"<workbook/>"}), None, "book.xlsx"))
    with pytest.raises(UnsupportedType) as blob:
        detect_format(content(bytes(range(256)) * 4))

    assert declared.value.message.startswith("unsupported file type: anim.gif is a GIF image.")
    assert workbook.value.message.startswith("unsupported file type: book.xlsx is a ZIP archive that is not a Word")
    assert blob.value.message.startswith("unsupported file type: the content is binary data of an unknown type.")


def test_check_size_names_the_limit_and_format(settings: Settings) -> None:
    check_size("pdf", 20 * MB, settings)  # at the limit is fine

    with pytest.raises(PayloadTooLarge) as pdf:
        check_size("pdf", 50 * MB, settings)
    with pytest.raises(PayloadTooLarge) as json_file:
        check_size("json", 5 * MB + 1, settings)

    assert pdf.value.code == "file_too_large"
    assert pdf.value.message == "file of 50 MB is over the 20 MB limit for PDF files"
    assert pdf.value.details == {"format": "pdf", "size_bytes": 50 * MB, "limit_bytes": 20 * MB}
    assert json_file.value.message == "file of 5.0 MB is over the 5 MB limit for JSON files"


def test_parse_document_rejects_a_50_mb_file_before_parsing_it(settings: Settings) -> None:
    # Not a valid PDF: were it parsed first, the error would be corrupt_pdf.
    huge = b"%PDF-1.7\n" + b"0" * (50 * MB)

    with pytest.raises(PayloadTooLarge) as error:
        parse_document(content(huge, "application/pdf", "scan.pdf"), settings)

    assert error.value.code == "file_too_large"
    assert error.value.message == "file of 50 MB is over the 20 MB limit for PDF files"


def test_parse_document_dispatches_a_pdf_with_the_wrong_extension(settings: Settings) -> None:
    data = build_pdf([["Minutes of the March meeting."]], title="March minutes")

    document = parse_document(content(data, "text/plain", "minutes.txt"), settings)

    assert document.content_format == "pdf"
    assert document.title == "March minutes"
    assert document.text == "Minutes of the March meeting."


def test_parse_document_passes_docx_limits_from_settings(tmp_path) -> None:
    settings = Settings(home=tmp_path, max_docx_uncompressed_bytes=10 * MB)

    with pytest.raises(ParseError) as error:
        parse_document(content(build_zip_bomb(30 * MB), None, "bomb.docx"), settings)
    document = parse_document(content(build_docx([Heading("Plan"), "Step one."]), None, "plan.docx"), settings)

    assert error.value.code == "zip_bomb"
    assert document.sections[0].heading_path == ["Plan"]


def test_parse_document_reads_ndjson_by_declared_type(settings: Settings) -> None:
    document = parse_document(content(b'{"n": 1}\n', "application/x-ndjson"), settings)

    assert document.metadata["json_lines"] is True
    assert document.text == "n: 1"


def test_parse_document_titles_a_code_file_by_name_and_language_by_mime(settings: Settings) -> None:
    source = content(b"def main():\n    pass\n", "text/x-python", uri="file:///srv/tools/deploy")

    document = parse_document(source, settings)

    assert document.title == "deploy"
    assert document.metadata["language"] == "python"
    assert document.sections[0].heading_path == ["def main"]


def test_empty_text_file_has_no_text(settings: Settings) -> None:
    with pytest.raises(ParseError) as error:
        parse_document(content(b"\n\n  \n", "text/plain", "empty.txt"), settings)

    assert error.value.code == "no_text"
    assert error.value.message == "plain text has no text to ingest (the file is empty)"


ARTICLE = HtmlPage(
    title="Office hours",
    body="<h1>Office hours</h1><p>" + "The front desk is staffed from eight until six on weekdays. " * 4 + "</p>",
)


@pytest.mark.parametrize(("declared", "filename"), [("text/plain", "hours.txt"), (None, "hours.md"), (None, "hours.csv")])
def test_html_saved_under_a_text_name_is_read_as_html(settings: Settings, declared: str | None, filename: str) -> None:
    document = parse_document(content(ARTICLE.to_bytes(), declared, filename), settings)

    assert document.content_format == "html"
    assert document.title == "Office hours"
    assert document.text.startswith("The front desk is staffed from eight until six on weekdays.")
    assert "<" not in document.text
    assert document.warnings == []


def test_a_php_template_that_opens_with_html_stays_code() -> None:
    assert detect_format(content(b"<!DOCTYPE html>\n<html><?php echo $title; ?></html>", None, "index.php")) == "code"


def test_text_served_as_a_pdf_is_read_as_text_with_a_warning(settings: Settings) -> None:
    # What a server sends for a dead link: its error page, still labelled as the PDF asked for.
    login_page = HtmlPage(title="Sign in", body="<h1>Sign in</h1><p>" + "Please sign in to read this report. " * 5 + "</p>")
    note = b"Quarterly numbers are on the shared drive.\n"

    as_pdf = parse_document(content(login_page.to_bytes(), "application/pdf", uri="https://x.example/r.pdf"), settings)
    as_docx = parse_document(content(note, None, "numbers.docx"), settings)

    assert as_pdf.content_format == "html"
    assert as_pdf.text.startswith("Please sign in to read this report.")
    assert as_pdf.warnings == ["declared as PDF but the content is HTML; it was read as HTML"]
    assert as_docx.content_format == "text"
    assert as_docx.text == "Quarterly numbers are on the shared drive."
    assert as_docx.warnings == ["declared as Word (DOCX) but the content is plain text; it was read as plain text"]


def test_binary_junk_named_pdf_is_still_a_corrupt_pdf(settings: Settings) -> None:
    with pytest.raises(ParseError) as error:
        parse_document(content(bytes(range(256)) * 8, "application/pdf", "scan.pdf"), settings)

    assert error.value.code == "corrupt_pdf"


def test_rtf_is_unsupported_not_read_as_markup() -> None:
    with pytest.raises(UnsupportedType) as error:
        detect_format(content(b"{\\rtf1\\ansi{\\fonttbl}Hello}", None, "letter.rtf"))

    assert error.value.message.startswith("unsupported file type: letter.rtf is an RTF document (save it as DOCX or PDF).")


def test_an_empty_file_is_empty_whatever_it_is_called(settings: Settings) -> None:
    with pytest.raises(ParseError) as pdf:
        parse_document(content(b"", "application/pdf", "blank.pdf"), settings)
    with pytest.raises(ParseError) as unnamed:
        parse_document(content(b"  \n"), settings)

    assert pdf.value.code == unnamed.value.code == "no_text"
    assert pdf.value.message == "PDF has no text to ingest (the file is empty)"
    assert unnamed.value.message == "plain text has no text to ingest (the file is empty)"
