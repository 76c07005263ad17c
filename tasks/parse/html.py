"""HTML: the page's main content (no navigation, footers, cookie banners) as sections under its headings.

`html_text.page_sections` finds the content and keeps the page's visible text as the page shows it
(no Markdown escapes, no permalink glyphs, code byte for byte). trafilatura's `load_html` reads the
bytes (it guesses encodings well); its whole-text `baseline` is the fallback for a page whose text
is outside any element we keep. Canonical URL and language come from the page's head.
"""

from typing import Any
from urllib.parse import urljoin

import trafilatura
from lxml.etree import LxmlError, ParserError
from lxml.html import HtmlElement
from trafilatura.utils import load_html

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import first_line_title, pick_title, source_name, title_from_filename
from tasks.parse.html_text import page_sections


def parse_html(data: bytes, *, filename: str | None = None, url: str | None = None) -> Document:
    """Main content of an HTML page; metadata carries canonical_url and language when the page says."""
    try:
        tree = load_html(data)
    except (LxmlError, ParserError, ValueError) as exc:
        raise ParseError(f"HTML could not be parsed: {exc}", code="invalid_html") from exc
    if tree is None:
        raise ParseError("HTML could not be parsed (empty or not HTML)", code="invalid_html")
    head = _head_metadata(tree, url)  # read first: page_sections prunes the tree it is given
    warnings: list[str] = []
    sections, first_h1 = page_sections(tree)
    if not sections:
        # Text directly in odd places (a frameset's noframes, a page of only a <textarea>): still content.
        _, text, _ = trafilatura.baseline(data)
        if text and text.strip():
            warnings.append("no main content found; the page's whole text was used")
            sections = [Section(blocks=[b for b in text.split("\n") if b.strip()])]
    if not sections:
        raise ParseError("HTML page has no extractable text", code="no_text")
    name = source_name(filename, url)
    page_title = head.pop("title", None)
    if first_h1 and page_title and first_h1 in page_title:
        page_title = first_h1  # "Le café - Example Site" is the H1 plus the site's name
    title = pick_title(page_title, first_h1, title_from_filename(name), first_line_title(sections[0].blocks[0]))
    return Document(sections=sections, content_format="html", title=title, metadata=head, warnings=warnings)


# XPath 1.0 has no lower-case(): translate() folds the attribute values that may come capitalised.
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def _head_metadata(tree: HtmlElement, url: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    titles = tree.xpath("//title/text()") or tree.xpath('//meta[@property="og:title"]/@content')
    if titles:
        found["title"] = str(titles[0])
    canonical = tree.xpath(f'//link[translate(@rel, "{_UPPER}", "{_LOWER}")="canonical"]/@href') or tree.xpath(
        '//meta[@property="og:url"]/@content'
    )
    if canonical and str(canonical[0]).strip():
        found["canonical_url"] = urljoin(url or "", str(canonical[0]).strip())
    root = tree.getroottree().getroot()
    # The HTML parser keeps XHTML's xml:lang as a plain attribute of that name, which XPath's
    # @xml:lang (a namespaced attribute) does not find.
    language = (
        [value for value in (root.get("lang"), root.get("xml:lang")) if value and value.strip()]
        or tree.xpath(f'//meta[translate(@http-equiv, "{_UPPER}", "{_LOWER}")="content-language"]/@content')
        or tree.xpath('//meta[@property="og:locale"]/@content')
    )
    if language and str(language[0]).strip():
        found["language"] = str(language[0]).strip().replace("_", "-").split(",")[0].strip()
    return found
