"""The shapes the chunk store takes and gives back, and their Arrow layout in a LanceDB table."""

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.documents import indexed_text
from gristmill.errors import StorageError

HEADING_SEPARATOR = " > "

# Columns a search or a listing reads back: everything but the vector, which no caller needs.
ROW_COLUMNS = [
    "chunk_id",
    "source_id",
    "external_id",
    "chunk_index",
    "text",
    "title",
    "uri",
    "heading_path",
    "page_start",
    "page_end",
    "char_start",
    "char_end",
    "text_hash",
    "metadata_json",
]


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One chunk to store; the library, source and external id come from `ChunkStore.replace_source`."""

    chunk_index: int
    text: str
    vector: Sequence[float] | np.ndarray
    workspace_id: str
    title: str | None = None
    uri: str | None = None
    heading_path: Sequence[str] = ()
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the chunk's own (row_start, language, ...)
    source_metadata: Mapping[str, Any] = field(default_factory=dict)  # what the user attached to the source
    context: str = ""  # the context header embedded and keyword-indexed with `text` (Chunk.context)

    @property
    def indexed_text(self) -> str:
        return indexed_text(self.context, self.text)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A chunk found by a search, its text running on into the neighbours it is returned with.

    `score`, higher is better, is on its mode's scale (storage/chunk_search.py): cosine similarity
    (vector), BM25 (keyword), a weighted sum of both (hybrid)."""

    chunk_id: str
    source_id: str
    external_id: str | None
    title: str | None
    uri: str | None
    text: str
    score: float
    metadata: dict[str, Any]  # page_start, page_end, heading_path (list), chunk_index, char_*, and the stored metadata


@dataclass(frozen=True, slots=True)
class ChunkView:
    """A stored chunk as listed for its source (no vector)."""

    chunk_id: str
    source_id: str
    external_id: str | None
    chunk_index: int
    text: str
    title: str | None
    uri: str | None
    text_hash: str
    metadata: dict[str, Any]


def chunk_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("workspace_id", pa.string(), nullable=False),
            pa.field("library_id", pa.string(), nullable=False),
            pa.field("source_id", pa.string(), nullable=False),
            pa.field("external_id", pa.string(), nullable=False),  # "" when the source has none
            pa.field("chunk_index", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("title", pa.string()),
            pa.field("uri", pa.string()),
            pa.field("heading_path", pa.string(), nullable=False),
            pa.field("page_start", pa.int32()),
            pa.field("page_end", pa.int32()),
            pa.field("char_start", pa.int32()),
            pa.field("char_end", pa.int32()),
            pa.field("text_hash", pa.string(), nullable=False),
            pa.field("metadata_json", pa.string(), nullable=False),
            pa.field("tags", pa.list_(pa.string()), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            *INDEXED_TEXT_FIELDS,
        ]
    )


# Added after the first tables were made; `chunk_tables` adds them to an older table when it opens it
# (context "" and search_text = text: what those rows were embedded and indexed from).
INDEXED_TEXT_FIELDS = (
    pa.field("context", pa.string(), nullable=False),
    pa.field("search_text", pa.string(), nullable=False),  # indexed_text(context, text): what was embedded
)
INDEXED_TEXT_DEFAULTS = {"context": "''", "search_text": "text"}  # SQL, for rows stored before


def vector_dim(schema: pa.Schema) -> int:
    return schema.field("vector").type.list_size


def text_hash(text: str) -> str:
    """Key of an embedded text (a chunk's indexed_text) in the embedding cache (ChunkStore.vectors_by_text_hash)."""
    return hashlib.sha256(text.encode()).hexdigest()


def chunk_id(source_id: str, chunk_index: int) -> str:
    return f"{source_id}:{chunk_index}"


def tag_value(value: Any) -> str | None:
    """How a metadata value is spelled in a `key=value` tag; None for values that are not scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # 3 and 3.0 must be one tag: JSON metadata does not keep the difference reliably.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


def metadata_tags(*metadatas: Mapping[str, Any]) -> list[str]:
    """`key=value` for every scalar value (and every scalar inside a list value), without repeats."""
    tags: dict[str, None] = {}
    for metadata in metadatas:
        for key, value in metadata.items():
            for item in value if isinstance(value, list | tuple) else (value,):
                text = tag_value(item)
                if text is not None:
                    tags[f"{key}={text}"] = None
    return list(tags)


def rows_to_arrow(
    rows: Sequence[ChunkRow], *, library_id: str, source_id: str, external_id: str | None, dim: int
) -> pa.Table:
    """Validate `rows` and lay them out in the table's schema; raises StorageError on unusable rows."""
    indexes = [row.chunk_index for row in rows]
    if len(set(indexes)) != len(indexes):
        raise StorageError(
            f"Source {source_id} has two chunks with the same index; each chunk needs its own.",
            code="duplicate_chunk_index",
        )
    vectors = _vectors(rows, dim, source_id)
    now = datetime.now(UTC)
    n = len(rows)
    columns: dict[str, Any] = {
        "chunk_id": [chunk_id(source_id, row.chunk_index) for row in rows],
        "workspace_id": [row.workspace_id for row in rows],
        "library_id": [library_id] * n,
        "source_id": [source_id] * n,
        "external_id": [external_id or ""] * n,
        "chunk_index": indexes,
        "text": [row.text for row in rows],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim),
        "title": [row.title for row in rows],
        "uri": [row.uri for row in rows],
        "heading_path": [HEADING_SEPARATOR.join(row.heading_path) for row in rows],
        "page_start": [row.page_start for row in rows],
        "page_end": [row.page_end for row in rows],
        "char_start": [row.char_start for row in rows],
        "char_end": [row.char_end for row in rows],
        "text_hash": [text_hash(row.indexed_text) for row in rows],
        "metadata_json": [_metadata_json(row) for row in rows],
        "tags": [metadata_tags(row.source_metadata, row.metadata) for row in rows],
        "created_at": [now] * n,
        "context": [row.context for row in rows],
        "search_text": [row.indexed_text for row in rows],
    }
    return pa.table(columns, schema=chunk_schema(dim))


def _vectors(rows: Sequence[ChunkRow], dim: int, source_id: str) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    try:
        vectors = np.asarray([np.asarray(row.vector, dtype=np.float32) for row in rows])
    except ValueError as exc:  # ragged: vectors of different lengths
        raise _dimension_error(source_id, dim, "vectors of different lengths") from exc
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise _dimension_error(source_id, dim, f"shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise StorageError(
            f"Source {source_id} has a chunk vector with NaN or infinite values; re-embed the source.",
            code="invalid_vector",
        )
    return vectors


def _dimension_error(source_id: str, dim: int, got: str) -> StorageError:
    return StorageError(
        f"Source {source_id}: the library stores {dim}-dimensional vectors but got {got}; "
        "the embedding model must match the library's.",
        code="vector_dimension_mismatch",
    )


def _metadata_json(row: ChunkRow) -> str:
    # The user's metadata wins a key clash: it is what they will look for in a hit.
    return json.dumps({**row.metadata, **row.source_metadata}, ensure_ascii=False, default=str)


def _public_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    metadata = json.loads(record["metadata_json"]) if record["metadata_json"] else {}
    heading = record["heading_path"]
    metadata.update(
        page_start=record["page_start"],
        page_end=record["page_end"],
        heading_path=heading.split(HEADING_SEPARATOR) if heading else [],
        chunk_index=record["chunk_index"],
        char_start=record["char_start"],
        char_end=record["char_end"],
    )
    return metadata


def hit_from_record(
    record: Mapping[str, Any], score: float, span: Sequence[Mapping[str, Any]] = ()
) -> SearchHit:
    """A hit on `record`; with `span` (consecutive chunks of its source, itself among them) its text
    is theirs, joined as the document has them, and its pages and offsets cover them all."""
    metadata = _public_metadata(record)
    text = record["text"]
    if len(span) > 1:
        text = span_text(span)
        pages = [p for r in span for p in (r["page_start"], r["page_end"]) if p is not None]
        offsets = [r for r in span if r["char_start"] is not None and r["char_end"] is not None]
        metadata.update(
            page_start=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            char_start=offsets[0]["char_start"] if offsets else None,
            char_end=offsets[-1]["char_end"] if offsets else None,
            chunk_indexes=[r["chunk_index"] for r in span],
        )
    return SearchHit(
        chunk_id=record["chunk_id"],
        source_id=record["source_id"],
        external_id=record["external_id"] or None,
        title=record["title"],
        uri=record["uri"],
        text=text,
        score=float(score),
        metadata=metadata,
    )


def span_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Consecutive chunks' texts as one text: a piece that repeats the end of the one before (the
    overlap of a split block) is not repeated, and chunks made of whole blocks are a blank line apart,
    as in the document."""
    text = rows[0]["text"]
    for previous, row in zip(rows, rows[1:]):
        end, start = previous["char_end"], row["char_start"]
        if end is not None and start is not None and start < end:
            text += row["text"][end - start :]
        elif end is not None and start is not None and start - end != 2:
            text += " " + row["text"]  # a block split between sentences or words
        else:
            text += "\n\n" + row["text"]
    return text


def views_from_records(records: Iterable[Mapping[str, Any]]) -> list[ChunkView]:
    return [
        ChunkView(
            chunk_id=r["chunk_id"],
            source_id=r["source_id"],
            external_id=r["external_id"] or None,
            chunk_index=r["chunk_index"],
            text=r["text"],
            title=r["title"],
            uri=r["uri"],
            text_hash=r["text_hash"],
            metadata=_public_metadata(r),
        )
        for r in records
    ]
