"""PDF parsing on real PDFs written by fpdf2 and pypdf."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.pdf import parse_pdf
from tests.builders import add_blank_pages, build_image_only_pdf, build_pdf, encrypt_pdf

QUARTERS = [
    [
        "Revenue grew strongly in the first quarter thanks to new customers in the infor-\n"
        "mation services segment, which now makes up a third of sales.",
        "Costs rose less than expected.",
    ],
    ["The second quarter was flat: supply problems delayed two large orders until July.", "Hiring slowed."],
    ["In the third quarter the new product line shipped on time and sold out within weeks.", "Margins improved."],
    ["The fourth quarter closed the year with record bookings across all regions.", "Outlook is positive."],
]


def test_pages_become_sections_with_paragraph_blocks_and_no_running_headers() -> None:
    data = build_pdf(
        QUARTERS,
        title="Annual Report 2024",
        headings=["Spring", "Summer", "Autumn", "Winter"],
        header="ACME Corp Confidential",
        footer="Page {page} of {pages}",
    )

    document = parse_pdf(data, filename="report.pdf")

    assert document.content_format == "pdf"
    assert document.title == "Annual Report 2024"
    assert document.metadata == {"page_count": 4}
    assert document.warnings == []
    assert [(s.page_start, s.page_end) for s in document.sections] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert document.sections[0].blocks == [
        "Spring",
        "Revenue grew strongly in the first quarter thanks to new customers in the information services "
        "segment, which now makes up a third of sales.",
        "Costs rose less than expected.",
    ]
    assert document.sections[3].blocks == [
        "Winter",
        "The fourth quarter closed the year with record bookings across all regions.",
        "Outlook is positive.",
    ]
    assert "ACME Corp Confidential" not in document.text
    assert "Page 2 of 4" not in document.text


def test_bare_page_numbers_are_dropped_and_title_falls_back_to_the_first_heading() -> None:
    data = build_pdf(QUARTERS[:2], headings=["Quarterly review", None], footer="{page}")

    document = parse_pdf(data, filename="q.pdf")

    assert document.title == "Quarterly review"
    assert document.sections[1].blocks == [
        "The second quarter was flat: supply problems delayed two large orders until July.",
        "Hiring slowed.",
    ]


def test_running_header_needs_three_pages_but_a_heading_repeated_by_chance_is_kept() -> None:
    # Two pages only: the same opening line on both is not enough evidence of a running header.
    data = build_pdf([["Alpha page text is here."], ["Beta page text is here."]], header="Draft notes")

    document = parse_pdf(data)

    assert [s.blocks[0] for s in document.sections] == ["Draft notes", "Draft notes"]


def test_title_falls_back_to_the_file_name_then_the_first_line() -> None:
    paragraph = "A single sentence long enough that it does not look like a heading at all, ending in a stop."

    assert parse_pdf(build_pdf([[paragraph]]), filename="minutes-2024.pdf").title == "minutes-2024"
    assert parse_pdf(build_pdf([[paragraph]])).title.startswith("A single sentence long enough")


def test_blank_pages_are_named_in_a_warning() -> None:
    data = build_pdf([["Text on the first page."], [], ["Text on the third page."], []])

    document = parse_pdf(data)

    assert document.warnings == ["no text on pages 2, 4"]
    assert document.metadata["page_count"] == 4
    assert [s.page_start for s in document.sections] == [1, 3]
    assert document.text == "Text on the first page.\n\nText on the third page."


def test_image_only_pdf_has_no_extractable_text() -> None:
    with pytest.raises(ParseError) as error:
        parse_pdf(build_image_only_pdf(page_count=2))

    assert error.value.code == "no_text"
    assert "no extractable text (scanned?)" in error.value.message
    assert error.value.details == {"page_count": 2}


def test_encrypted_pdf_opens_with_the_empty_password() -> None:
    data = encrypt_pdf(build_pdf([["Anyone may read this memo."]]), user_password="")

    assert parse_pdf(data).text == "Anyone may read this memo."


def test_password_protected_pdf_is_refused() -> None:
    data = encrypt_pdf(build_pdf([["Board minutes, confidential."]]), user_password="s3cret")

    with pytest.raises(ParseError) as error:
        parse_pdf(data)

    assert error.value.code == "password_protected"
    assert error.value.message == "password-protected PDF"


def test_truncated_pdf_is_reported_as_corrupt_with_pypdfs_reason() -> None:
    data = build_pdf(QUARTERS)

    with pytest.raises(ParseError) as error:
        parse_pdf(data[: len(data) // 2])

    assert error.value.code == "corrupt_pdf"
    assert error.value.message == (
        "corrupt or truncated PDF: Stream has ended unexpectedly (EOF marker not found)"
    )


def test_garbage_after_a_pdf_header_is_corrupt() -> None:
    with pytest.raises(ParseError) as error:
        parse_pdf(b"%PDF-1.7\nthis is not a PDF body at all\n")

    assert error.value.code == "corrupt_pdf"
    assert error.value.message.startswith("corrupt or truncated PDF: ")


def test_huge_page_count_is_cut_at_max_pages_with_a_warning() -> None:
    data = add_blank_pages(build_pdf([["The only page with words."]]), count=2999)

    document = parse_pdf(data, max_pages=2000)

    assert document.metadata == {"page_count": 3000, "pages_parsed": 2000}
    assert document.warnings == [
        "only the first 2000 of 3000 pages were parsed",
        "no text on pages 2-2000",
    ]
    assert document.text == "The only page with words."
