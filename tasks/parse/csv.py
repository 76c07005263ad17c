"""CSV: one section per data row, rendered as `column: value` lines; DuckDB's sniffer reads the dialect.

DuckDB detects delimiter, quoting, header and column types from a sample. Values are read back as
text (all_varchar) so a row reads as the file wrote it: "3.50" stays "3.50", "02139" keeps its zero.
"""

import os
import re
import tempfile

import duckdb

from gristmill.documents import Document, Section
from gristmill.errors import ParseError
from tasks.parse.common import decode_text, pick_title, source_name, title_from_filename

DEFAULT_MEMORY_LIMIT_BYTES = 256 * 1024 * 1024
_FETCH_ROWS = 2048
# Excel writes a first line "sep=;" to name the delimiter; it is not part of the table.
_EXCEL_SEPARATOR = re.compile(rb"\A(?:\xef\xbb\xbf)?sep=(.)[ \t]*\r?\n")


def parse_csv(
    data: bytes, *, filename: str | None = None, memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES
) -> Document:
    """Rows of a CSV file as sections (metadata row_start = row_end = 1-based data row number)."""
    if not data.strip():
        raise ParseError("CSV file is empty", code="invalid_csv")
    data, encoding = _as_utf8(data)
    options = _READ_OPTIONS
    hint = _EXCEL_SEPARATOR.match(data)
    if hint:
        data = data[hint.end() :]
        options += ", delim = " + _sql_string(hint.group(1).decode("utf-8", errors="replace"))
    name = source_name(filename, None)
    title = pick_title(title_from_filename(name)) or "CSV"
    with tempfile.TemporaryDirectory(prefix="gristmill-csv-") as folder:
        path = os.path.join(folder, "data.csv")
        with open(path, "wb") as handle:
            handle.write(data)
        columns, column_types, sections = _read_rows(path, folder, title, memory_limit_bytes, options)
    if not sections:
        raise ParseError("CSV has a header but no data rows", code="invalid_csv", details={"columns": columns})
    return Document(
        sections=sections,
        content_format="csv",
        title=title,
        metadata={
            "row_count": len(sections),
            "columns": columns,
            "column_types": column_types,
            "encoding": encoding,
        },
    )


def _as_utf8(data: bytes) -> tuple[bytes, str]:
    """DuckDB reads UTF-8 only: other encodings (a Latin-1 export from Excel) are transcoded first."""
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        text, encoding = decode_text(data, what="CSV file")
        return text.encode("utf-8"), encoding


# Spreadsheet exports often drop trailing empty cells, and hand-edited files gain a stray field:
# without null_padding the sniffer gives up on such a file and reads each line as one column.
# (null_padding needs the serial reader to cope with quoted newlines; parsing uses one thread anyway.)
_READ_OPTIONS = "auto_detect = true, null_padding = true, parallel = false"


def _read_rows(
    path: str, folder: str, title: str, memory_limit_bytes: int, options: str
) -> tuple[list[str], dict[str, str], list[Section]]:
    config = {
        "threads": 1,  # parsing runs in a small sandbox; one file is not worth a thread pool
        "memory_limit": f"{max(memory_limit_bytes // (1024 * 1024), 16)}MB",
        "temp_directory": folder,
    }
    try:
        with duckdb.connect(":memory:", config=config) as con:
            typed = con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {options})", [path]).fetchall()
            column_types = {str(row[0]): str(row[1]) for row in typed}
            as_text = f"read_csv(?, {options}, all_varchar = true)"
            columns = [str(row[0]) for row in con.execute(f"DESCRIBE SELECT * FROM {as_text}", [path]).fetchall()]
            # DuckDB renders each row's `column: value` text itself: a Python loop over every cell
            # costs more than the whole read.
            result = con.execute(f"SELECT {_row_text_sql(columns)} FROM {as_text}", [path])
            sections = []
            row_number = 0
            while batch := result.fetchmany(_FETCH_ROWS):
                for (text,) in batch:
                    row_number += 1
                    if text:
                        sections.append(
                            Section(
                                blocks=[text],
                                heading_path=[title],
                                metadata={"row_start": row_number, "row_end": row_number},
                            )
                        )
    except duckdb.OutOfMemoryException as exc:
        raise ParseError(f"CSV needs more memory than allowed to read: {exc}", code="parse_memory") from exc
    except duckdb.Error as exc:
        raise ParseError(f"CSV could not be read: {_first_line(exc)}", code="invalid_csv") from exc
    return columns, column_types, sections


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _row_text_sql(columns: list[str]) -> str:
    """concat_ws skips NULLs, so empty and missing values drop out of the row's text."""
    parts = []
    for column in columns:
        ident = '"' + column.replace('"', '""') + '"'
        label = _sql_string(column + ": ")
        parts.append(f"CASE WHEN trim({ident}) = '' THEN NULL ELSE {label} || {ident} END")
    return f"concat_ws(chr(10), {', '.join(parts)})"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
