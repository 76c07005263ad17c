"""An HTML page's visible text as sections under its headings, in reading order, as the page shows it.

Nothing is escaped or decorated: inline code, emphasis and links become their plain text, so an
identifier such as `asyncio.wait_for(aw, timeout)` is stored as the page shows it. Structure the
reader sees is kept as Markdown: headings make sections (the heading path), code blocks are fenced
with their text byte for byte, lists get `-` or `1.` markers, tables become pipe tables (a `|`
inside a cell is written `\\|`, the one escape a pipe table needs). Whitespace outside code is
collapsed, as a browser collapses it.

Which part of the page is content: the element documentation generators mark as the main one
(`role="main"`, `<main>`, a lone `<article>`, GitHub's `markdown-body`), else the whole body. In
either, navigation, sidebars, footers, cookie banners, hidden text and permalink glyphs (Sphinx's
and MkDocs' `¶`, PostgreSQL's `#`, GitHub's anchors) are dropped; in the whole body, so are lists
and tables made mostly of links (menus, tables of contents).
"""

import re
from collections.abc import Iterable

from lxml.html import HtmlElement

from gristmill.documents import Section
from tasks.parse.common import table_markdown

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "li", "main",
    "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul", "caption", "tbody", "thead",
    "tfoot", "tr", "td", "th", "html", "listing", "xmp", "plaintext",
    *_HEADINGS,
}  # fmt: skip
# Never visible, or controls rather than text.
_SKIPPED_TAGS = {
    "script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object", "embed",
    "button", "select", "input", "textarea", "option", "nav", "aside", "footer", "head", "title", "meta",
    "link", "img", "picture", "video", "audio", "map", "dialog",
}  # fmt: skip
_BOILERPLATE_ROLES = {"navigation", "search", "banner", "contentinfo", "complementary", "dialog", "alert"}
# class or id words of site chrome; matched against each word of the attribute, case folded.
_BOILERPLATE_WORD = re.compile(
    r"^(?:nav|navbar|navigation|navheader|navfooter|menu|menubar|sidebar|sphinxsidebar|sphinxsidebarwrapper"
    r"|related|breadcrumbs?|footer|site-footer|page-footer|md-footer|md-sidebar|md-header|skip-link"
    r"|cookies?|cookie-banner|cookie-notice|consent|gdpr|toc|table-of-contents|pagination|prev-next"
    r"|edit-this-page|sr-only|visually-hidden|screen-reader-text|hidden|d-none)$"
)
# Boxes set beside the text (DocBook's and Sphinx's admonitions): a heading in one labels the box.
_ASIDE_BOX_WORD = re.compile(r"^(?:note|tip|hint|warning|caution|important|danger|attention|admonition|callout|seealso)$")
_WORD_SPLIT = re.compile(r"[\s]+")
# Links that only mark a place: Sphinx's and MkDocs' "headerlink", GitHub's "anchor", DocBook's "id_link".
_PERMALINK_CLASS = re.compile(r"^(?:headerlink|anchor|anchorjs-link|id_link|permalink|heading-anchor|hash-link|zola-anchor)$")
_PERMALINK_GLYPHS = {"", "¶", "#", "§", "🔗", "⚓", "⚓︎", "link", "permalink"}
_LINK_DENSE_SHARE = 0.7  # of a container's text inside links, for a list or table to count as a menu
_LINK_DENSE_MIN_LINKS = 3
_MAIN_XPATHS = (
    '//article[contains(concat(" ", normalize-space(@class), " "), " markdown-body ")]',
    '//*[@role="main"]',
    "//main",
)


def page_sections(tree: HtmlElement) -> tuple[list[Section], str | None]:
    """The page's content as sections, and its first H1's text (None when it has none)."""
    root, whole_body = _content_root(tree)
    _drop_boilerplate(root, whole_body=whole_body)
    renderer = _Renderer()
    renderer.container(root)
    return renderer.finish(), renderer.first_h1


def _content_root(tree: HtmlElement) -> tuple[HtmlElement, bool]:
    for xpath in _MAIN_XPATHS:
        found = tree.xpath(xpath)
        if found:
            return found[0], False
    articles = tree.xpath("//article")
    if len(articles) == 1:
        return articles[0], False
    bodies = tree.xpath("//body")
    return (bodies[0] if bodies else tree), True


def _drop_boilerplate(root: HtmlElement, *, whole_body: bool) -> None:
    doomed = [element for element in root.iter() if isinstance(element.tag, str) and _is_boilerplate(element)]
    if whole_body:
        doomed += [e for e in root.iter("ul", "ol", "table", "div", "dl") if _is_link_dense(e)]
    for element in doomed:
        if element is not root and element.getparent() is not None:
            element.drop_tree()  # keeps the tail text, which belongs to the parent


def _is_boilerplate(element: HtmlElement) -> bool:
    tag = element.tag.lower()
    if tag in ("footer", "nav", "aside") or element.get("hidden") is not None:
        return True
    if tag == "header" and not element.xpath(".//h1|.//h2|.//h3"):
        return True  # a site header; an article's header carries its title
    if (element.get("role") or "").lower() in _BOILERPLATE_ROLES:
        return True
    style = (element.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    words = _WORD_SPLIT.split(f"{element.get('class') or ''} {element.get('id') or ''}".lower())
    if tag == "a" and (any(_PERMALINK_CLASS.match(w) for w in words) or _is_glyph_link(element)):
        return True
    return any(_BOILERPLATE_WORD.match(w) for w in words if w)


def _is_glyph_link(link: HtmlElement) -> bool:
    return (link.get("href") or "").startswith("#") and link.text_content().strip() in _PERMALINK_GLYPHS and (
        link.getparent() is not None and link.getparent().tag in (*_HEADINGS, "dt")
    )


def _is_link_dense(element: HtmlElement) -> bool:
    if element.xpath(".//h1|.//h2|.//h3|.//h4|.//pre"):
        return False
    links = element.xpath(".//a")
    if len(links) < _LINK_DENSE_MIN_LINKS:
        return False
    text = len("".join(element.text_content().split()))
    linked = sum(len("".join(a.text_content().split())) for a in links)
    return text > 0 and linked / text >= _LINK_DENSE_SHARE


def _tag(element: HtmlElement) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


def _source_text(text: str) -> str:
    """A text node outside <pre>: its line breaks are spaces (only <br> breaks a line)."""
    return text.replace("\r", " ").replace("\n", " ")


def _collapse(text: str) -> str:
    """Whitespace as a browser shows it: runs become one space, a <br> (kept as \\n) a line break."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def inline_text(element: HtmlElement) -> str:
    """The text of an element's inline content, <br> as a line break, skipped elements left out."""
    parts: list[str] = []
    _inline_parts(element, parts)
    return _collapse("".join(parts))


def _inline_parts(element: HtmlElement, parts: list[str]) -> None:
    if element.text:
        parts.append(_source_text(element.text))
    for child in element:
        tag = _tag(child)
        if tag == "br":
            parts.append("\n")
        elif tag and tag not in _SKIPPED_TAGS:
            if tag in _BLOCK_TAGS:
                parts.append(" ")
            _inline_parts(child, parts)
            if tag in _BLOCK_TAGS:
                parts.append(" ")
        if child.tail:
            parts.append(_source_text(child.tail))


def _in_aside_box(element: HtmlElement) -> bool:
    for ancestor in element.iterancestors():
        words = _WORD_SPLIT.split((ancestor.get("class") or "").lower())
        if any(_ASIDE_BOX_WORD.match(w) for w in words):
            return True
    return False


def _has_blocks(element: HtmlElement) -> bool:
    return any(_tag(e) in _BLOCK_TAGS for e in element.iterdescendants())


class _Renderer:
    """Walks a content tree into blocks under heading paths (one Section per heading)."""

    def __init__(self, *, headings: bool = True) -> None:
        self.headings = headings
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []
        self.blocks: list[str] = []
        self.inline: list[str] = []
        self.first_h1: str | None = None

    def finish(self) -> list[Section]:
        self._close_section()
        return self.sections

    def container(self, element: HtmlElement) -> None:
        """An element whose children may be blocks or inline content (a div, a list item, a cell)."""
        if element.text:
            self.inline.append(_source_text(element.text))
        for child in element:
            tag = _tag(child)
            if not tag or tag in _SKIPPED_TAGS:
                pass
            elif tag == "br":
                self.inline.append("\n")
            elif tag in _BLOCK_TAGS or _has_blocks(child):
                self._flush_inline()
                self._block(child, tag)
                self._flush_inline()
            else:
                _inline_parts(child, self.inline)
            if child.tail:
                self.inline.append(_source_text(child.tail))

    def _block(self, element: HtmlElement, tag: str) -> None:
        if tag in _HEADINGS and not _in_aside_box(element):
            self._heading(_HEADINGS[tag], inline_text(element))
        elif tag in _HEADINGS:
            self._add(inline_text(element))  # "Tip", "Warning": the box's label, not a section of the page
        elif tag in ("pre", "listing", "xmp", "plaintext"):
            self._add(code_block(element))
        elif tag in ("ul", "ol", "menu"):
            self._add(list_block(element))
        elif tag == "table" and not element.xpath(".//table|.//pre|.//h1|.//h2|.//h3|.//h4|.//ul|.//ol"):
            self._add(table_block(element))
        elif tag == "dt":
            self._add(inline_text(element))
        elif tag == "hr":
            pass
        else:
            self.container(element)

    def _heading(self, level: int, title: str) -> None:
        if not title:
            return
        title = " ".join(title.split())
        if not self.headings:
            self._add(title)
            return
        if level == 1 and self.first_h1 is None:
            self.first_h1 = title
        self._close_section()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))

    def _add(self, block: str) -> None:
        if block.strip():
            self.blocks.append(block)

    def _flush_inline(self) -> None:
        self._add(_collapse("".join(self.inline)))
        self.inline.clear()

    def _close_section(self) -> None:
        self._flush_inline()
        if self.blocks:
            self.sections.append(Section(blocks=list(self.blocks), heading_path=[t for _, t in self.stack]))
        self.blocks.clear()


def code_block(element: HtmlElement) -> str:
    """A <pre> as a fenced block holding its text byte for byte (trailing newlines aside)."""
    code = element.text_content().strip("\n")
    if not code.strip():
        return ""
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}\n{code}\n{fence}"


def _item_blocks(item: HtmlElement) -> list[str]:
    renderer = _Renderer(headings=False)
    renderer.container(item)
    return [block for section in renderer.finish() for block in section.blocks]


def list_block(element: HtmlElement) -> str:
    """A list as Markdown: `- ` or `1. ` per item, an item's further blocks and nested lists indented under it."""
    ordered = _tag(element) == "ol"
    try:
        number = int(element.get("start") or 1)
    except ValueError:
        number = 1
    lines: list[str] = []
    for item in element:
        if _tag(item) != "li":
            continue
        marker = f"{number}." if ordered else "-"
        number += 1
        blocks = _item_blocks(item)
        if not blocks:
            continue
        indent = " " * (len(marker) + 1)
        item_lines = "\n".join(blocks).split("\n")
        lines.append(f"{marker} {item_lines[0]}")
        lines += [indent + line if line.strip() else "" for line in item_lines[1:]]
    return "\n".join(lines)


def _rows(table: HtmlElement) -> Iterable[HtmlElement]:
    for child in table:
        tag = _tag(child)
        if tag == "tr":
            yield child
        elif tag in ("thead", "tbody", "tfoot"):
            yield from (row for row in child if _tag(row) == "tr")


def table_block(table: HtmlElement) -> str:
    """A table as a Markdown pipe table, its first row as the header; its caption as a line above it."""
    rows = [[inline_text(cell).replace("\n", " ") for cell in row if _tag(cell) in ("td", "th")] for row in _rows(table)]
    body = table_markdown([row for row in rows if row])
    captions = [inline_text(c) for c in table if _tag(c) == "caption"]
    return "\n".join(part for part in (*captions, body) if part)
