"""Source code split at top-level definitions, comments and decorators attached."""

from tasks.parse.code import parse_code

PYTHON = b'''"""Billing helpers.
Second docstring line at column 0.
"""
import math

RATE = 0.2


# Rounds half up, unlike round().
@cache
def price(net):
    return math.ceil(net * (1 + RATE))


class Invoice:
    def total(self):
        return 1

if __name__ == "__main__":
    print(price(10))
'''


def test_python_splits_at_top_level_defs_with_comments_and_decorators() -> None:
    document = parse_code(PYTHON, filename="billing.py")

    assert document.content_format == "code"
    assert document.title == "billing"
    assert document.metadata == {"language": "python", "line_count": 20, "encoding": "utf-8"}
    assert [(s.heading_path, s.metadata["line_start"], s.metadata["line_end"]) for s in document.sections] == [
        ([], 1, 6),
        (["def price"], 9, 12),
        (["class Invoice"], 15, 17),
        ([], 19, 20),
    ]
    assert document.sections[1].blocks == [
        "# Rounds half up, unlike round().\n@cache\ndef price(net):\n    return math.ceil(net * (1 + RATE))"
    ]
    assert {s.metadata["language"] for s in document.sections} == {"python"}


def test_typescript_splits_at_column_zero_definitions_outside_braces() -> None:
    source = b"""import { db } from "./db";

// Loads a user by id.
export async function loadUser(id: string) {
  const query = `{ id }`;
  if (!id) {
    return null;
  }
}

export interface User {
  id: string;
}

const handlers = {
  "}": 1,
};
"""
    document = parse_code(source, filename="users.ts")

    assert document.metadata["language"] == "typescript"
    assert [s.heading_path for s in document.sections] == [
        [],
        ["function loadUser"],
        ["interface User"],
        ["handlers"],
    ]
    assert document.sections[1].text.startswith("// Loads a user by id.\nexport async function loadUser")
    assert document.sections[1].text.endswith("    return null;\n  }\n}")


def test_c_function_with_brace_on_its_own_line_stays_whole() -> None:
    source = b"#include <stdio.h>\n\n/* entry point */\nint main(int argc, char **argv)\n{\n    return 0;\n}\n"

    document = parse_code(source, filename="main.c")

    assert [(s.heading_path, s.text) for s in document.sections] == [
        ([], "#include <stdio.h>"),
        (["main"], "/* entry point */\nint main(int argc, char **argv)\n{\n    return 0;\n}"),
    ]


def test_rust_attributes_and_doc_comments_travel_with_the_item() -> None:
    source = b"""use std::fmt;

/// A point.
#[derive(Debug)]
pub struct Point { x: i32 }

impl Point {
    fn new() -> Self { Point { x: 0 } }
}
"""

    document = parse_code(source, filename="geo.rs")

    assert [(s.heading_path, s.text.splitlines()[0]) for s in document.sections] == [
        ([], "use std::fmt;"),
        (["struct Point"], "/// A point."),
        (["impl Point"], "impl Point {"),
    ]


def test_file_without_definitions_is_one_section() -> None:
    document = parse_code(b"echo hello\necho world\n", filename="run.sh")

    assert [(s.heading_path, s.text) for s in document.sections] == [([], "echo hello\necho world")]
    assert document.metadata["language"] == "shell"


def test_a_definition_is_split_into_blocks_at_blank_lines_so_big_classes_split_between_methods() -> None:
    source = b"""class Ledger:
    \"\"\"Double-entry book.\"\"\"

    def debit(self, amount):
        self.total -= amount

    def credit(self, amount):
        self.total += amount
"""

    document = parse_code(source, filename="ledger.py")

    assert [(s.heading_path, s.blocks) for s in document.sections] == [
        (
            ["class Ledger"],
            [
                'class Ledger:\n    """Double-entry book."""',
                "    def debit(self, amount):\n        self.total -= amount",
                "    def credit(self, amount):\n        self.total += amount",
            ],
        )
    ]
    assert document.text == source.decode().rstrip("\n")
