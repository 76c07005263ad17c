"""PDF parsing on real PDFs written by fpdf2 and pypdf."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.pdf import parse_pdf
from tests.builders import (
    Heading,
    add_blank_pages,
    add_flate_bomb,
    build_image_only_pdf,
    build_pdf,
    encrypt_pdf,
    merge_pdfs,
)

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


@pytest.mark.parametrize("default_title", ["Microsoft Word - report.docx", "untitled", "manual.tex"])
def test_a_converter_s_default_title_is_not_the_title(default_title: str) -> None:
    paragraph = "A single sentence long enough that it does not look like a heading at all, ending in a stop."

    document = parse_pdf(build_pdf([[paragraph]], title=default_title), filename="minutes-2024.pdf")

    assert document.title == "minutes-2024"


def test_blank_pages_are_no_warning() -> None:
    data = build_pdf([["Text on the first page."], [], ["Text on the third page."], []])

    document = parse_pdf(data)

    assert document.warnings == []
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
    ]
    assert document.text == "The only page with words."


def test_scanned_pages_among_text_pages_are_named_in_a_warning() -> None:
    data = merge_pdfs(
        build_pdf([["Chapter one is typed text."]]),
        build_image_only_pdf(page_count=2),
        build_pdf([["Chapter two is typed text too."]]),
    )

    document = parse_pdf(data)

    assert document.warnings == ["images but no text on pages 2-3 (scanned? they need OCR)"]
    assert [(s.page_start, s.page_end, s.blocks) for s in document.sections] == [
        (1, 1, ["Chapter one is typed text."]),
        (4, 4, ["Chapter two is typed text too."]),
    ]


def test_a_decompression_bomb_page_is_skipped_with_pypdfs_reason() -> None:
    data = add_flate_bomb(build_pdf([["Safe first page."], ["To be replaced."], ["Safe third page."]]), page_number=2)

    document = parse_pdf(data)

    assert document.text == "Safe first page.\n\nSafe third page."
    assert len(document.warnings) == 1
    assert document.warnings[0].startswith("pages that could not be read: 2 (Limit reached while decompressing.")


def test_two_columns_read_column_by_column() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.set_xy(10, 20)
    pdf.multi_cell(90, 5, "Apples grow in orchards on the hills above the town and ripen in the autumn sun.")
    pdf.set_xy(110, 20)
    pdf.multi_cell(90, 5, "Boats come into the harbour at dawn and unload their catch on the quay.")

    document = parse_pdf(bytes(pdf.output()))

    assert document.sections[0].blocks == [
        "Apples grow in orchards on the hills above the town and ripen in the autumn sun.",
        "Boats come into the harbour at dawn and unload their catch on the quay.",
    ]


def test_larger_type_headings_make_the_heading_path_within_and_across_pages() -> None:
    data = build_pdf(
        [
            [
                Heading("Crane manual", level=0),
                Heading("Safety", level=1),
                "Wear a helmet at all times on the quay.",
                Heading("Exclusion zone", level=2),
                "Keep ten metres clear of the load.",
            ],
            ["Never walk under a suspended container.", Heading("Maintenance", level=1), "Grease the slewing ring weekly."],
        ]
    )

    document = parse_pdf(data)

    assert document.title == "Crane manual"
    # The title, with no text of its own, opens the first chapter's section instead of one of its own.
    assert [(s.heading_path, s.page_start, s.page_end, s.blocks) for s in document.sections] == [
        (["Crane manual", "Safety"], 1, 1, ["Crane manual", "Safety", "Wear a helmet at all times on the quay."]),
        (
            ["Crane manual", "Safety", "Exclusion zone"],
            1,
            1,
            ["Exclusion zone", "Keep ten metres clear of the load."],
        ),
        (["Crane manual", "Safety", "Exclusion zone"], 2, 2, ["Never walk under a suspended container."]),
        (["Crane manual", "Maintenance"], 2, 2, ["Maintenance", "Grease the slewing ring weekly."]),
    ]


def test_big_type_everywhere_is_not_read_as_headings() -> None:
    # Slides: short lines in large type, one paragraph of small print that holds most characters.
    small_print = "All figures are unaudited and may be restated in the annual report next spring. " * 4
    slide = [Heading("Revenue up", level=1), Heading("Churn down", level=1), Heading("Hiring on plan", level=1), small_print]

    document = parse_pdf(build_pdf([slide, slide]))

    assert {tuple(s.heading_path) for s in document.sections} == {()}
    assert [s.page_start for s in document.sections] == [1, 2]
