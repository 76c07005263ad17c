"""Builders of real test documents (PDF, DOCX, HTML, CSV, ZIP bombs) as bytes.

Every builder writes a genuine file with the library a user's tools would produce it with (fpdf2
for PDFs with a real text layer, pypdf for encryption and blank pages, python-docx, zipfile), so a
parser test exercises the same code paths as a real upload. Where no library writes the thing
(Word's content controls and tracked changes, an Office encryption wrapper), the builder writes the
markup or the container format by the specification, as Word does.
"""

import csv
import io
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

MB = 1024 * 1024

# --- PDF ---------------------------------------------------------------------------------------


def build_pdf(
    pages: Sequence[Sequence["str | Heading"]],
    *,
    title: str | None = None,
    headings: Sequence[str | None] | None = None,
    header: str | None = None,
    footer: str | None = None,
    font_size: int = 12,
) -> bytes:
    """A PDF with a real text layer: `pages[i]` is the list of paragraphs on page i+1.

    A `Heading` among the paragraphs is set bold and larger by its level (0: +12 pt, 1: +6, 2: +3,
    deeper: +2). `headings[i]` (a level-1 heading) opens page i+1; `header` and `footer` repeat on every page, where
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
            if isinstance(paragraph, Heading):
                size = font_size + {0: 12, 1: 6, 2: 3}.get(paragraph.level, 2)
                pdf.ln(font_size * 0.4)
                pdf.set_font("Helvetica", "B", size=size)
                pdf.multi_cell(0, size * 0.5, paragraph.text, **line)
                pdf.set_font("Helvetica", size=font_size)
            else:
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


def merge_pdfs(*documents: bytes) -> bytes:
    """One PDF of all the pages of `documents`, in order (e.g. text pages around a scanned one),
    with the first document's metadata (its title)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for index, data in enumerate(documents):
        reader = PdfReader(io.BytesIO(data))
        writer.append(reader)
        if index == 0 and reader.metadata:
            writer.add_metadata(dict(reader.metadata))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def add_flate_bomb(data: bytes, page_number: int, inflated_bytes: int = 100 * MB) -> bytes:
    """`data` (a PDF) with page `page_number`'s content replaced by a Flate stream of about
    inflated_bytes/1000 bytes that inflates to `inflated_bytes` of spaces: a decompression bomb."""
    import zlib

    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, StreamObject

    compressor = zlib.compressobj(9)
    block = b" " * MB
    raw = b"".join(compressor.compress(block) for _ in range(inflated_bytes // MB)) + compressor.flush()
    stream = StreamObject()
    stream._data = raw  # already compressed: written as is
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.pages[page_number - 1][NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def repeat_pages(data: bytes, copies: int) -> bytes:
    """A PDF of `copies` copies of the first page of `data`: a long document in a second, where
    fpdf2 would take a minute to lay out the text."""
    from pypdf import PdfReader, PdfWriter

    page = PdfReader(io.BytesIO(data)).pages[0]
    writer = PdfWriter()
    for _ in range(copies):
        writer.add_page(page)
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
    # (first row, first column, last row, last column) of cells merged into one, as Word merges them
    merges: Sequence[tuple[int, int, int, int]] = ()


@dataclass(frozen=True)
class Styled:
    """A paragraph in any named Word style."""

    text: str
    style: str = "Normal"


@dataclass(frozen=True)
class RawXml:
    """Body-level WordprocessingML written as Word writes it, for what python-docx cannot make:
    content controls (w:sdt), tracked changes (w:ins, w:del), fields, text boxes. The prefixes
    w, r, mc, wp, a, wps and v are declared."""

    xml: str


DocxItem = str | Heading | Bullet | Numbered | Table | Styled | RawXml

WORD_NAMESPACES = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
    "v": "urn:schemas-microsoft-com:vml",
}


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
            for top, left, bottom, right in item.merges:
                merged = table.cell(top, left).merge(table.cell(bottom, right))
                merged.text = item.rows[top][left]
        elif isinstance(item, RawXml):
            from docx.oxml import parse_xml

            declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in WORD_NAMESPACES.items())
            wrapper = parse_xml(f"<w:body {declarations}>{item.xml}</w:body>")
            for element in list(wrapper):
                document.element.body.sectPr.addprevious(element)
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


def build_encrypted_office_file(package_size: int = 8192) -> bytes:
    """What Office writes for a password-protected DOCX: a Compound File Binary (MS-CFB, version 3)
    holding an EncryptionInfo and an EncryptedPackage stream (random-looking bytes here; no key
    opens them, which is the point).

    Layout, 512-byte sectors after the header: 0 FAT, 1 directory, then each stream's sectors.
    Streams are 4096 bytes or more so they live in regular sectors, not the mini stream.
    """
    import random

    free, end_of_chain, fat_sector, no_stream = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
    noise = random.Random(7)
    info = struct.pack("<HHI", 4, 4, 0x40) + bytes(noise.randrange(256) for _ in range(4096 - 8))
    package = struct.pack("<Q", package_size) + bytes(noise.randrange(256) for _ in range(package_size))
    streams = [("EncryptionInfo", info), ("EncryptedPackage", package)]

    fat = [fat_sector, end_of_chain]
    starts, data = [], b""
    for _, content in streams:
        sectors = -(-len(content) // 512)
        starts.append(len(fat))
        fat += [len(fat) + i + 1 for i in range(sectors - 1)] + [end_of_chain]
        data += content.ljust(sectors * 512, b"\0")
    assert len(fat) <= 128, "one FAT sector addresses 128 sectors"
    fat_bytes = struct.pack("<128I", *(fat + [free] * (128 - len(fat))))

    def entry(name: str, kind: int, left: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        return (
            encoded.ljust(64, b"\0")
            + struct.pack("<HBB3I", len(encoded), kind, 1, left, right, child)  # 1: black node
            + bytes(16 + 4 + 8 + 8)  # class id, state bits, creation and modification times
            + struct.pack("<IQ", start, size)
        )

    # A red-black tree ordered by name length: EncryptionInfo (14) < EncryptedPackage (16).
    directory = (
        entry("Root Entry", 5, no_stream, no_stream, 1, end_of_chain, 0)
        + entry("EncryptionInfo", 2, no_stream, 2, no_stream, starts[0], len(info))
        + entry("EncryptedPackage", 2, no_stream, no_stream, no_stream, starts[1], len(package))
        + entry("", 0, no_stream, no_stream, no_stream, 0, 0)
    )
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)  # minor, major version, byte order, sector shifts
        + bytes(6)
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 0x1000, end_of_chain, 0, end_of_chain, 0)
        + struct.pack("<109I", 0, *([free] * 108))  # the DIFAT: FAT sector 0
    )
    assert len(header) == 512
    return header + fat_bytes + directory + data


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


def queued_job(note: str, library_name: str):
    """A job of one inline note in library `library_name` (made if missing), submitted as the API
    submits it, in the current settings' database; its flow run is left to the caller."""
    from gristmill.settings import get_settings
    from gristmill.usecases.submission import SourceSpec, submit
    from storage import repository
    from storage.db import session_scope

    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        library = repository.find_library_by_name(session, workspace.id, library_name) or repository.create_library(
            session, workspace.id, name=library_name, embedding_model="all-MiniLM-L6-v2", embedding_dim=384,
            chunk_max_tokens=256, chunk_overlap_tokens=32,
        )
        spec = SourceSpec(origin="inline", data=note.encode(), content_type="text/plain", inline=True)
        return submit(session, settings, library, [spec]).job
