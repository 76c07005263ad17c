"""Retrieval over real multi-page documents: questions put in a user's own words must come back, as
the top hybrid hit, from the right page of a PDF manual and the right section of a DOCX handbook and
a Markdown guide. Ingested through the CLI's standalone backend (real Prefect, SQLite, LanceDB) and embedded
by the real all-MiniLM-L6-v2 server, so this checks what a user of the service would see."""

from dataclasses import asdict
from pathlib import Path

import pytest

from gristmill.cli.standalone import StandaloneBackend
from gristmill.settings import get_settings
from gristmill.usecases.search import search_library
from gristmill.usecases.shapes import SearchResult
from gristmill.usecases.submission import SourceSpec
from storage import repository
from storage.chunks import ChunkStore
from storage.db import session_scope
from storage.tables import Source
from tests.builders import Heading, build_docx, build_pdf

pytestmark = pytest.mark.slow  # the real model and a Prefect server

LIBRARY = "retrieval"

# --- a harbour crane manual: one topic per page, its heading set in larger type ---------------------

MANUAL_TITLE = "Harbour Crane Operator Manual"
MANUAL_PAGES: list[tuple[str, list[str]]] = [
    (
        "Before Your First Shift",
        [
            ("This manual is for operators of the ship-to-shore gantry cranes on berths four to nine. Only "
             "staff who hold a valid operator certificate from the port authority may sit in the cab, and "
             "trainees must be accompanied by an instructor for their first forty hours of operation."),
            ("Every operator receives a personal access badge for the cab door and the control console. The "
             "badge is linked to your certificate, so an expired certificate locks the console until the "
             "training office renews it. Report a lost badge to the security desk at the main gate at once; "
             "a replacement is issued the same day against your staff card."),
        ],
    ),
    (
        "Daily Inspection",
        [
            ("At the start of every shift walk around the crane before climbing to the cab. Look at the hoist "
             "wire ropes for broken strands, kinks and flattened sections, and check that each rope sits "
             "properly in its sheave groove. Inspect the spreader twistlocks for cracks and make sure the "
             "flippers move freely through their whole range."),
            ("In the cab, test the service brake and the emergency brake with no load on the hook, confirm "
             "that the limit switches stop the trolley at both ends of its travel, and record the readings "
             "in the shift logbook. A crane that fails any of these checks stays parked until a technician "
             "has signed it off."),
        ],
    ),
    (
        "Lubrication Schedule",
        [
            ("The slewing ring, trolley wheels and boom hinge pins are greased every Monday with the lithium "
             "complex grease stored in the yellow cabinet at the foot of the sill beam. Pump grease into each "
             "nipple until clean grease appears at the seal; old dark grease pushed out of the seal should be "
             "wiped away so it does not drip onto the quay."),
            ("The hoist gearbox oil is sampled every three months and changed every two thousand operating "
             "hours, whichever comes first. Oil samples go to the laboratory in the labelled bottles kept in "
             "the machinery house; write the crane number and the hour meter reading on the label."),
        ],
    ),
    (
        "Wind Limits",
        [
            ("An anemometer on the top of the boom shows the wind speed on the cab display. When gusts reach "
             "fifteen metres per second an amber alarm sounds: finish the current move and do not pick up "
             "another container. At twenty metres per second all lifting stops, the spreader is lowered to "
             "the quay and the boom is raised to its parked position."),
            ("If a storm warning is issued, drive the crane to its tie-down position, insert the storm pins "
             "into the rail sockets and fasten the tie-down links. Operations resume only when the wind has "
             "stayed below fifteen metres per second for half an hour and the duty manager agrees."),
        ],
    ),
    (
        "Power Failure With a Suspended Load",
        [
            ("If the mains supply fails while a container hangs from the spreader, the hoist brakes hold the "
             "load automatically and the cab switches to battery lighting. Do not leave the cab. Call the "
             "control room on the radio, give the crane number, and wait for the electrician on duty."),
            ("To bring the box down without power, the electrician releases the hoist brake by hand with the "
             "brake lever in the machinery house while the operator watches the descent on the camera. The "
             "container is lowered in short steps of no more than half a metre, onto the quay or back onto "
             "the vessel, never over a walkway where people may stand."),
        ],
    ),
    (
        "Load Charts and Tandem Lifts",
        [
            ("The rated capacity of the spreader is sixty-five tonnes, and the capacity of the hook beam is "
             "eighty tonnes at any outreach. A container whose weight on the terminal system is missing or "
             "suspicious must be checked with the load cell reading before it leaves the ground; a reading "
             "above the rated capacity cuts the hoist automatically."),
            ("Twin twenty-foot lifts are allowed only when both boxes weigh within ten tonnes of each other. "
             "Lifts with two cranes sharing one heavy piece of project cargo need a written lift plan signed "
             "by the superintendent, a banksman on the quay and radio contact between both cabs."),
        ],
    ),
    (
        "Cold Weather Operation",
        [
            ("Below minus five degrees the hydraulic oil thickens and the controls respond slowly. Switch on "
             "the cabinet heaters at least an hour before the shift and let the hydraulic pumps run without "
             "load for ten minutes before the first move, so the oil reaches its working temperature."),
            ("Clear snow and ice from the ladders, the walkways and the cab windows before work starts, and "
             "spread grit on the stairs to the cab. Frozen rail clamps are thawed with the hot air blower "
             "kept in the machinery house, never with a naked flame."),
        ],
    ),
]

# --- an employee handbook: Heading 1 chapters, Heading 2 sections -------------------------------------

HANDBOOK: list[str | Heading] = [
    Heading("Employee Handbook", level=0),
    Heading("Time Off", level=1),
    Heading("Annual Leave", level=2),
    ("Full-time staff have twenty-eight days of paid holiday a year, plus public holidays. Book your holiday "
     "in the HR portal at least two weeks ahead and wait for your manager's approval before buying tickets. "
     "Up to five unused days may be carried into the first quarter of the next year; any other unused days "
     "lapse on the thirty-first of December."),
    Heading("Sick Leave", level=2),
    ("If you are unwell, tell your manager by phone or chat before ten in the morning on the first day you "
     "cannot work. You may certify yourself for up to three days in a row; from the fourth day we need a "
     "certificate from a doctor. Sick pay is paid at your full salary for the first six weeks of absence in "
     "any twelve-month period."),
    Heading("Parental Leave", level=2),
    ("Birth mothers receive twenty-six weeks of leave on full pay and the other parent receives sixteen "
     "weeks on full pay, to be taken in the first year after the birth or adoption. Tell HR of your plans at "
     "least eight weeks before you start. Shared leave can be split into up to three separate blocks."),
    Heading("Expenses", level=1),
    Heading("Business Travel", level=2),
    ("Book trains in standard class for journeys under four hours and economy flights for longer trips, "
     "through the travel desk so that the booking is covered by our insurance. Hotels are reimbursed up to "
     "one hundred and sixty euros a night in capital cities and one hundred and twenty elsewhere; meals are "
     "covered by a daily allowance of forty euros."),
    Heading("Home Office Equipment", level=2),
    ("Staff who work from home at least two days a week may claim up to four hundred euros once every three "
     "years for a desk, a chair, a screen or a headset. Keep the receipt and submit the claim in the expense "
     "tool within sixty days of purchase; the company laptop, keyboard and mouse are supplied by IT and are "
     "not part of this allowance."),
    Heading("Working Hours", level=1),
    Heading("Remote Work", level=2),
    ("Most roles can be done from home for up to three days a week by agreement with your team. Core hours, "
     "when everybody should be reachable, are ten to four. Working from another country is allowed for up to "
     "twenty days a year and needs approval from HR in advance because of tax and insurance rules."),
    Heading("Overtime", level=2),
    ("Time worked beyond forty hours in a week must be agreed with your manager beforehand. It is paid at "
     "one and a half times your hourly rate, or taken back as time off within the following two months if "
     "you prefer. Evening and weekend on-call duty for production incidents is paid as a separate flat rate."),
]

# --- a sourdough guide in Markdown: nested headings -----------------------------------------------------

GUIDE = """---
title: Sourdough at Home
author: The Bakehouse
---
# Sourdough at Home

A slow loaf made with a wild yeast culture, flour, water and salt. This guide takes you from a jar of
starter to a baked loaf over about two days.

## The Starter

### Feeding

Feed the starter once a day when it lives on the counter: discard all but fifty grams, then stir in
fifty grams of flour and fifty grams of lukewarm water. A starter left hungry for too long produces a
sharp smell like acetone or nail varnish; it is not spoiled, it needs two or three feeds twelve hours
apart to become lively again. A healthy starter doubles within six hours of a feed.

### Keeping It in the Fridge

When you bake only at weekends, or you go away, keep the jar in the fridge with the lid loosely
closed. It survives three or four weeks there without any feeding. Take it out the evening before you
bake and give it two feeds at room temperature before you mix a dough with it.

## The Dough

### Mixing

Mix the flour and most of the water and let them rest for an hour before the starter and salt go in.
This rest lets the flour absorb the water and the gluten start to form, so the dough needs far less
kneading later. Add the remaining water with the salt and squeeze it through the dough with wet hands.

### Bulk Fermentation

Leave the dough covered at room temperature for four to six hours, folding it over itself every half
hour for the first two hours. It is ready to shape when it has grown by about half, feels airy, and
shows bubbles on the sides of the bowl. In a cold kitchen this takes longer; in summer check it early.

## Baking

### Scoring

Just before the loaf goes in, cut a single confident slash about a centimetre deep with a razor blade
held at a shallow angle. The cut controls where the crust opens as the loaf expands in the heat, and
gives the ear that curls up along the top.

### Oven and Timing

Heat the oven with a cast iron pot inside to two hundred and fifty degrees for forty-five minutes.
Bake the loaf in the covered pot for twenty minutes, then take the lid off, lower the heat to two
hundred and thirty and bake for another twenty to twenty-five minutes until the crust is deep brown.
"""

GUIDE_TITLE = "Sourdough at Home"

# (question, file, page or None, heading path below the document's title)
QUESTIONS: list[tuple[str, str, int | None, list[str]]] = [
    ("Who is allowed to operate the crane?", "crane-manual.pdf", 1, ["Before Your First Shift"]),
    ("What has to be checked on the crane before the shift can begin?", "crane-manual.pdf", 2, ["Daily Inspection"]),
    ("How often should the bearings and wheels get fresh grease?", "crane-manual.pdf", 3, ["Lubrication Schedule"]),
    ("A storm is coming, what do I do with the crane?", "crane-manual.pdf", 4, ["Wind Limits"]),
    (
        "The electricity went off while a container was still hanging in the air, how do we get it down?",
        "crane-manual.pdf",
        5,
        ["Power Failure With a Suspended Load"],
    ),
    ("How heavy a box can the spreader pick up?", "crane-manual.pdf", 6, ["Load Charts and Tandem Lifts"]),
    ("How do I get the crane ready when there is frost and snow?", "crane-manual.pdf", 7, ["Cold Weather Operation"]),
    ("How much leave do I get when my child is born?", "handbook.docx", None, ["Time Off", "Parental Leave"]),
    (
        "Who do I tell when I'm too sick to work, and when is a medical certificate needed?",
        "handbook.docx",
        None,
        ["Time Off", "Sick Leave"],
    ),
    (
        "Will the company pay for a monitor for the desk in my flat?",
        "handbook.docx",
        None,
        ["Expenses", "Home Office Equipment"],
    ),
    ("Can I do my job from Spain for a couple of weeks?", "handbook.docx", None, ["Working Hours", "Remote Work"]),
    ("How much can I spend on a hotel room when visiting a client?", "handbook.docx", None, ["Expenses", "Business Travel"]),
    (
        "My jar of culture smells like nail polish remover, has it gone bad?",
        "sourdough.md",
        None,
        ["The Starter", "Feeding"],
    ),
    (
        "How do I keep my culture alive while I'm on vacation?",
        "sourdough.md",
        None,
        ["The Starter", "Keeping It in the Fridge"],
    ),
    ("How do I know when the dough has risen enough to shape it?", "sourdough.md", None, ["The Dough", "Bulk Fermentation"]),
    ("How hot should the oven be and for how long does the bread bake?", "sourdough.md", None, ["Baking", "Oven and Timing"]),
]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("documents")
    pages = [[Heading(MANUAL_TITLE, level=0)] if number == 1 else [] for number in range(1, len(MANUAL_PAGES) + 1)]
    for page, (heading, paragraphs) in zip(pages, MANUAL_PAGES):
        page += [Heading(heading, level=1), *paragraphs]
    (folder / "crane-manual.pdf").write_bytes(
        build_pdf(pages, title=MANUAL_TITLE, header=f"{MANUAL_TITLE} - Rev. 4", footer="Page {page} of {pages}")
    )
    (folder / "handbook.docx").write_bytes(build_docx(HANDBOOK, core_title="Employee Handbook 2024"))
    (folder / "sourdough.md").write_text(GUIDE)
    return folder


@pytest.fixture
def library(
    gristmill_home: Path,
    prefect_server: str,
    model_embeddings_url: str,
    monkeypatch: pytest.MonkeyPatch,
    documents: Path,
) -> dict[str, Source]:
    """The three documents ingested into one library; their Source rows by file name."""
    monkeypatch.setenv("GRISTMILL_EMBEDDINGS_URL", model_embeddings_url)
    get_settings.cache_clear()
    specs = [SourceSpec(origin="file", uri=str(path)) for path in sorted(documents.iterdir())]
    summary = asdict(StandaloneBackend(get_settings()).ingest(LIBRARY, specs, show_progress=False))
    assert summary["counts"] == {"completed": 3, "partial": 0, "failed": 0, "duplicate": 0}, summary
    with session_scope(get_settings().resolved_database_url) as session:
        rows = [session.get(Source, line["source_id"]) for line in summary["sources"]]
    return {Path(row.uri).name: row for row in rows}


def search(query: str, limit: int = 3) -> list[SearchResult]:
    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        workspace = repository.ensure_workspace(session)
        lib = repository.find_library_by_name(session, workspace.id, LIBRARY)
    return search_library(settings, ChunkStore(settings.resolved_lancedb_uri), lib, query, mode="hybrid", limit=limit)


def test_every_question_lands_on_its_page_or_section(library: dict[str, Source]) -> None:
    found = []
    for question, _, _, _ in QUESTIONS:
        best = search(question)[0]
        where = (best.metadata.get("page_start"), best.metadata["heading_path"])  # of the chunk hit
        found.append((question, Path(best.uri).name, *where))

    expected = []
    for question, filename, page, path in QUESTIONS:
        root = {"crane-manual.pdf": MANUAL_TITLE, "handbook.docx": "Employee Handbook", "sourdough.md": GUIDE_TITLE}
        expected.append((question, filename, page, [root[filename], *path]))
    assert found == expected


def test_title_and_headings_are_searched_but_never_returned_and_a_hit_brings_the_next_chunk(
    library: dict[str, Source],
) -> None:
    settings = get_settings()
    manual = library["crane-manual.pdf"]
    store = ChunkStore(settings.resolved_lancedb_uri)
    chunks = store.list_chunks(manual.library_id, manual.id)
    with session_scope(settings.resolved_database_url) as session:
        lib = repository.find_library_by_name(session, repository.ensure_workspace(session).id, LIBRARY)

    # The title is in the first chunk's text only, but every chunk of the manual is found by it.
    by_title = search_library(settings, store, lib, "Harbour Crane Operator Manual", mode="keyword", limit=20)
    manual_hits = [hit for hit in by_title if hit.source_id == manual.id]
    assert {c for hit in manual_hits for c in hit.metadata.get("chunk_indexes", [hit.metadata["chunk_index"]])} == set(
        range(len(chunks))
    )
    assert sum(MANUAL_TITLE in c.text for c in chunks) == 1
    for hit in manual_hits:  # the document's text, no header in it
        first = chunks[hit.metadata["chunk_index"]]
        assert hit.text.startswith(first.text)
        assert hit.text in "\n\n".join(c.text for c in chunks)

    # Each hit brings the chunk after it in its source, as one span with the pages of both.
    best = search("Which grease goes on the slewing ring, and how often?")[0]
    index = best.metadata["chunk_index"]
    assert best.metadata["chunk_indexes"] == [index, index + 1]
    assert best.text == chunks[index].text + "\n\n" + chunks[index + 1].text
    assert (best.metadata["page_start"], best.metadata["page_end"]) == (index + 1, index + 2)

    # min_score: the same ranking, cut where the mode's scale says.
    every = search_library(settings, store, lib, "slewing ring grease", mode="vector", limit=10)
    cut = search_library(settings, store, lib, "slewing ring grease", mode="vector", limit=10, min_score=every[1].score)
    assert [h.chunk_id for h in cut] == [h.chunk_id for h in every if h.score >= every[1].score]
    assert all(-1.0 <= h.score <= 1.0 for h in every)


def test_the_manual_is_one_chunk_per_page_and_titles_come_from_the_documents(library: dict[str, Source]) -> None:
    manual = library["crane-manual.pdf"]
    chunks = ChunkStore(get_settings().resolved_lancedb_uri).list_chunks(manual.library_id, manual.id)

    assert {name: source.title for name, source in library.items()} == {
        "crane-manual.pdf": MANUAL_TITLE,  # PDF metadata
        "handbook.docx": "Employee Handbook 2024",  # core properties
        "sourdough.md": GUIDE_TITLE,  # front matter
    }
    assert manual.page_count == 7
    assert [(c.metadata["page_start"], c.metadata["page_end"], c.metadata["heading_path"]) for c in chunks] == [
        (number, number, [MANUAL_TITLE, heading]) for number, (heading, _) in enumerate(MANUAL_PAGES, start=1)
    ]
    # Whole paragraphs unwrapped, the running header and the page footer gone.
    wind_heading, wind_paragraphs = MANUAL_PAGES[3]
    assert chunks[3].text == "\n\n".join([wind_heading, *wind_paragraphs])
    assert chunks[0].text.startswith(f"{MANUAL_TITLE}\n\nBefore Your First Shift\n\nThis manual is for operators")
