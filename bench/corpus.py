"""A seeded, mixed-format corpus for benchmarks: Markdown, TXT, HTML, CSV, JSON, DOCX and PDF files.

The prose comes from built-in word lists and sentence templates, so nothing is downloaded and the same
seed writes byte-identical files. With the defaults (300 documents, seed 7) that is 324,478 words, about
423,000 MiniLM tokens once parsed, which the chunker packs into about 2,500 chunks of at most 256 tokens
(overlap 32).

    python -m bench.corpus /tmp/corpus --documents 300 --seed 7
"""

import argparse
import csv
import io
import json
import math
import random
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# Format mix, as weights: prose-heavy formats dominate, as in a typical knowledge base.
FORMATS: dict[str, int] = {"md": 20, "txt": 14, "html": 16, "csv": 9, "json": 9, "docx": 16, "pdf": 16}

# Mean words per document before per-format scaling; documents vary from a few hundred to ~4,000.
MEAN_WORDS = 950
_FIXED_TIME = datetime(2024, 1, 1, tzinfo=UTC)  # stamped into DOCX and PDF metadata for reproducibility


@dataclass(frozen=True)
class Topic:
    name: str
    nouns: tuple[str, ...]
    verbs: tuple[tuple[str, str, str], ...]  # base, past, past participle
    adjectives: tuple[str, ...]
    places: tuple[str, ...]


_TOPICS = (
    Topic(
        "warehouse logistics",
        ("shipment", "pallet", "carrier", "forklift", "inventory", "loading dock", "route", "manifest",
         "freight invoice", "picking list", "cross-dock", "container", "barcode scanner", "delivery window"),
        (("ship", "shipped", "shipped"), ("load", "loaded", "loaded"), ("scan", "scanned", "scanned"),
         ("reroute", "rerouted", "rerouted"), ("consolidate", "consolidated", "consolidated")),
        ("inbound", "outbound", "overdue", "damaged", "temperature-controlled", "oversized"),
        ("the Rotterdam hub", "the north warehouse", "Dock 4", "the Lyon depot", "the regional centre"),
    ),
    Topic(
        "solar energy",
        ("solar panel", "inverter", "battery bank", "grid connection", "substation", "peak load",
         "meter reading", "array", "charge controller", "feed-in tariff", "transformer", "power purchase agreement"),
        (("install", "installed", "installed"), ("inspect", "inspected", "inspected"),
         ("commission", "commissioned", "commissioned"), ("balance", "balanced", "balanced"),
         ("curtail", "curtailed", "curtailed")),
        ("rooftop", "off-grid", "bifacial", "degraded", "grid-tied", "residential"),
        ("the Almeria plant", "the east field", "the rooftop site", "the test bench", "Substation B"),
    ),
    Topic(
        "software operations",
        ("release", "deployment", "service", "database", "incident", "rollback", "pipeline", "cache",
         "feature flag", "on-call rotation", "error budget", "load balancer", "migration", "dashboard"),
        (("deploy", "deployed", "deployed"), ("monitor", "monitored", "monitored"),
         ("migrate", "migrated", "migrated"), ("roll back", "rolled back", "rolled back"),
         ("patch", "patched", "patched")),
        ("stateless", "flaky", "latency-sensitive", "read-only", "canary", "legacy"),
        ("the staging cluster", "region eu-west", "the payments team", "the edge network", "the build farm"),
    ),
    Topic(
        "clinical research",
        ("patient", "trial", "dosage", "screening visit", "protocol", "adverse event", "consent form",
         "control group", "follow-up call", "lab result", "study nurse", "ethics board"),
        (("enrol", "enrolled", "enrolled"), ("screen", "screened", "screened"), ("review", "reviewed", "reviewed"),
         ("randomise", "randomised", "randomised"), ("report", "reported", "reported")),
        ("double-blind", "eligible", "outpatient", "preliminary", "serious", "anonymised"),
        ("the Leeds clinic", "site 12", "the cardiology ward", "the coordinating centre", "the day unit"),
    ),
    Topic(
        "market gardening",
        ("harvest", "irrigation line", "seedling", "greenhouse", "yield", "orchard", "compost heap",
         "soil sample", "cover crop", "seed order", "polytunnel", "market stall"),
        (("plant", "planted", "planted"), ("water", "watered", "watered"), ("prune", "pruned", "pruned"),
         ("harvest", "harvested", "harvested"), ("rotate", "rotated", "rotated")),
        ("organic", "frost-tender", "early", "heirloom", "drought-tolerant", "seasonal"),
        ("the lower field", "bed seven", "the walled garden", "the Saturday market", "the seed room"),
    ),
    Topic(
        "finance and accounting",
        ("invoice", "ledger", "budget", "audit", "forecast", "quarter", "expense claim", "revenue line",
         "purchase order", "cost centre", "accrual", "payment run"),
        (("approve", "approved", "approved"), ("reconcile", "reconciled", "reconciled"),
         ("forecast", "forecast", "forecast"), ("book", "booked", "booked"), ("close", "closed", "closed")),
        ("quarterly", "unpaid", "capital", "recurring", "provisional", "audited"),
        ("the Dublin office", "the shared service centre", "group treasury", "the sales division", "the board"),
    ),
    Topic(
        "adult education",
        ("curriculum", "student", "assessment", "lecture", "workshop", "enrolment", "reading list",
         "tutor", "evening class", "certificate", "learning outcome", "feedback form"),
        (("teach", "taught", "taught"), ("assess", "assessed", "assessed"), ("enrol", "enrolled", "enrolled"),
         ("revise", "revised", "revised"), ("schedule", "scheduled", "scheduled")),
        ("introductory", "part-time", "accredited", "online", "practical", "advanced"),
        ("the community college", "room 3B", "the library annex", "the spring term", "the Bristol campus"),
    ),
    Topic(
        "city transport",
        ("bus line", "station", "bike lane", "timetable", "commuter", "junction", "park-and-ride",
         "ticket machine", "tram stop", "traffic signal", "depot", "passenger survey"),
        (("extend", "extended", "extended"), ("reroute", "rerouted", "rerouted"), ("count", "counted", "counted"),
         ("resurface", "resurfaced", "resurfaced"), ("electrify", "electrified", "electrified")),
        ("peak-hour", "accessible", "suburban", "overcrowded", "night-time", "protected"),
        ("the ring road", "Central Station", "the old town", "the harbour district", "Line 9"),
    ),
)

_COMMON_VERBS = (
    ("check", "checked", "checked"), ("update", "updated", "updated"), ("document", "documented", "documented"),
    ("plan", "planned", "planned"), ("measure", "measured", "measured"), ("replace", "replaced", "replaced"),
    ("compare", "compared", "compared"), ("delay", "delayed", "delayed"), ("share", "shared", "shared"),
)
_COMMON_ADJECTIVES = (
    "new", "current", "weekly", "small", "large", "shared", "manual", "automatic", "recent", "critical",
    "routine", "temporary", "reliable", "costly", "simple", "detailed",
)
_NAMES = (
    "Amara Okafor", "Bruno Silva", "Chen Wei", "Dana Fischer", "Elif Yilmaz", "Farah Haddad", "Gareth Evans",
    "Hana Kobayashi", "Ines Duarte", "Jonas Berg", "Kofi Mensah", "Lena Novak", "Marco Rossi", "Nadia Petrova",
    "Omar Farouk", "Priya Raman", "Quentin Moreau", "Rosa Jimenez", "Samuel Adeyemi", "Tara Walsh",
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_PERIODS = ("week", "month", "quarter", "season", "year", "shift")
_REGIONS = ("North", "South", "East", "West", "Central")
_STATUSES = ("open", "in progress", "blocked", "done", "cancelled")

_SENTENCES = (
    "The {adj} {noun} was {pp} before the {month} review.",
    "{name} noted that every {noun} should be {pp} before the {noun2} is {pp2}.",
    "In {place}, the team {past} {number} {nouns} within a single {period}.",
    "Because the {noun} was {adj}, the {noun2} had to be {pp} again.",
    "A {adj} approach to the {noun} reduces the risk of a {adj2} {noun2}.",
    "We recommend that each {noun} is {pp} at least {small} times per {period}.",
    "The latest figures on {nouns} show a {pct} percent change compared with last {period}.",
    "{name} and {name2} agreed to {verb} the {noun} by the end of {month}.",
    "If the {noun} fails, the {noun2} falls back to a {adj} {noun3}.",
    "Most {nouns} in {place} are {pp} by hand, which keeps the {noun2} {adj}.",
    "After the {adj} {noun} was {pp}, nobody needed to {verb} the {noun2} for a {period}.",
    "The {noun} at {place} now handles {number} {nouns2} a {period}, up from {small_number}.",
    "Nobody expected the {noun2} to be {pp} so quickly, yet {name} {past} it in two days.",
    "It is worth asking whether a {adj} {noun} is really cheaper than a {adj2} one.",
    "Records show that the {noun} in {place} was last {pp} in {month}.",
    "When {nouns} arrive late, the {noun2} is {pp} and the {noun3} waits.",
    "The checklist asks staff to {verb} the {noun}, {verb2} the {noun2} and sign the log.",
    "According to {name}, the {adj} {noun} saved about {pct} percent of the usual effort.",
)
_HEADINGS = (
    "Background", "Current {noun} process", "What changed in {month}", "Risks and open questions",
    "{adj_cap} {nouns}", "Lessons from {place}", "Next steps", "Costs and savings", "How the {noun} works",
    "Notes on {nouns}", "Summary of the {period}", "Responsibilities", "Measurements", "Proposal",
)
_TITLES = (
    "{adj_cap} {nouns} at {place}", "Review of the {noun} programme", "{month} report on {nouns}",
    "Guide to the {adj} {noun}", "Why the {noun} matters", "Handbook: {nouns} and {nouns2}",
    "Incident notes: the {noun} in {place}", "Plan for {adj} {nouns}",
)


_AN = re.compile(r"\b([Aa]) ([aeiou])")


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


class _Writer:
    """Sentences, paragraphs and sections about one topic, drawn from one seeded generator."""

    def __init__(self, rng: random.Random, topic: Topic) -> None:
        self.rng = rng
        self.topic = topic

    def _slots(self) -> dict[str, str]:
        pick = self.rng.choice
        nouns = self.rng.sample(self.topic.nouns, 3)
        verbs = self.rng.sample(self.topic.verbs + _COMMON_VERBS, 2)
        adjectives = self.rng.sample(self.topic.adjectives + _COMMON_ADJECTIVES, 2)
        names = self.rng.sample(_NAMES, 2)
        return {
            "noun": nouns[0], "noun2": nouns[1], "noun3": nouns[2],
            "nouns": _plural(nouns[0]), "nouns2": _plural(nouns[1]),
            "verb": verbs[0][0], "verb2": verbs[1][0], "past": verbs[0][1],
            "pp": verbs[0][2], "pp2": verbs[1][2],
            "adj": adjectives[0], "adj2": adjectives[1], "adj_cap": adjectives[0].capitalize(),
            "name": names[0], "name2": names[1],
            "place": pick(self.topic.places), "month": pick(_MONTHS), "period": pick(_PERIODS),
            "number": str(self.rng.randint(12, 950)), "small_number": str(self.rng.randint(3, 11)),
            "small": str(self.rng.randint(2, 6)), "pct": str(self.rng.randint(3, 48)),
        }

    def _fill(self, template: str) -> str:
        text = _AN.sub(r"\1n \2", template.format(**self._slots()))
        return text[0].upper() + text[1:]

    def sentence(self) -> str:
        return self._fill(self.rng.choice(_SENTENCES))

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(3, 7)))

    def heading(self) -> str:
        return self._fill(self.rng.choice(_HEADINGS))

    def title(self) -> str:
        return self._fill(self.rng.choice(_TITLES))

    def bullets(self) -> list[str]:
        return [self.sentence() for _ in range(self.rng.randint(3, 6))]

    def sections(self, target_words: int) -> list["_Section"]:
        """Sections of paragraphs (and sometimes a list) until about `target_words` words are written."""
        sections: list[_Section] = []
        words = 0
        while words < target_words:
            section = _Section(self.heading())
            for _ in range(self.rng.randint(2, 5)):
                section.paragraphs.append(self.paragraph())
            if self.rng.random() < 0.3:
                section.bullets = self.bullets()
            sections.append(section)
            words += section.word_count()
        return sections


@dataclass
class _Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)

    def word_count(self) -> int:
        return count_words(self.heading, *self.paragraphs, *self.bullets)


def count_words(*texts: str) -> int:
    return sum(len(re.findall(r"\S+", text)) for text in texts)


# --- one writer per format; each returns the words of content it wrote -------------------------


def _write_markdown(path: Path, writer: _Writer, title: str, target: int) -> int:
    sections = writer.sections(target)
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        lines += [f"- {item}" for item in section.bullets] + ([""] if section.bullets else [])
    path.write_text("\n".join(lines), encoding="utf-8")
    return count_words(title) + sum(s.word_count() for s in sections)


def _write_text(path: Path, writer: _Writer, title: str, target: int) -> int:
    sections = writer.sections(target)
    lines = [title.upper(), ""]
    for section in sections:
        lines += [section.heading, "-" * len(section.heading), ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        lines += [f"  * {item}" for item in section.bullets] + ([""] if section.bullets else [])
    path.write_text("\n".join(lines), encoding="utf-8")
    return count_words(title) + sum(s.word_count() for s in sections)


def _write_html(path: Path, writer: _Writer, title: str, target: int) -> int:
    from html import escape

    sections = writer.sections(target)
    body = []
    for section in sections:
        body.append(f"<h2>{escape(section.heading)}</h2>")
        body += [f"<p>{escape(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in section.bullets) + "</ul>")
    # Navigation and footer boilerplate, as real pages have, for the HTML extractor to discard.
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/archive">Archive</a></nav>
<main><article>
<h1>{escape(title)}</h1>
{chr(10).join(body)}
</article></main>
<footer><p>Copyright 2024 Example Intranet. All rights reserved.</p></footer>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return count_words(title) + sum(s.word_count() for s in sections)


def _write_csv(path: Path, writer: _Writer, title: str, target: int) -> int:
    rng = writer.rng
    header = ["id", "date", "region", "item", "quantity", "status", "owner", "note"]
    rows: list[list[str]] = []
    words = count_words(*header)
    start = date(2023, 1, 1)
    while words < target:
        row = [
            f"{writer.topic.name[:3].upper()}-{len(rows) + 1:05d}",
            (start + timedelta(days=rng.randint(0, 540))).isoformat(),
            rng.choice(_REGIONS),
            rng.choice(writer.topic.nouns),
            str(rng.randint(1, 500)),
            rng.choice(_STATUSES),
            rng.choice(_NAMES),
            " ".join(writer.sentence() for _ in range(rng.randint(1, 2))),
        ]
        rows.append(row)
        words += count_words(*row)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return words


def _write_json(path: Path, writer: _Writer, title: str, target: int) -> int:
    rng = writer.rng
    entries = []
    words = count_words(title, writer.topic.name)
    while words < target:
        entry = {
            "id": len(entries) + 1,
            "title": writer.heading(),
            "author": rng.choice(_NAMES),
            "published": (date(2023, 1, 1) + timedelta(days=rng.randint(0, 540))).isoformat(),
            "tags": rng.sample(writer.topic.nouns, 2),
            "summary": writer.sentence(),
            "body": writer.paragraph(),
        }
        entries.append(entry)
        words += count_words(entry["title"], entry["author"], *entry["tags"], entry["summary"], entry["body"])
    document = {"title": title, "topic": writer.topic.name, "entries": entries}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return words


def _write_docx(path: Path, writer: _Writer, title: str, target: int) -> int:
    from docx import Document

    sections = writer.sections(target)
    document = Document()
    document.core_properties.title = title
    document.core_properties.author = "Gristmill bench"
    document.core_properties.created = document.core_properties.modified = _FIXED_TIME.replace(tzinfo=None)
    document.add_heading(title, level=1)
    for section in sections:
        document.add_heading(section.heading, level=2)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
        for item in section.bullets:
            document.add_paragraph(item, style="List Bullet")
    packed = io.BytesIO()
    document.save(packed)
    path.write_bytes(_with_fixed_zip_times(packed.getvalue()))
    return count_words(title) + sum(s.word_count() for s in sections)


def _with_fixed_zip_times(data: bytes) -> bytes:
    # python-docx stamps each zip entry with the current time; fixed stamps make the file byte-identical.
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            fixed = zipfile.ZipInfo(entry.filename, date_time=_FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(fixed, source.read(entry))
    return out.getvalue()


def _write_pdf(path: Path, writer: _Writer, title: str, target: int) -> int:
    from fpdf import FPDF

    sections = writer.sections(target)
    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_TIME)
    pdf.set_title(title)
    pdf.set_author("Gristmill bench")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    for section in sections:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 13)
        pdf.multi_cell(0, 7, section.heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 5.5, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        for item in section.bullets:
            pdf.multi_cell(0, 5.5, f"- {item}", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return count_words(title) + sum(s.word_count() for s in sections)


_WRITERS: dict[str, Callable[[Path, _Writer, str, int], int]] = {
    "md": _write_markdown,
    "txt": _write_text,
    "html": _write_html,
    "csv": _write_csv,
    "json": _write_json,
    "docx": _write_docx,
    "pdf": _write_pdf,
}


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Corpus:
    paths: list[Path]
    words: dict[Path, int]

    @property
    def total_words(self) -> int:
        return sum(self.words.values())

    def words_by_format(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for path, words in self.words.items():
            totals[path.suffix.lstrip(".")] += words
        return totals


def build_corpus(folder: Path, *, documents: int = 300, seed: int = 7) -> Corpus:
    """Write `documents` files into `folder` and say how many words of content each holds."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    formats = list(FORMATS)
    weights = list(FORMATS.values())
    corpus = Corpus(paths=[], words={})
    for index in range(documents):
        extension = rng.choices(formats, weights)[0]
        writer = _Writer(random.Random(rng.getrandbits(64)), rng.choice(_TOPICS))
        title = writer.title()
        path = folder / f"{index + 1:04d}-{_slug(title)}.{extension}"
        corpus.words[path] = _WRITERS[extension](path, writer, title, _target_words(rng))
        corpus.paths.append(path)
    return corpus


def generate_corpus(folder: Path, *, documents: int = 300, seed: int = 7) -> list[Path]:
    """Write a reproducible mixed-format corpus into `folder` and return the files, in order."""
    return build_corpus(folder, documents=documents, seed=seed).paths


def _target_words(rng: random.Random) -> int:
    # Log-normal: mostly mid-sized documents, a few long ones; median ~ MEAN_WORDS * 0.83.
    sigma = 0.6
    mu = math.log(MEAN_WORDS) - sigma**2 / 2
    return int(min(max(rng.lognormvariate(mu, sigma), 120), 6000))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].rstrip("-")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a seeded mixed-format benchmark corpus.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    corpus = build_corpus(args.folder, documents=args.documents, seed=args.seed)
    files = Counter(path.suffix.lstrip(".") for path in corpus.paths)
    by_format = corpus.words_by_format()
    print(f"wrote {len(corpus.paths)} files, {corpus.total_words:,} words, into {args.folder}")
    for extension in FORMATS:
        print(f"  {extension:5} {files[extension]:4} files {by_format[extension]:9,} words")
    print(f"  ~{round(corpus.total_words / 0.75):,} tokens at 0.75 words per token")


if __name__ == "__main__":
    main()
