"""Builders of real test documents (PDF, DOCX, HTML, CSV, ZIP bombs) as bytes.

Every builder writes a genuine file with the library a user's tools would produce it with (fpdf2
for PDFs with a real text layer, pypdf for encryption and blank pages, python-docx, zipfile), so a
parser test exercises the same code paths as a real upload.
"""

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

MB = 1024 * 1024

# --- PDF ---------------------------------------------------------------------------------------


def build_pdf(
    pages: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    headings: Sequence[str | None] | None = None,
    header: str | None = None,
    footer: str | None = None,
    font_size: int = 12,
) -> bytes:
    """A PDF with a real text layer: `pages[i]` is the list of paragraphs on page i+1.

    `headings[i]` (bold, larger) opens page i+1; `header` and `footer` repeat on every page, where
    "{page}" and "{pages}" are replaced by the page number and count ("Page {page} of {pages}").
    An empty paragraph list makes a page with no text at all. `title` goes in the metadata.
    """
    from fpdf import FPDF

    class _Pdf(FPDF):
        def header(self) -> None:
            if header:
                self.set_font("Helvetica", size=9)
                self.cell(0, 8, _page_text(header, self.page_no()), new_x="LMARGIN", new_y="NEXT")
                self.ln(2)

        def footer(self) -> None:
            if footer:
                self.set_y(-15)
                self.set_font("Helvetica", size=9)
                self.cell(0, 8, _page_text(footer, self.page_no()), align="C")

    def _page_text(template: str, number: int) -> str:
        return template.replace("{page}", str(number)).replace("{pages}", str(len(pages)))

    pdf = _Pdf()
    if title:
        pdf.set_title(title)
    line = {"new_x": "LMARGIN", "new_y": "NEXT"}
    for index, paragraphs in enumerate(pages):
        pdf.add_page()
        heading = headings[index] if headings and index < len(headings) else None
        if heading:
            pdf.set_font("Helvetica", "B", size=font_size + 6)
            pdf.multi_cell(0, 10, heading, **line)
            pdf.ln(2)
        pdf.set_font("Helvetica", size=font_size)
        for paragraph in paragraphs:
            pdf.multi_cell(0, font_size * 0.5, paragraph, **line)
            pdf.ln(font_size * 0.4)
    return bytes(pdf.output())


def build_image_only_pdf(page_count: int = 2) -> bytes:
    """A scanned-looking PDF: every page holds an image and no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 380, 180), outline="black", width=5)
    pdf = FPDF()
    for _ in range(page_count):
        pdf.add_page()
        pdf.image(image, x=10, y=10, w=180)
    return bytes(pdf.output())


def add_blank_pages(data: bytes, count: int) -> bytes:
    """`data` (a PDF) with `count` blank pages appended: cheap page-count bombs and empty pages."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(data)))
    for _ in range(count):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypt_pdf(data: bytes, user_password: str, owner_password: str | None = None) -> bytes:
    """`data` encrypted with pypdf (AES-256); an empty user password opens it without asking."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password or "owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- DOCX --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1  # 0 is the "Title" style


@dataclass(frozen=True)
class Bullet:
    text: str
    level: int = 0  # 0 "List Bullet", 1 "List Bullet 2", ...


@dataclass(frozen=True)
class Numbered:
    text: str


@dataclass(frozen=True)
class Table:
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Styled:
    """A paragraph in any named Word style."""

    text: str
    style: str = "Normal"


DocxItem = str | Heading | Bullet | Numbered | Table | Styled


def build_docx(items: Sequence[DocxItem], *, core_title: str | None = None) -> bytes:
    """A DOCX whose body holds `items` in order (a plain str is a Normal paragraph)."""
    import docx

    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    for item in items:
        if isinstance(item, str):
            document.add_paragraph(item)
        elif isinstance(item, Heading):
            document.add_heading(item.text, level=item.level)
        elif isinstance(item, Bullet):
            document.add_paragraph(item.text, style="List Bullet" + (f" {item.level + 1}" if item.level else ""))
        elif isinstance(item, Numbered):
            document.add_paragraph(item.text, style="List Number")
        elif isinstance(item, Styled):
            document.add_paragraph(item.text, style=item.style)
        elif isinstance(item, Table):
            columns = max(len(row) for row in item.rows)
            table = document.add_table(rows=len(item.rows), cols=columns)
            for r, row in enumerate(item.rows):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def build_zip(members: dict[str, bytes]) -> bytes:
    """A deflated ZIP archive holding `members` (name -> content)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def build_zip_bomb(uncompressed_bytes: int, *, member: str = "word/document.xml") -> bytes:
    """A DOCX-shaped ZIP whose `member` is `uncompressed_bytes` of zeros (about 1000:1), streamed."""
    out = io.BytesIO()
    chunk = b"\x00" * MB
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b'<?xml version="1.0"?><Types/>')
        with archive.open(member, "w", force_zip64=True) as handle:
            remaining = uncompressed_bytes
            while remaining > 0:
                handle.write(chunk[: min(len(chunk), remaining)])
                remaining -= len(chunk)
    return out.getvalue()


# --- HTML, CSV ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HtmlPage:
    """An article page wrapped in the navigation and footer boilerplate a real site has."""

    title: str
    body: str  # inner HTML of the <article>
    lang: str | None = None
    canonical: str | None = None
    nav_links: Sequence[str] = field(default=("Home", "Products", "About us", "Contact"))
    footer: str = "Copyright 2024 Example Corp. All rights reserved. Privacy policy. Terms of use."

    def to_bytes(self, encoding: str = "utf-8") -> bytes:
        lang = f' lang="{self.lang}"' if self.lang else ""
        canonical = f'<link rel="canonical" href="{self.canonical}">' if self.canonical else ""
        nav = "".join(f'<li><a href="/{i}">{text}</a></li>' for i, text in enumerate(self.nav_links))
        return (
            f"<!DOCTYPE html><html{lang}><head><meta charset=\"{encoding}\"><title>{self.title}</title>"
            f"{canonical}</head><body><header><nav><ul>{nav}</ul></nav></header>"
            f"<main><article>{self.body}</article></main><footer><p>{self.footer}</p></footer></body></html>"
        ).encode(encoding)


def build_csv(rows: Sequence[Sequence[object]], *, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    """CSV text of `rows` (the first row is the header if you want one), quoted where needed."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode(encoding)
