"""CSV parsing through DuckDB's sniffer: dialect, header, types, one section per row."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.csv import parse_csv
from tests.builders import build_csv


def test_rows_become_sections_of_column_value_lines() -> None:
    data = build_csv(
        [
            ["name", "zip", "amount", "joined", "note"],
            ["Alice", "02139", "3.50", "2024-01-05", "likes; semicolons"],
            ["Bob", "10001", "", "2024-02-01", ""],
            ["Chen, Wei", "00501", "7", "2024-03-03", "said \"hi\"\nthen left"],
        ],
        delimiter=";",
    )

    document = parse_csv(data, filename="exports/customers.csv")

    assert document.content_format == "csv"
    assert document.title == "customers"
    assert document.metadata == {
        "row_count": 3,
        "columns": ["name", "zip", "amount", "joined", "note"],
        "column_types": {"name": "VARCHAR", "zip": "VARCHAR", "amount": "DOUBLE", "joined": "DATE", "note": "VARCHAR"},
        "encoding": "utf-8",
    }
    assert [s.blocks for s in document.sections] == [
        ["name: Alice\nzip: 02139\namount: 3.50\njoined: 2024-01-05\nnote: likes; semicolons"],
        ["name: Bob\nzip: 10001\njoined: 2024-02-01"],
        ['name: Chen, Wei\nzip: 00501\namount: 7\njoined: 2024-03-03\nnote: said "hi"\nthen left'],
    ]
    assert [s.metadata for s in document.sections] == [
        {"row_start": 1, "row_end": 1},
        {"row_start": 2, "row_end": 2},
        {"row_start": 3, "row_end": 3},
    ]
    assert {tuple(s.heading_path) for s in document.sections} == {("customers",)}


def test_headerless_numbers_get_generated_column_names() -> None:
    document = parse_csv(b"1,2,3\n4,5,6\n", filename="grid.csv")

    assert document.metadata["columns"] == ["column0", "column1", "column2"]
    assert document.sections[1].text == "column0: 4\ncolumn1: 5\ncolumn2: 6"


def test_latin1_csv_is_transcoded() -> None:
    data = build_csv([["ville", "plat"], ["Besançon", "crème brûlée"], ["Nîmes", "brandade"]], encoding="latin-1")

    document = parse_csv(data, filename="plats.csv")

    assert document.metadata["encoding"] == "cp1252"
    assert document.sections[0].text == "ville: Besançon\nplat: crème brûlée"


def test_rows_of_empty_values_are_skipped_but_keep_their_numbers() -> None:
    document = parse_csv(b"a,b\n1,x\n,\n3,z\n")

    assert [s.metadata["row_start"] for s in document.sections] == [1, 3]
    assert document.metadata["row_count"] == 2


def test_empty_file_is_refused() -> None:
    with pytest.raises(ParseError) as error:
        parse_csv(b"  \n")

    assert error.value.code == "invalid_csv"
    assert error.value.message == "CSV file is empty"


def test_header_only_file_is_refused() -> None:
    with pytest.raises(ParseError) as error:
        parse_csv(b"name,email\n")

    assert error.value.code == "invalid_csv"
    assert error.value.message == "CSV has a header but no data rows"


def test_ragged_rows_are_padded_not_dropped() -> None:
    # A spreadsheet export that left off trailing empty cells, and one row with a stray extra field.
    data = b"name,city,note\nAda,London,first\nBob,Paris\nCy,Rome,third,late entry\nDi,Oslo,fourth\n"

    document = parse_csv(data, filename="people.csv")

    assert document.metadata["columns"] == ["name", "city", "note", "column3"]
    assert [s.text for s in document.sections] == [
        "name: Ada\ncity: London\nnote: first",
        "name: Bob\ncity: Paris",
        "name: Cy\ncity: Rome\nnote: third\ncolumn3: late entry",
        "name: Di\ncity: Oslo\nnote: fourth",
    ]


def test_excel_separator_line_and_byte_order_mark() -> None:
    data = "\ufeffsep=;\nproduct;price\nTea;3,50\nCoffee;4,20\n".encode("utf-8")

    document = parse_csv(data, filename="prices.csv")

    assert document.metadata["columns"] == ["product", "price"]
    assert [s.text for s in document.sections] == ["product: Tea\nprice: 3,50", "product: Coffee\nprice: 4,20"]


def test_tab_separated_values_are_sniffed() -> None:
    document = parse_csv(b"term\tmeaning\nSLA\tservice level agreement\n", filename="glossary.tsv")

    assert document.sections[0].text == "term: SLA\nmeaning: service level agreement"
