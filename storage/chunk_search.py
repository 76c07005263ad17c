"""Queries over one library's chunk table: prefilters, vector, keyword and hybrid search, and the
neighbours a hit is returned with.

Every function here reads one table handle pinned to one version, so the two legs of a hybrid
search (and the neighbours' lookup) see the same chunks even while a writer replaces a source.

Scores, one scale per mode (higher is better):
- vector: cosine similarity of the query's and the chunk's embeddings, -1 to 1 (0.5 is close for
  all-MiniLM-L6-v2, below 0.2 is unrelated);
- keyword: BM25 of the query's words in the chunk's indexed text, 0 and up, unbounded: comparable
  between the results of one query, not between queries;
- hybrid: HYBRID_VECTOR_WEIGHT x cosine + (1 - HYBRID_VECTOR_WEIGHT) x (BM25 / the best BM25 among
  the query's candidates): about 0 to 1, where 1 is the best keyword match that is also a perfect
  meaning match. The weight and the fusion itself were chosen by bench/bench_retrieval.py.
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
HYBRID_VECTOR_WEIGHT = 0.7  # bench/README.md, "Retrieval choices": 0.5 lost paraphrases to one-word keyword matches
# Each hybrid leg fetches more than `limit` so a chunk ranked modestly by both legs can still win.
HYBRID_CANDIDATES_MIN = 20
MATCH_NOTHING = "FALSE"
FUSIONS = ("linear", "rrf")


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


def keyword_rows(
    table: Table, text: str, limit: int, where: str | None, *, with_vectors: bool = False
) -> list[dict[str, Any]]:
    """Chunks by BM25 over the native full-text index (rows not yet indexed are scanned), best first."""
    if not text.strip():
        return []
    # A MatchQuery is not parsed as query syntax, so user text cannot turn into field or boolean operators.
    query = table.search(MatchQuery(text, "search_text"), query_type="fts")
    if where:
        query = query.where(where, prefilter=True)
    columns = [*ROW_COLUMNS, "_score", *(["vector"] if with_vectors else [])]
    return query.select(columns).limit(limit).to_arrow().to_pylist()


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


def linear_fuse(
    vector_leg: Sequence[dict[str, Any]],
    keyword_leg: Sequence[dict[str, Any]],
    query_vector: np.ndarray,
    limit: int,
    weight: float = HYBRID_VECTOR_WEIGHT,
) -> list[tuple[dict[str, Any], float]]:
    """weight x cosine + (1 - weight) x BM25 / best BM25, over the union of both legs' candidates.

    A keyword candidate's cosine is computed from its stored vector; a vector candidate the keyword
    leg did not return scores 0 for its words.
    """
    best_bm25 = max((r["_score"] for r in keyword_leg), default=0.0) or 1.0
    norm = float(np.linalg.norm(query_vector)) or 1.0
    scores: dict[str, float] = {}
    records: dict[str, dict[str, Any]] = {}
    cosines = {r["chunk_id"]: 1.0 - r["_distance"] for r in vector_leg}
    for row in keyword_leg:
        if row["chunk_id"] not in cosines:
            vector = np.asarray(row["vector"], dtype=np.float32)
            cosines[row["chunk_id"]] = float(vector @ query_vector) / ((float(np.linalg.norm(vector)) or 1.0) * norm)
    keyword = {r["chunk_id"]: r["_score"] / best_bm25 for r in keyword_leg}
    for row in [*vector_leg, *keyword_leg]:
        key = row["chunk_id"]
        records.setdefault(key, row)
        scores[key] = weight * cosines[key] + (1.0 - weight) * keyword.get(key, 0.0)
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
    fusion: str = "linear",
    neighbours: tuple[int, int] = (0, 0),
    min_score: float | None = None,
) -> list[SearchHit]:
    """Best hits first, each with its `neighbours` (chunks before, after) in one span of text.

    A hit whose span overlaps a better hit's is folded into it, so `limit` hits are distinct passages.
    """
    if where == MATCH_NOTHING:
        return []
    # Hits folded into better ones are replaced from further down the ranking.
    depth = limit * 3 if any(neighbours) else limit
    scored = _ranked(table, mode, query_text, query_vector, depth, where, executor, fusion)
    if min_score is not None:
        scored = [(r, s) for r, s in scored if s >= min_score]
    if not any(neighbours):
        return [hit_from_record(r, s) for r, s in scored[:limit]]
    return with_neighbours(table, scored, limit, neighbours)


def _ranked(
    table: Table,
    mode: SearchMode,
    query_text: str,
    query_vector: np.ndarray | None,
    depth: int,
    where: str | None,
    executor: Executor | None,
    fusion: str,
) -> list[tuple[dict[str, Any], float]]:
    if mode == "vector":
        assert query_vector is not None
        return [(r, 1.0 - r["_distance"]) for r in vector_rows(table, query_vector, depth, where)]
    if mode == "keyword":
        return [(r, r["_score"]) for r in keyword_rows(table, query_text, depth, where)]
    assert query_vector is not None
    candidates = max(depth * 2, HYBRID_CANDIDATES_MIN)
    linear = fusion == "linear"
    if executor is None:
        vector_leg = vector_rows(table, query_vector, candidates, where)
        keyword_leg = keyword_rows(table, query_text, candidates, where, with_vectors=linear)
    else:  # the legs mostly wait on LanceDB's Rust side, which releases the GIL
        future = executor.submit(vector_rows, table, query_vector, candidates, where)
        keyword_leg = keyword_rows(table, query_text, candidates, where, with_vectors=linear)
        vector_leg = future.result()
    if linear:
        return linear_fuse(vector_leg, keyword_leg, query_vector, depth, weight=HYBRID_VECTOR_WEIGHT)
    return rrf_fuse([vector_leg, keyword_leg], depth)


def with_neighbours(
    table: Table, scored: Sequence[tuple[dict[str, Any], float]], limit: int, neighbours: tuple[int, int]
) -> list[SearchHit]:
    """Hits whose text runs from `neighbours[0]` chunks before to `neighbours[1]` after, in one read."""
    before, after = neighbours
    kept: list[tuple[dict[str, Any], float, int, int]] = []  # record, score, first and last chunk index
    for record, score in scored:
        first, last = max(record["chunk_index"] - before, 0), record["chunk_index"] + after
        if any(
            k[0]["source_id"] == record["source_id"] and k[2] <= record["chunk_index"] <= k[3] for k in kept
        ):
            continue  # already in a better hit's text
        kept.append((record, score, first, last))
        if len(kept) == limit:
            break
    if not kept:
        return []
    condition = " OR ".join(
        f"(source_id = {sql_literal(r['source_id'])} AND chunk_index >= {a} AND chunk_index <= {b})"
        for r, _, a, b in kept
    )
    found = table.search().where(condition).select(ROW_COLUMNS).limit(len(kept) * (before + after + 1)).to_arrow()
    by_key = {(r["source_id"], r["chunk_index"]): r for r in found.to_pylist()}
    hits = []
    for record, score, first, last in kept:
        rows = [by_key[(record["source_id"], i)] for i in range(first, last + 1) if (record["source_id"], i) in by_key]
        hits.append(hit_from_record(record, score, span=rows))
    return hits


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
