"""Source code: one section per top-level definition, found with per-language line heuristics.

No real parser per language: a definition starts at column 0 with a keyword (or, for C-like code, a
signature line), its decorators/attributes and the comment lines just above it travel with it, and it
runs to the next such start. Good enough to keep a function and its doc comment in one chunk.
"""

import re
from dataclasses import dataclass

from gristmill.documents import Document, Section
from gristmill.file_types import LANGUAGE_BY_EXTENSION
from tasks.parse.common import decode_text, pick_title, source_name, title_from_filename

_BRACE_DEFINITION = re.compile(
    r"(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:async\s+)?"
    r"(?:function\*?|class|interface|type|enum|struct|union|impl|trait|fn|mod|macro_rules!|func|fun"
    r"|object|namespace|template|typedef|record|protocol|extension|def|val|var|let|const|static"
    r"|public|private|protected|internal|abstract|final|sealed|data|open|override|inline|extern"
    r"|unsafe|pub(?:\([^)]*\))?|case\s+class)\b"
)
# A C/C++/Java-ish signature at column 0: `int main(void)`, `static char *name(...)`, `Foo::bar() {`.
_SIGNATURE = re.compile(r"[A-Za-z_][\w\s\*&:<>,\[\]]*\([^;]*$")
_MAX_SIGNATURE_CHARS = 300
_NOT_DEFINITION = re.compile(r"(?:if|for|while|switch|return|else|do|try|catch)\b")

_START: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"(?:async\s+def|def|class)\b"),
    "ruby": re.compile(r"(?:def|class|module)\b"),
    "shell": re.compile(r"(?:function\s+[\w-]+|[\w-]+\s*\(\s*\))"),
    "sql": re.compile(
        r"(?:create|alter|drop|insert|update|delete|select|with|grant|revoke|begin|comment|do)\b", re.I
    ),
    "lua": re.compile(r"(?:local\s+)?function\b"),
}
# Lines that belong to the definition below them: decorators, attributes, annotations.
_PREFIX = {
    "python": re.compile(r"@"),
    "rust": re.compile(r"#!?\["),
    "csharp": re.compile(r"\["),
}
_DEFAULT_PREFIX = re.compile(r"@\w")
_COMMENT = {
    "python": re.compile(r"#"),
    "ruby": re.compile(r"#"),
    "shell": re.compile(r"#(?!!)"),
    "sql": re.compile(r"--|/\*|\*"),
    "lua": re.compile(r"--"),
}
_DEFAULT_COMMENT = re.compile(r"//|/\*|\*|#(?!include|define|if|endif|else|pragma|import)")
_NAME = re.compile(
    r"\b(def|class|function\*?|fn|func|fun|struct|enum|trait|interface|impl|type|module|mod|object|"
    r"record|protocol|namespace)\s+(?:<[^>]*>\s*)?(?:\([^)]*\)\s*)?([A-Za-z_$][\w$.:]*)"
)
_CALL_NAME = re.compile(r"([A-Za-z_$][\w$:.~]*)\s*\(")


_CLOSER = re.compile(
    r"[{)\]}]|(?:end|fi|done|esac|else|elif|elsif|except|finally|when|rescue|ensure|then|do|case)\b"
)
_TRIPLE_QUOTE = re.compile(r'"""|\'\'\'')


@dataclass
class _Unit:
    start: int  # 0-based line index, inclusive
    end: int  # exclusive
    name: str | None  # None for code between definitions (imports, constants)


def parse_code(data: bytes, *, filename: str | None = None, language: str | None = None) -> Document:
    """Source code as one section per top-level definition, with the language in the metadata."""
    name = source_name(filename, None)
    language = language or language_for(name) or "text"
    text, encoding = decode_text(data, what=f"{language} source")
    lines = text.split("\n")
    sections = []
    for unit in _units(lines, language):
        end = unit.end
        while end > unit.start and not lines[end - 1].strip():
            end -= 1
        if end == unit.start:
            continue
        sections.append(
            Section(
                blocks=_paragraphs(lines[unit.start : end]),
                heading_path=[unit.name] if unit.name else [],
                metadata={"language": language, "line_start": unit.start + 1, "line_end": end},
            )
        )
    title = pick_title(title_from_filename(name), next((ln for ln in lines if ln.strip()), None))
    return Document(
        sections=sections,
        content_format="code",
        title=title,
        metadata={"language": language, "line_count": len(text.splitlines()), "encoding": encoding},
    )


def _paragraphs(lines: list[str]) -> list[str]:
    """A definition's lines as blocks split at blank lines: a definition that fits a chunk is packed
    back whole, and one that does not is cut between methods or statement groups, not mid-line."""
    blocks: list[str] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def language_for(filename: str | None) -> str | None:
    if not filename or "." not in filename:
        return None
    return LANGUAGE_BY_EXTENSION.get("." + filename.rsplit(".", 1)[1].lower())


def _units(lines: list[str], language: str) -> list[_Unit]:
    prefix = _PREFIX.get(language, _DEFAULT_PREFIX)
    comment = _COMMENT.get(language, _DEFAULT_COMMENT)
    units: list[_Unit] = []
    floor = 0
    for start, is_definition in _top_level_starts(lines, language):
        head = start
        # Decorators and the comment lines directly above a definition belong to it.
        while is_definition and head - 1 >= floor and lines[head - 1].strip() and (
            prefix.match(lines[head - 1]) or comment.match(lines[head - 1].lstrip())
        ):
            head -= 1
        name = _definition_name(lines[start]) if is_definition else None
        if units and name is None and units[-1].name is None:
            continue  # consecutive imports and statements make one unit
        if units:
            units[-1].end = head
        if not units and head > 0:
            if name is None:
                head = 0  # the file's opening lines and this statement make one unit
            else:
                units.append(_Unit(0, head, None))
        units.append(_Unit(head, len(lines), name))
        floor = start + 1
    return units or [_Unit(0, len(lines), None)]


def _top_level_starts(lines: list[str], language: str) -> list[tuple[int, bool]]:
    """(line index, is a definition) for every line that starts a top-level statement."""
    start = _START.get(language)
    prefix = _PREFIX.get(language, _DEFAULT_PREFIX)
    comment = _COMMENT.get(language, _DEFAULT_COMMENT)
    braces = start is None
    starts: list[tuple[int, bool]] = []
    depth = 0
    in_string = False
    for index, line in enumerate(lines):
        at_top = not in_string and (not braces or depth <= 0)
        if at_top and line[:1] not in ("", " ", "\t") and not prefix.match(line):
            if _is_start(line, language, start):
                starts.append((index, True))
            elif language != "sql" and not comment.match(line) and not _CLOSER.match(line):
                starts.append((index, False))
        if braces:
            depth = max(0, depth + _brace_delta(line))
        elif language == "python" and len(_TRIPLE_QUOTE.findall(line)) % 2:
            in_string = not in_string  # column-0 lines inside a docstring are not statements
    return starts


def _is_start(line: str, language: str, start: re.Pattern[str] | None) -> bool:
    if start is not None:
        return bool(start.match(line))
    if line.startswith(("}", ")", "]", "#", "//", "/*", "*", "import ", "package ", "use ", "using ")):
        return False
    if _BRACE_DEFINITION.match(line):
        return True
    # Signatures are short; the length cap also keeps the regex linear on minified one-line files.
    return (
        language in ("c", "cpp", "java", "csharp")
        and len(line) <= _MAX_SIGNATURE_CHARS
        and bool(_SIGNATURE.match(line))
        and not _NOT_DEFINITION.match(line)
    )


_STRING_OR_COMMENT = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`|//.*$|/\*.*?\*/")


def _brace_delta(line: str) -> int:
    stripped = _STRING_OR_COMMENT.sub("", line)
    return stripped.count("{") - stripped.count("}")


def _definition_name(line: str) -> str | None:
    line = line[:_MAX_SIGNATURE_CHARS]
    match = _NAME.search(line)
    if match:
        return f"{match.group(1)} {match.group(2).rstrip(':.')}"
    match = _CALL_NAME.search(line)
    if match:
        return match.group(1)
    first = line.split("=", 1)[0].split()
    return first[-1].strip(":;") if first else None
