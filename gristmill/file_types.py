"""Every file type Gristmill knows, in one table: extension, the MIME type it implies, format, language.

The connectors guess a content type from it, the parse stage picks a format and a language from it,
and the CLI decides which files of a folder to take from it.
"""

from dataclasses import dataclass

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
JSON_LINES_MIMES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq")


@dataclass(frozen=True)
class FileType:
    extension: str  # lower case, with its dot
    mime_type: str  # what a file of this extension is declared as when nothing else says
    format: str  # pdf, docx, html, markdown, text, csv, json, code
    language: str | None = None  # for code


def _code(language: str, mime_type: str, *extensions: str) -> list[FileType]:
    return [FileType(ext, mime_type, "code", language) for ext in extensions]


FILE_TYPES: tuple[FileType, ...] = (
    FileType(".pdf", "application/pdf", "pdf"),
    FileType(".docx", DOCX_MIME, "docx"),
    FileType(".html", "text/html", "html"),
    FileType(".htm", "text/html", "html"),
    FileType(".xhtml", "application/xhtml+xml", "html"),
    FileType(".md", "text/markdown", "markdown"),
    FileType(".markdown", "text/markdown", "markdown"),
    FileType(".mdx", "text/markdown", "markdown"),
    FileType(".txt", "text/plain", "text"),
    FileType(".text", "text/plain", "text"),
    FileType(".log", "text/plain", "text"),
    FileType(".rst", "text/x-rst", "text"),
    FileType(".yaml", "application/yaml", "text"),
    FileType(".yml", "application/yaml", "text"),
    FileType(".toml", "application/toml", "text"),
    FileType(".ini", "text/plain", "text"),
    FileType(".cfg", "text/plain", "text"),
    FileType(".conf", "text/plain", "text"),
    FileType(".csv", "text/csv", "csv"),
    FileType(".tsv", "text/tab-separated-values", "csv"),
    FileType(".json", "application/json", "json"),
    FileType(".jsonl", "application/x-ndjson", "json"),
    FileType(".ndjson", "application/x-ndjson", "json"),
    # Source code: one text/x-<language> type each, so the parse stage can pick a language. Checked
    # before `mimetypes`, whose table comes partly from the machine's /etc/mime.types and maps some
    # source extensions to unrelated formats (.ts is a Qt translation file there, .rs an XML schema).
    *_code("python", "text/x-python", ".py", ".pyi"),
    *_code("javascript", "text/javascript", ".js", ".mjs", ".cjs", ".jsx"),
    *_code("typescript", "text/x-typescript", ".ts", ".mts", ".cts", ".tsx"),
    *_code("go", "text/x-go", ".go"),
    *_code("rust", "text/x-rust", ".rs"),
    *_code("java", "text/x-java", ".java"),
    *_code("c", "text/x-c", ".c", ".h"),
    *_code("cpp", "text/x-c++", ".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx"),
    *_code("csharp", "text/x-csharp", ".cs"),
    *_code("ruby", "text/x-ruby", ".rb"),
    *_code("php", "text/x-php", ".php"),
    *_code("shell", "text/x-shellscript", ".sh", ".bash", ".zsh"),
    *_code("sql", "text/x-sql", ".sql"),
    *_code("kotlin", "text/x-kotlin", ".kt", ".kts"),
    *_code("swift", "text/x-swift", ".swift"),
    *_code("scala", "text/x-scala", ".scala"),
    *_code("dart", "text/x-dart", ".dart"),
    *_code("lua", "text/x-lua", ".lua"),
)

# Other names clients and servers declare these formats and languages by.
FORMAT_MIME_ALIASES: dict[str, tuple[str, ...]] = {
    "markdown": ("text/x-markdown",),
    "text": ("application/x-yaml", "text/yaml"),
    "csv": ("application/csv",),
    "json": ("text/json", *JSON_LINES_MIMES),
}
LANGUAGE_MIME_ALIASES: dict[str, tuple[str, ...]] = {
    "python": ("text/x-script.python", "application/x-python"),
    "javascript": ("application/javascript", "application/x-javascript"),
    "typescript": ("text/typescript", "application/typescript"),
    "rust": ("text/rust",),
    "java": ("text/x-java-source",),
    "c": ("text/x-csrc", "text/x-chdr"),
    "cpp": ("text/x-c++src", "text/x-c++hdr"),
    "ruby": ("application/x-ruby",),
    "php": ("application/x-php", "application/x-httpd-php"),
    "shell": ("text/x-sh", "application/x-sh"),
    "sql": ("application/sql",),
}
FORMAT_LABELS = {
    "pdf": "PDF",
    "docx": "Word (DOCX)",
    "html": "HTML",
    "markdown": "Markdown",
    "text": "plain text",
    "csv": "CSV",
    "json": "JSON",
    "code": "source code",
}

BY_EXTENSION: dict[str, FileType] = {t.extension: t for t in FILE_TYPES}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(BY_EXTENSION)


def format_mime_types(fmt: str) -> tuple[str, ...]:
    """Every declared type that names `fmt`, the table's first (in table order), then the aliases."""
    mimes = [t.mime_type for t in FILE_TYPES if t.format == fmt]
    if fmt == "code":
        mimes += [alias for aliases in LANGUAGE_MIME_ALIASES.values() for alias in aliases]
    mimes += FORMAT_MIME_ALIASES.get(fmt, ())
    return tuple(dict.fromkeys(mimes))


def format_extensions(fmt: str) -> tuple[str, ...]:
    return tuple(t.extension for t in FILE_TYPES if t.format == fmt)


LANGUAGE_BY_EXTENSION: dict[str, str] = {t.extension: t.language for t in FILE_TYPES if t.language}
LANGUAGE_BY_MIME: dict[str, str] = {
    **{t.mime_type: t.language for t in FILE_TYPES if t.language},
    **{alias: language for language, aliases in LANGUAGE_MIME_ALIASES.items() for alias in aliases},
}

# Short names a caller may give instead of a MIME type (`"content_type": "markdown"`), as Crosmos's
# and Memsolus's clients send them; matched without regard to case.
SHORT_TYPE_NAMES: dict[str, str] = {
    "text": "text/plain",
    "txt": "text/plain",
    "markdown": "text/markdown",
    "md": "text/markdown",
    "html": "text/html",
    "json": "application/json",
    "csv": "text/csv",
    "pdf": "application/pdf",
    "docx": DOCX_MIME,
}


def declared_mime_type(declared: str | None) -> str | None:
    """The MIME type a declared content type stands for: a short name's, else the type as given."""
    if declared is None:
        return None
    return SHORT_TYPE_NAMES.get(declared.strip().lower(), declared)
