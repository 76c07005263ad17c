"""DOCX parsing on real documents written by python-docx, and on ZIPs that are not documents."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.docx import parse_docx
from tests.builders import MB, Bullet, Heading, Numbered, Styled, Table, build_docx, build_zip, build_zip_bomb


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
