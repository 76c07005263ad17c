"""DOCX parsing on real documents written by python-docx, and on ZIPs that are not documents."""

import pytest

from gristmill.documents import FetchedContent
from gristmill.errors import ParseError, UnsupportedType
from tasks.parse import detect_format
from tasks.parse.docx import parse_docx
from tests.builders import (
    MB,
    Bullet,
    Heading,
    Numbered,
    RawXml,
    Styled,
    Table,
    build_docx,
    build_encrypted_office_file,
    build_zip,
    build_zip_bomb,
)


def run(text: str) -> str:
    return f"<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r>"


# Word's markup for what python-docx cannot write: the parser must read text inside all of it.
TABLE_OF_CONTENTS = (
    "<w:sdt><w:sdtPr><w:docPartObj><w:docPartGallery w:val=\"Table of Contents\"/><w:docPartUnique/>"
    "</w:docPartObj></w:sdtPr><w:sdtContent>"
    f"<w:p><w:pPr><w:pStyle w:val=\"TOCHeading\"/></w:pPr>{run('Contents')}</w:p>"
    f"<w:p><w:hyperlink w:anchor=\"_Toc1\">{run('Expenses')}<w:r><w:tab/></w:r>{run('2')}</w:hyperlink></w:p>"
    "</w:sdtContent></w:sdt>"
)
CONTENT_CONTROL = (
    "<w:sdt><w:sdtPr><w:alias w:val=\"Owner\"/><w:text/></w:sdtPr><w:sdtContent>"
    f"<w:p>{run('Owner: the finance team.')}</w:p></w:sdtContent></w:sdt>"
)
TRACKED_CHANGES = (
    f"<w:p>{run('Receipts are kept for ')}"
    f"<w:del w:id=\"1\" w:author=\"Ann\" w:date=\"2024-01-02T00:00:00Z\"><w:r><w:delText>five</w:delText></w:r></w:del>"
    f"<w:ins w:id=\"2\" w:author=\"Ann\" w:date=\"2024-01-02T00:00:00Z\">{run('seven')}</w:ins>"
    f"{run(' years, see ')}"
    f"<w:fldSimple w:instr=\" REF policy \\\\h \">{run('the retention policy')}</w:fldSimple>"
    f"<w:sdt><w:sdtPr><w:date/></w:sdtPr><w:sdtContent>{run(' (since 2024)')}</w:sdtContent></w:sdt>{run('.')}</w:p>"
)
TEXT_BOX = (
    f"<w:p>{run('Claims go through the portal.')}<w:r><mc:AlternateContent><mc:Choice Requires=\"wps\">"
    "<w:drawing><wp:anchor><a:graphic><a:graphicData uri=\"http://schemas.microsoft.com/office/word/2010/wordprocessingShape\">"
    f"<wps:wsp><wps:txbx><w:txbxContent><w:p>{run('Tip: scan receipts the same day.')}</w:p></w:txbxContent>"
    "</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice><mc:Fallback>"
    f"<w:pict><v:shape><v:textbox><w:txbxContent><w:p>{run('Tip: scan receipts the same day.')}</w:p>"
    "</w:txbxContent></v:textbox></v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"
)


def test_headings_lists_and_tables_keep_their_structure_and_order() -> None:
    data = build_docx(
        [
            Heading("Field Guide", level=0),
            "How to use this guide.",
            Heading("Birds", level=1),
            "Birds are warm-blooded.",
            Bullet("Robin"),
            Bullet("European robin", level=1),
            Numbered("Wren"),
            Heading("Sizes", level=2),
            Table([["Bird", "Length | cm"], ["Robin", "14"], ["Wren", "10"]]),
            "Measured in spring.",
            Heading("Mammals", level=1),
            "Mammals have fur.",
        ],
        core_title="A Field Guide to Garden Animals",
    )

    document = parse_docx(data, filename="guide.docx")

    assert document.content_format == "docx"
    assert document.title == "A Field Guide to Garden Animals"
    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        (["Field Guide"], ["How to use this guide."]),
        (["Field Guide", "Birds"], ["Birds are warm-blooded.", "- Robin", "  - European robin", "- Wren"]),
        (
            ["Field Guide", "Birds", "Sizes"],
            ["| Bird | Length \\| cm |\n|---|---|\n| Robin | 14 |\n| Wren | 10 |", "Measured in spring."],
        ),
        (["Field Guide", "Mammals"], ["Mammals have fur."]),
    ]


def test_title_falls_back_to_the_first_heading_then_the_file_name() -> None:
    with_heading = build_docx([Heading("Trip report", level=1), "We went north."])
    without = build_docx(["Just a paragraph."])

    assert parse_docx(with_heading).title == "Trip report"
    assert parse_docx(without, filename="notes/oslo-trip.docx").title == "oslo-trip"


@pytest.mark.parametrize("template_title", ["Word Document", "Microsoft Word - draft.doc", "untitled", "Document1"])
def test_a_template_s_default_title_is_not_the_title(template_title: str) -> None:
    with_heading = build_docx([Heading("Trip report", level=1), "We went north."], core_title=template_title)
    without = build_docx(["Just a paragraph."], core_title=template_title)

    assert parse_docx(with_heading).title == "Trip report"
    assert parse_docx(without, filename="oslo-trip.docx").title == "oslo-trip"


def test_other_paragraph_styles_are_plain_text() -> None:
    data = build_docx([Styled("A quoted line.", style="Quote"), Styled("Small print.", style="Caption")])

    assert parse_docx(data).sections[0].blocks == ["A quoted line.", "Small print."]


def test_zip_bomb_is_refused_by_total_size_before_opening() -> None:
    data = build_zip_bomb(40 * MB)

    with pytest.raises(ParseError) as error:
        parse_docx(data, max_uncompressed_bytes=20 * MB)

    assert error.value.code == "zip_bomb"
    assert error.value.message == "DOCX unzips to 40 MB, over the 20 MB limit (zip bomb?)"


def test_zip_bomb_is_refused_by_compression_ratio_under_the_size_limit() -> None:
    data = build_zip_bomb(40 * MB)

    with pytest.raises(ParseError) as error:
        parse_docx(data, max_uncompressed_bytes=200 * MB)

    assert error.value.code == "zip_bomb"
    assert error.value.message.startswith("DOCX part word/document.xml compresses ")
    assert error.value.details["ratio"] > 250


def test_not_a_zip_is_corrupt() -> None:
    with pytest.raises(ParseError) as error:
        parse_docx(b"This is a text file renamed to .docx")

    assert error.value.code == "corrupt_docx"
    assert error.value.message == "corrupt DOCX: not a ZIP archive (File is not a zip file)"


def test_zip_without_word_document_is_corrupt() -> None:
    with pytest.raises(ParseError) as error:
        parse_docx(build_zip({"xl/workbook.xml": b"<workbook/>"}))

    assert error.value.code == "corrupt_docx"
    assert error.value.message == "corrupt DOCX: the archive has no word/document.xml"


def test_zip_with_a_broken_document_part_is_corrupt() -> None:
    data = build_zip({"word/document.xml": b"<w:document>not closed", "[Content_Types].xml": b"<Types/>"})

    with pytest.raises(ParseError) as error:
        parse_docx(data)

    assert error.value.code == "corrupt_docx"
    assert error.value.message.startswith("corrupt DOCX: its parts could not be read (")


def test_text_in_content_controls_tracked_changes_fields_and_text_boxes_is_read_once() -> None:
    data = build_docx(
        [
            RawXml(TABLE_OF_CONTENTS),
            Heading("Expenses", level=1),
            RawXml(CONTENT_CONTROL),
            RawXml(TRACKED_CHANGES),
            RawXml(TEXT_BOX),
        ]
    )

    document = parse_docx(data)

    # The table of contents is left out: as a chunk it would echo every heading.
    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        (
            ["Expenses"],
            [
                "Owner: the finance team.",
                "Receipts are kept for seven years, see the retention policy (since 2024).",
                "Claims go through the portal.",
                "Tip: scan receipts the same day.",
            ],
        )
    ]


def test_merged_cells_fill_their_grid_once_across_and_repeat_down() -> None:
    data = build_docx(
        [
            Table(
                [["Region", "Q1 and Q2", ""], ["Europe", "10", "12"], ["", "11", "13"]],
                merges=[(0, 1, 0, 2), (1, 0, 2, 0)],
            )
        ]
    )

    document = parse_docx(data)

    assert document.sections[0].blocks == [
        "| Region | Q1 and Q2 |  |\n|---|---|---|\n| Europe | 10 | 12 |\n| Europe | 11 | 13 |"
    ]


def test_truncated_docx_is_corrupt_or_truncated() -> None:
    data = build_docx([Heading("Minutes"), "We met on Monday."] * 20)

    with pytest.raises(ParseError) as error:
        parse_docx(data[: len(data) * 2 // 3])

    assert error.value.code == "corrupt_docx"
    assert error.value.message == (
        "corrupt or truncated DOCX: the ZIP archive is incomplete (File is not a zip file)"
    )


def test_password_protected_docx_is_refused() -> None:
    data = build_encrypted_office_file()

    with pytest.raises(ParseError) as error:
        parse_docx(data)

    assert error.value.code == "password_protected"
    assert error.value.message == "password-protected DOCX"
    assert detect_format(FetchedContent(data=data, content_type=None, uri=None, filename="salaries.docx")) == "docx"


def test_encrypted_office_file_not_named_docx_and_legacy_doc_are_unsupported() -> None:
    with pytest.raises(UnsupportedType) as encrypted:
        detect_format(FetchedContent(data=build_encrypted_office_file(), content_type=None, uri=None, filename="q.xlsx"))
    legacy = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024)
    with pytest.raises(UnsupportedType) as doc:
        detect_format(FetchedContent(data=legacy, content_type=None, uri=None, filename="old.doc"))
    with pytest.raises(ParseError) as parsed:
        parse_docx(legacy)

    assert encrypted.value.message.startswith("unsupported file type: q.xlsx is a password-protected Office document.")
    assert doc.value.message.startswith("unsupported file type: old.doc is a legacy Office file (.doc/.xls/.ppt).")
    assert parsed.value.code == "corrupt_docx"
    assert parsed.value.message == "not a DOCX: this is a Word 97-2003 (.doc) file; save it as .docx and upload it again"
