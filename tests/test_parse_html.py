"""HTML parsing: main content without boilerplate, headings as structure, head metadata."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.html import parse_html
from tests.builders import HtmlPage

ARTICLE = """
<h1>Growing tomatoes</h1>
<p>Tomatoes need six to eight hours of sun a day, and <a href="https://example.org/soil">well-drained
soil</a> rich in organic matter to give a good crop through the whole summer.</p>
<h2>Watering</h2>
<p>Water deeply twice a week rather than a little every day, so that the roots grow down into the
cooler soil where they find moisture during the hottest weeks.</p>
<ul><li>Water in the morning</li><li>Keep the leaves dry</li></ul>
<h3>In pots</h3>
<p>Plants in pots dry out much faster and may need water every day in July and August.</p>
<table><tr><th>Month</th><th>Litres per week</th></tr><tr><td>June</td><td>10</td></tr></table>
"""


def test_main_content_sections_follow_the_headings_without_navigation_or_footer() -> None:
    page = HtmlPage(
        title="Growing tomatoes - Garden Weekly",
        body=ARTICLE,
        lang="en-GB",
        canonical="/guides/tomatoes",
    )

    document = parse_html(page.to_bytes(), url="https://garden.example.com/guides/tomatoes?ref=home")

    assert document.content_format == "html"
    assert document.title == "Growing tomatoes"
    assert document.metadata == {
        "canonical_url": "https://garden.example.com/guides/tomatoes",
        "language": "en-GB",
    }
    assert [s.heading_path for s in document.sections] == [
        ["Growing tomatoes"],
        ["Growing tomatoes", "Watering"],
        ["Growing tomatoes", "Watering", "In pots"],
    ]
    assert document.sections[0].blocks == [
        "Tomatoes need six to eight hours of sun a day, and well-drained soil rich in organic matter to "
        "give a good crop through the whole summer."
    ]
    assert document.sections[1].blocks[1] == "- Water in the morning\n- Keep the leaves dry"
    assert document.sections[2].blocks[1].startswith("| Month | Litres per week |")
    for boilerplate in ("Products", "About us", "Copyright 2024", "Privacy policy"):
        assert boilerplate not in document.text


def test_page_in_a_legacy_encoding_decodes_right() -> None:
    body = "<h1>Le café</h1><p>" + "Un café crème à la terrasse, très agréable. " * 5 + "</p>"
    page = HtmlPage(title="Café de Flore", body=body)

    document = parse_html(page.to_bytes(encoding="iso-8859-1"))

    assert document.title == "Café de Flore"
    assert document.sections[0].heading_path == ["Le café"]
    assert document.text.startswith("Un café crème à la terrasse, très agréable.")


def test_short_page_is_kept_with_a_warning() -> None:
    document = parse_html(b"<html><body><p>Closed on Mondays.</p></body></html>", filename="hours.html")

    assert document.text == "Closed on Mondays."
    assert document.title == "hours"
    assert document.metadata == {}


def test_page_without_text_is_refused() -> None:
    with pytest.raises(ParseError) as error:
        parse_html(b"<html><head><title></title></head><body><script>var x = 1;</script></body></html>")

    assert error.value.code == "no_text"
    assert error.value.message == "HTML page has no extractable text"


def test_xhtml_language_and_og_url_are_read_from_the_head() -> None:
    page = (
        b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="de"><head><title>Anleitung</title>'
        b'<meta property="og:url" content="https://docs.example.de/anleitung"/></head><body><article>'
        b"<h1>Anleitung</h1><p>" + "Die Maschine wird jeden Montag gereinigt und gepr\u00fcft. ".encode() * 6
        + b"</p></article></body></html>"
    )

    document = parse_html(page)

    assert document.metadata == {"canonical_url": "https://docs.example.de/anleitung", "language": "de"}
    assert document.title == "Anleitung"
    assert document.text.startswith("Die Maschine wird jeden Montag gereinigt und gepr\u00fcft.")
