"""Markdown and plain text: headings, front matter, encodings, binary refusal."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.markdown import parse_markdown, parse_text

NOTES = """---
title: Kitchen renovation
tags: [home, budget]
started: 2024-03-01
---
Notes kept while planning.

# Budget

The total is 12,000 EUR
including fitting.

## Cabinets

- Oak fronts
- Soft-close hinges

```python
# estimate
total = 4_000

print(total)
```

Appliances
----------

Induction hob and a quiet dishwasher.

# Schedule ##

| Week | Task |
|------|------|
| 1 | Demolition |
"""


def test_markdown_headings_drive_sections_and_front_matter_becomes_metadata() -> None:
    document = parse_markdown(NOTES.encode(), filename="kitchen.md")

    assert document.content_format == "markdown"
    assert document.title == "Kitchen renovation"
    assert document.metadata == {
        "encoding": "utf-8",
        "title": "Kitchen renovation",
        "tags": ["home", "budget"],
        "started": "2024-03-01",
    }
    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        ([], ["Notes kept while planning."]),
        (["Budget"], ["The total is 12,000 EUR\nincluding fitting."]),
        (
            ["Budget", "Cabinets"],
            ["- Oak fronts\n- Soft-close hinges", "```python\n# estimate\ntotal = 4_000\n\nprint(total)\n```"],
        ),
        (["Budget", "Appliances"], ["Induction hob and a quiet dishwasher."]),
        (["Schedule"], ["| Week | Task |\n|------|------|\n| 1 | Demolition |"]),
    ]


def test_title_falls_back_to_the_first_h1_then_the_file_name() -> None:
    assert parse_markdown(b"intro\n\n# Release notes\n\nFixed bugs.").title == "Release notes"
    assert parse_markdown(b"## Only an H2\n\ntext", filename="docs/changes.md").title == "changes"
    assert parse_markdown(b"First line here\nsecond").title == "First line here"


def test_unparseable_front_matter_is_read_as_simple_key_values() -> None:
    text = b"---\ntitle: Odd: colons: everywhere\nauthor: Sam\n  bad: [indent\n---\nBody."

    document = parse_markdown(text)

    assert document.title == "Odd: colons: everywhere"
    assert document.metadata["author"] == "Sam"
    assert document.text == "Body."


def test_a_leading_thematic_break_is_not_front_matter() -> None:
    # CommonMark: a rule, then a setext heading underlined by the second "---".
    document = parse_markdown(b"---\nJust a rule above a heading\n---\n\nMore.")

    assert document.metadata == {"encoding": "utf-8"}
    assert [(s.heading_path, s.blocks) for s in document.sections] == [(["Just a rule above a heading"], ["More."])]
    assert document.title == "Just a rule above a heading"


def test_latin1_text_decodes_right() -> None:
    data = "Le café est très bon.\n\nÀ bientôt, déjà l'été.".encode("latin-1")

    document = parse_text(data, filename="menu.txt")

    assert document.content_format == "text"
    assert document.sections[0].blocks == ["Le café est très bon.", "À bientôt, déjà l'été."]
    assert document.metadata == {"encoding": "cp1252"}
    assert document.title == "menu"


def test_short_latin1_word_decodes_right() -> None:
    assert parse_text("café".encode("latin-1")).text == "café"


def test_utf16_text_with_a_bom_decodes_right() -> None:
    assert parse_text("Grüße aus Köln".encode("utf-16")).text == "Grüße aus Köln"


def test_cyrillic_in_cp1251_is_not_mistaken_for_latin1() -> None:
    text = "Привет, как дела? Это тест кодировки для проверки."

    assert parse_text(text.encode("cp1251")).text == text


def test_text_with_nul_bytes_is_not_text() -> None:
    with pytest.raises(ParseError) as error:
        parse_text(b"looks like text\x00\x00\x01\x02 but is not")

    assert error.value.code == "not_text"
    assert error.value.message == "text file contains NUL bytes: it looks binary, not text"


def test_binary_junk_without_nul_bytes_is_not_text() -> None:
    junk = bytes((i * 37 + 11) % 255 + 1 for i in range(4000))  # every byte value but 0, scrambled

    with pytest.raises(ParseError) as error:
        parse_text(junk)

    assert error.value.code == "not_text"


def test_crlf_line_endings_are_normalised() -> None:
    document = parse_markdown(b"# Title\r\n\r\nLine one\r\nline two\r\n")

    assert document.sections[0].blocks == ["Line one\nline two"]


def test_toml_front_matter_becomes_metadata() -> None:
    data = b'+++\ntitle = "Deploying"\ndate = 2024-05-01\ntags = ["ops", "release"]\n+++\n# Steps\n\nTag, then push.\n'

    document = parse_markdown(data)

    assert document.title == "Deploying"
    assert document.metadata == {
        "encoding": "utf-8",
        "title": "Deploying",
        "date": "2024-05-01",
        "tags": ["ops", "release"],
    }
    assert [(s.heading_path, s.blocks) for s in document.sections] == [(["Steps"], ["Tag, then push."])]


def test_utf16_without_a_byte_order_mark_is_text_not_binary() -> None:
    text = "Grüße aus Köln: the meeting moved to Thursday."

    assert parse_text(text.encode("utf-16-le")).text == text
    assert parse_text(text.encode("utf-16-be")).metadata == {"encoding": "utf-16-be"}
