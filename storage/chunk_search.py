"""Queries over one library's chunk table: prefilters, vector, keyword and hybrid (RRF) search.

Every function here reads one table handle pinned to one version, so the two legs of a hybrid
search see the same chunks even while a writer replaces a source.
"""

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
from lancedb.query import MatchQuery
from lancedb.table import Table

from gristmill.errors import InvalidRequest
from gristmill.search_modes import SEARCH_MODES, SearchMode
from storage.chunk_records import ROW_COLUMNS, SearchHit, hit_from_record, metadata_tags, tag_value

# Reciprocal rank fusion constant from Cormack et al. (2009); LanceDB's RRFReranker uses it too.
RRF_K = 60
# Each hybrid leg fetches more than `limit` so a chunk ranked modestly by both legs can still win.
HYBRID_CANDIDATES_MIN = 20
MATCH_NOTHING = "FALSE"


def sql_literal(value: str) -> str:
    """A SQL string literal for LanceDB's (DataFusion's) filter dialect: quotes doubled, nothing else special."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Sequence[str]) -> str:
    if not values:
        return MATCH_NOTHING
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


def build_filter(
    *,
    source_ids: Sequence[str] | None = None,
    external_ids: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """The SQL prefilter for a search, None when nothing is filtered; `FALSE` when a list is empty.

    `metadata`: every key must match; a scalar value exactly, a list by any of its values.
    """
    clauses = []
    if source_ids is not None:
        clauses.append(sql_in("source_id", list(source_ids)))
    if external_ids is not None:
        clauses.append(sql_in("external_id", [e for e in external_ids if e]))
    if metadata:
        every, any_of = _metadata_tags(metadata)
        if every:
            clauses.append(f"array_has_all(tags, [{', '.join(sql_literal(t) for t in every)}])")
        for tags in any_of:
            clauses.append(f"array_has_any(tags, [{', '.join(sql_literal(t) for t in tags)}])" if tags else MATCH_NOTHING)
    if not clauses:
        return None
    if MATCH_NOTHING in clauses:
        return MATCH_NOTHING
    return " AND ".join(f"({c})" for c in clauses)


def _metadata_tags(metadata: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The tags every chunk must carry (scalar values), and per list value the tags it needs one of."""
    every: list[str] = []
    any_of: list[list[str]] = []
    for key, value in metadata.items():
        values = list(value) if isinstance(value, list | tuple) else [value]
        if any(tag_value(v) is None for v in values):
            raise InvalidRequest(
                f"Metadata filter {key!r} must be a string, number or boolean, or a list of them.", code="invalid_filter"
            )
        if isinstance(value, list | tuple):
            any_of.append(metadata_tags({key: values}))
        else:
            every.extend(metadata_tags({key: value}))
    return every, any_of


def vector_rows(table: Table, vector: np.ndarray, limit: int, where: str | None) -> list[dict[str, Any]]:
    """Nearest chunks by cosine distance, nearest first; each row carries `_distance`."""
    query = table.search(vector, query_type="vector", vector_column_name="vector").distance_type("cosine")
    if where:
        query = query.where(where, prefilter=True)
    return query.select(ROW_COLUMNS).limit(limit).to_arrow().to_pylist()


def keyword_rows(table: Table, text: str, limit: int, where: str | None) -> list[dict[str, Any]]:
    """Chunks by BM25 over the native full-text index (rows not yet indexed are scanned), best first."""
    if not text.strip():
        return []
    # A MatchQuery is not parsed as query syntax, so user text cannot turn into field or boolean operators.
    query = table.search(MatchQuery(text, "text"), query_type="fts")
    if where:
        query = query.where(where, prefilter=True)
    return query.select([*ROW_COLUMNS, "_score"]).limit(limit).to_arrow().to_pylist()


def rrf_fuse(ranked_lists: Sequence[Sequence[dict[str, Any]]], limit: int) -> list[tuple[dict[str, Any], float]]:
    """Reciprocal rank fusion by chunk id: score = sum over lists of 1 / (RRF_K + rank)."""
    scores: dict[str, float] = {}
    records: dict[str, dict[str, Any]] = {}
    for rows in ranked_lists:
        for rank, row in enumerate(rows, 1):
            key = row["chunk_id"]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            records.setdefault(key, row)
    # Ties (one leg's rank k against the other's rank k) go to the chunk id, so answers are repeatable.
    best = sorted(scores, key=lambda k: (-scores[k], k))[:limit]
    return [(records[k], scores[k]) for k in best]


def run_search(
    table: Table,
    *,
    mode: SearchMode,
    query_text: str,
    query_vector: np.ndarray | None,
    limit: int,
    where: str | None,
    executor: Executor | None = None,
) -> list[SearchHit]:
    if where == MATCH_NOTHING:
        return []
    if mode == "vector":
        assert query_vector is not None
        return [hit_from_record(r, 1.0 - r["_distance"]) for r in vector_rows(table, query_vector, limit, where)]
    if mode == "keyword":
        return [hit_from_record(r, r["_score"]) for r in keyword_rows(table, query_text, limit, where)]
    assert query_vector is not None
    candidates = max(limit * 2, HYBRID_CANDIDATES_MIN)
    if executor is None:
        legs = [vector_rows(table, query_vector, candidates, where), keyword_rows(table, query_text, candidates, where)]
    else:  # the legs mostly wait on LanceDB's Rust side, which releases the GIL
        vector_leg = executor.submit(vector_rows, table, query_vector, candidates, where)
        keyword_leg = keyword_rows(table, query_text, candidates, where)
        legs = [vector_leg.result(), keyword_leg]
    return [hit_from_record(r, score) for r, score in rrf_fuse(legs, limit)]


def validate_query(
    mode: str, query_vector: Sequence[float] | np.ndarray | None, limit: int, dim: int | None
) -> np.ndarray | None:
    """Check a search request; returns the query vector as float32, or None for keyword mode."""
    if mode not in SEARCH_MODES:
        raise InvalidRequest(
            f"Search mode must be one of {', '.join(SEARCH_MODES)}; got {mode!r}.", code="invalid_mode"
        )
    if limit < 1:
        raise InvalidRequest(f"Search limit must be at least 1; got {limit}.", code="invalid_limit")
    if mode == "keyword":
        return None
    if query_vector is None:
        raise InvalidRequest(f"A {mode} search needs a query vector.", code="query_vector_required")
    vector = np.asarray(query_vector, dtype=np.float32)
    if vector.ndim != 1 or (dim is not None and vector.shape[0] != dim):
        raise InvalidRequest(
            f"The query vector has shape {vector.shape}; this library stores {dim}-dimensional vectors.",
            code="vector_dimension_mismatch",
        )
    if not np.isfinite(vector).all():
        raise InvalidRequest("The query vector has NaN or infinite values.", code="invalid_vector")
    return vector
