"""JSON and JSON Lines: flattened paths, one section per record or key group."""

import pytest

from gristmill.errors import ParseError
from tasks.parse.json import parse_json


def test_top_level_array_gives_one_section_per_record() -> None:
    data = b'[{"name": "Ada", "tags": ["math", "engines"], "address": {"city": "London"}, "died": null}, 42]'

    document = parse_json(data, filename="people.json")

    assert document.content_format == "json"
    assert document.title == "people"
    assert document.metadata == {"record_count": 2, "encoding": "utf-8"}
    assert [(s.blocks, s.metadata) for s in document.sections] == [
        (["name: Ada\ntags[0]: math\ntags[1]: engines\naddress.city: London\ndied: null"], {"record_index": 0}),
        (["42"], {"record_index": 1}),
    ]


def test_top_level_object_gives_a_section_per_key_group() -> None:
    data = (
        b'{"title": "Service config", "version": 2, "debug": false,'
        b' "servers": [{"host": "a.example", "port": 80}, {"host": "b.example"}],'
        b' "db": {"url": "postgres://db", "pool": {"size": 5}}, "empty": {}, "owner": "ops"}'
    )

    document = parse_json(data, filename="config.json")

    assert document.title == "Service config"
    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        ([], ["title: Service config\nversion: 2\ndebug: false"]),
        (["servers"], ["servers[0].host: a.example\nservers[0].port: 80", "servers[1].host: b.example"]),
        (["db"], ["db.url: postgres://db", "db.pool.size: 5"]),
        ([], ["empty: {}\nowner: ops"]),
    ]


def test_json_lines_by_extension_give_one_record_per_line() -> None:
    data = b'{"event": "login", "user": "kim"}\n\n{"event": "logout", "user": "kim"}\n'

    document = parse_json(data, filename="events.jsonl")

    assert document.metadata == {"record_count": 2, "json_lines": True, "encoding": "utf-8"}
    assert [(s.text, s.metadata) for s in document.sections] == [
        ("event: login\nuser: kim", {"record_index": 0, "line": 1}),
        ("event: logout\nuser: kim", {"record_index": 1, "line": 3}),
    ]


def test_json_lines_are_recognised_without_a_hint() -> None:
    document = parse_json(b'{"a": 1}\n{"a": 2}\n', filename="dump.json")

    assert [s.text for s in document.sections] == ["a: 1", "a: 2"]


def test_invalid_json_reports_line_and_column() -> None:
    with pytest.raises(ParseError) as error:
        parse_json(b'{\n  "a": 1,\n  "b": \n}')

    assert error.value.code == "invalid_json"
    assert error.value.message == "invalid JSON at line 4, column 1: Expecting value"
    assert error.value.details == {"line": 4, "column": 1}


def test_invalid_json_line_reports_its_line() -> None:
    with pytest.raises(ParseError) as error:
        parse_json(b'{"ok": true}\n{"broken": \n', lines=True)

    assert error.value.code == "invalid_json"
    assert error.value.message == "invalid JSON on line 2, column 12: Expecting value"


@pytest.mark.parametrize("depth", [200, 100_000])  # past our limit; past Python's recursion limit
def test_absurd_nesting_is_refused_not_a_crash(depth: int) -> None:
    with pytest.raises(ParseError) as error:
        parse_json(b"[" * depth + b"]" * depth)

    assert error.value.code == "invalid_json"
    assert error.value.message == "JSON is nested more than 100 levels deep"


def test_records_nested_under_objects_are_blocks_of_their_own() -> None:
    # An API response: the records sit two levels down, under data.items.
    data = (
        b'{"meta": {"page": 1}, "data": {"kind": "users", "items": ['
        b'{"name": "Ada", "roles": ["admin", "dev"]}, {"name": "Bo", "roles": []}]}}'
    )

    document = parse_json(data, filename="users.json")

    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        (["meta"], ["meta.page: 1"]),
        (
            ["data"],
            [
                "data.kind: users",
                "data.items[0].name: Ada\ndata.items[0].roles[0]: admin\ndata.items[0].roles[1]: dev",
                "data.items[1].name: Bo\ndata.items[1].roles: []",
            ],
        ),
    ]
