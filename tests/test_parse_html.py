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


# --- pages as documentation generators write them -------------------------------------------------

SPHINX_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Coroutines and Tasks &#8212; Python 3.11 documentation</title></head>
<body>
<div class="related" role="navigation" aria-label="Related"><h3>Navigation</h3><ul><li><a href="genindex.html">index</a></li><li><a href="asyncio-stream.html">next</a> |</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="coroutines-and-tasks">
<h1>Coroutines and Tasks<a class="headerlink" href="#coroutines-and-tasks" title="Permalink to this heading">¶</a></h1>
<p>This section outlines high-level asyncio APIs to work with coroutines and Tasks.</p>
<section id="timeouts">
<h2>Timeouts<a class="headerlink" href="#timeouts" title="Permalink to this heading">¶</a></h2>
<dl class="py function">
<dt class="sig sig-object py" id="asyncio.wait_for">
<em class="property"><span class="pre">coroutine</span><span class="w"> </span></em><span class="sig-prename descclassname"><span class="pre">asyncio.</span></span><span class="sig-name descname"><span class="pre">wait_for</span></span><span class="sig-paren">(</span><em class="sig-param"><span class="n"><span class="pre">aw</span></span></em>, <em class="sig-param"><span class="n"><span class="pre">timeout</span></span></em><span class="sig-paren">)</span><a class="headerlink" href="#asyncio.wait_for" title="Permalink to this definition">¶</a></dt>
<dd><p>Wait for the <em>aw</em> <a class="reference internal" href="#asyncio-awaitables"><span class="std std-ref">awaitable</span></a>
to complete with a timeout.</p>
<p><em>timeout</em> can either be <code class="docutils literal notranslate"><span class="pre">None</span></code> or a float.</p>
<p>Example:</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span></span><span class="k">async</span> <span class="k">def</span> <span class="nf">main</span><span class="p">():</span>
    <span class="k">try</span><span class="p">:</span>
        <span class="k">await</span> <span class="n">asyncio</span><span class="o">.</span><span class="n">wait_for</span><span class="p">(</span><span class="n">eternity</span><span class="p">(),</span> <span class="n">timeout</span><span class="o">=</span><span class="mf">1.0</span><span class="p">)</span>
    <span class="k">except</span> <span class="ne">TimeoutError</span><span class="p">:</span>
        <span class="nb">print</span><span class="p">(</span><span class="s1">&#39;timeout!&#39;</span><span class="p">)</span>
</pre></div></div>
<div class="admonition note"><p class="admonition-title">Note</p><p>The <code class="docutils literal notranslate"><span class="pre">capture_output</span></code> and <code>lru_cache</code> names keep their underscores.</p></div>
<table class="docutils align-default"><thead><tr class="row-odd"><th class="head"><p>Flag</p></th><th class="head"><p>Meaning</p></th></tr></thead>
<tbody><tr class="row-even"><td><p><code class="docutils literal notranslate"><span class="pre">re.ASCII</span></code></p></td><td><p>match <em>[a-z]</em> only</p></td></tr></tbody></table>
</dd></dl>
</section></section>
</div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><h3>Table of Contents</h3><ul><li><a href="#">Coroutines and Tasks</a></li></ul><h4>Previous topic</h4></div>
</div>
<div class="footer">&copy; Copyright 2001-2023, Python Software Foundation.</div>
</body></html>"""


def test_sphinx_page_keeps_identifiers_code_and_tables_as_the_page_shows_them() -> None:
    document = parse_html(SPHINX_PAGE.encode(), filename="asyncio-task.html")

    assert document.title == "Coroutines and Tasks"
    assert [s.heading_path for s in document.sections] == [
        ["Coroutines and Tasks"],
        ["Coroutines and Tasks", "Timeouts"],
    ]
    assert document.sections[1].blocks == [
        "coroutine asyncio.wait_for(aw, timeout)",
        "Wait for the aw awaitable to complete with a timeout.",
        "timeout can either be None or a float.",
        "Example:",
        "```\nasync def main():\n    try:\n        await asyncio.wait_for(eternity(), timeout=1.0)\n"
        "    except TimeoutError:\n        print('timeout!')\n```",
        "Note",
        "The capture_output and lru_cache names keep their underscores.",
        "| Flag | Meaning |\n|---|---|\n| re.ASCII | match [a-z] only |",
    ]
    for chrome in ("¶", "Navigation", "Previous topic", "Copyright", "index", "\\"):
        assert chrome not in document.text


MKDOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Configuration - MkDocs</title></head>
<body><header class="md-header"><nav class="md-header__inner"><a href="/">MkDocs</a><form class="md-search"><input placeholder="Search"></form></nav></header>
<div class="md-container"><main class="md-main"><div class="md-main__inner">
<div class="md-sidebar md-sidebar--primary"><nav class="md-nav"><ul><li><a href="/">Home</a></li><li><a href="/user-guide/">User Guide</a></li><li><a href="/about/">About</a></li></ul></nav></div>
<div class="md-content"><article class="md-content__inner md-typeset">
<h1 id="configuration">Configuration<a class="headerlink" href="#configuration" title="Permanent link">&para;</a></h1>
<p>Project settings are configured by default using a YAML configuration file in the project directory named <code>mkdocs.yml</code>.</p>
<h2 id="site_name">site_name<a class="headerlink" href="#site_name" title="Permanent link">&para;</a></h2>
<p>This is a <strong>required setting</strong>, and should be a string that is used as the main title.</p>
<ol><li>Write <code>site_name: Marshmallow Generator</code></li><li>Run <code>mkdocs serve</code><ul><li>it reloads on save</li></ul></li></ol>
<div class="language-yaml highlight"><pre><span></span><code><span class="nt">site_name</span><span class="p">:</span><span class="w"> </span><span class="l l-Scalar l-Scalar-Plain">My_Docs *draft*</span>
</code></pre></div>
</article></div></div></main>
<footer class="md-footer"><div class="md-copyright">Made with Material for MkDocs</div></footer></div></body></html>"""


def test_mkdocs_page_drops_the_permalinks_and_menus_and_keeps_lists_as_markdown() -> None:
    document = parse_html(MKDOCS_PAGE.encode())

    assert document.title == "Configuration"
    assert [s.heading_path for s in document.sections] == [["Configuration"], ["Configuration", "site_name"]]
    assert document.sections[0].blocks == [
        "Project settings are configured by default using a YAML configuration file in the project "
        "directory named mkdocs.yml."
    ]
    assert document.sections[1].blocks == [
        "This is a required setting, and should be a string that is used as the main title.",
        "1. Write site_name: Marshmallow Generator\n2. Run mkdocs serve\n   - it reloads on save",
        "```\nsite_name: My_Docs *draft*\n```",
    ]
    for chrome in ("¶", "Search", "User Guide", "Material for MkDocs"):
        assert chrome not in document.text


GITHUB_PAGE = """<!DOCTYPE html><html lang="en"><head><title>README.md at main · octo/widgets · GitHub</title></head>
<body><div class="position-relative js-header-wrapper"><header class="AppHeader"><a href="/">Skip to content</a><nav aria-label="Global"><a href="/pulls">Pull requests</a></nav></header></div>
<div class="repository-content"><div id="readme"><article class="markdown-body entry-content container-lg" itemprop="text">
<div class="markdown-heading" dir="auto"><h1 tabindex="-1" class="heading-element" dir="auto">widgets</h1><a id="user-content-widgets" class="anchor" aria-label="Permalink: widgets" href="#widgets"><svg class="octicon octicon-link" viewBox="0 0 16 16" aria-hidden="true"><path d="m7.775 3.275"></path></svg></a></div>
<p dir="auto">Install with <code>pip install octo_widgets[all]</code>, then set <code>WIDGETS_HOME</code>.</p>
<div class="markdown-heading" dir="auto"><h2 tabindex="-1" class="heading-element" dir="auto">Usage</h2><a id="user-content-usage" class="anchor" aria-label="Permalink: Usage" href="#usage"><svg class="octicon octicon-link"><path d="m7"></path></svg></a></div>
<div class="highlight highlight-source-python notranslate position-relative overflow-auto" dir="auto"><pre><span class="pl-k">from</span> <span class="pl-s1">widgets</span> <span class="pl-k">import</span> <span class="pl-s1">make_widget</span>
<span class="pl-en">make_widget</span>(<span class="pl-s1">size</span><span class="pl-c1">=</span><span class="pl-c1">3</span>)</pre><div class="zeroclipboard-container"><clipboard-copy aria-label="Copy" class="ClipboardButton btn"></clipboard-copy></div></div>
<markdown-accessiblity-table><table><thead><tr><th>Option</th><th>Default</th></tr></thead><tbody><tr><td><code>max_size</code></td><td><code>10</code></td></tr></tbody></table></markdown-accessiblity-table>
</article></div></div>
<footer class="footer"><p>&copy; 2024 GitHub, Inc.</p><a href="/site/terms">Terms</a></footer></body></html>"""


def test_github_readme_keeps_brackets_and_underscores_without_escapes() -> None:
    document = parse_html(GITHUB_PAGE.encode())

    assert document.title == "widgets"
    assert [s.heading_path for s in document.sections] == [["widgets"], ["widgets", "Usage"]]
    assert document.sections[0].blocks == ["Install with pip install octo_widgets[all], then set WIDGETS_HOME."]
    assert document.sections[1].blocks == [
        "```\nfrom widgets import make_widget\nmake_widget(size=3)\n```",
        "| Option | Default |\n|---|---|\n| max_size | 10 |",
    ]
    for chrome in ("Skip to content", "Pull requests", "GitHub, Inc.", "Terms", "\\"):
        assert chrome not in document.text


DOCBOOK_PAGE = """<!DOCTYPE html><html><head><title>5.1. Table Basics</title></head><body id="docContent" class="container-fluid col-10">
<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="5" align="center">5.1. Table Basics</th></tr><tr><td width="10%" align="left"><a accesskey="p" href="ddl.html" title="Chapter 5. Data Definition">Prev</a> </td><td width="10%" align="left"><a accesskey="u" href="ddl.html" title="Chapter 5. Data Definition">Up</a></td><th width="60%" align="center">Chapter 5. Data Definition</th><td width="10%" align="right"><a accesskey="h" href="index.html" title="PostgreSQL 15.8 Documentation">Home</a></td><td width="10%" align="right"> <a accesskey="n" href="ddl-default.html" title="5.2. Default Values">Next</a></td></tr></table><hr /></div>
<div class="sect1" id="DDL-BASICS"><div class="titlepage"><div><div><h2 class="title" style="clear: both">5.1. Table Basics <a href="#DDL-BASICS" class="id_link">#</a></h2></div></div></div>
<p>To create a table, you use the aptly named <a class="xref" href="sql-createtable.html" title="CREATE TABLE"><span class="command"><strong>CREATE TABLE</strong></span></a> command.</p>
<pre class="programlisting">CREATE TABLE my_first_table (
    first_column text,
    second_column integer
);</pre>
<div class="tip"><h3 class="title">Tip</h3><p>Choose a consistent naming pattern for the tables and columns.</p></div>
<p>There is a limit on how many columns a table can contain.</p>
</div>
<div class="navfooter"><hr /><table width="100%" summary="Navigation footer"><tr><td width="40%" align="left"><a accesskey="p" href="ddl.html">Prev</a> </td><td width="20%" align="center"><a accesskey="u" href="ddl.html">Up</a></td><td width="40%" align="right"> <a accesskey="n" href="ddl-default.html">Next</a></td></tr></table></div>
</body></html>"""


def test_docbook_page_keeps_its_section_titles_without_the_anchor_and_its_tips_inside_the_section() -> None:
    document = parse_html(DOCBOOK_PAGE.encode())

    assert document.title == "5.1. Table Basics"
    assert [s.heading_path for s in document.sections] == [["5.1. Table Basics"]]
    assert document.sections[0].blocks == [
        "To create a table, you use the aptly named CREATE TABLE command.",
        "```\nCREATE TABLE my_first_table (\n    first_column text,\n    second_column integer\n);\n```",
        "Tip",
        "Choose a consistent naming pattern for the tables and columns.",
        "There is a limit on how many columns a table can contain.",
    ]
    for chrome in ("Prev", "Next", "Home", "#"):
        assert chrome not in document.text


def test_menus_of_links_in_a_page_without_a_main_element_are_not_content() -> None:
    page = (
        b"<html><body><div id='cookie-banner'><p>We use cookies to improve your experience.</p></div>"
        b"<div class='links'><ul><li><a href='/a'>Alpha</a></li><li><a href='/b'>Beta</a></li><li><a href='/c'>Gamma</a>"
        b"</li></ul></div><div><h1>Release notes</h1><p>Version 2 reads <a href='/cfg'>the config</a> once at start.</p>"
        b"</div></body></html>"
    )

    document = parse_html(page)

    assert [s.heading_path for s in document.sections] == [["Release notes"]]
    assert document.text == "Version 2 reads the config once at start."
