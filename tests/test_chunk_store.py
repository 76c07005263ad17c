"""The LanceDB chunk store against a real LanceDB directory in tmp_path."""

import hashlib
import threading
from pathlib import Path

import lancedb
import numpy as np
import pytest

from gristmill.errors import InvalidRequest, StorageError
from storage.chunks import ChunkRow, ChunkStore, ChunkView, text_hash

DIM = 8
LIB = "3f2c9a1e-lib"


def unit(seed: int) -> np.ndarray:
    """A deterministic unit vector; different seeds give nearly orthogonal directions in 8-d."""
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(seed: int) -> np.ndarray:
    """A query vector close to `unit(seed)` but not equal to it."""
    v = unit(seed) + 0.05 * unit(seed + 10_000)
    return v / np.linalg.norm(v)


def rows(texts: list[str], *, seed: int = 0, **fields) -> list[ChunkRow]:
    return [
        ChunkRow(chunk_index=i, text=text, vector=unit(seed + i), workspace_id="ws1", **fields)
        for i, text in enumerate(texts)
    ]


def ids(hits) -> list[str]:
    return [h.chunk_id for h in hits]


def lance_table(path: Path, library_id: str = LIB):
    return lancedb.connect(str(path)).open_table(f"chunks_{library_id}")


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(str(tmp_path))


# --- writes, counts, listings --------------------------------------------------------------------


def test_replace_source_stores_rows_and_lists_them_in_order(store: ChunkStore) -> None:
    store.replace_source(
        LIB,
        "src1",
        rows(
            ["alpha one", "beta two", "gamma three"],
            title="Guide",
            uri="https://example.org/guide",
            heading_path=["Intro", "Setup"],
            page_start=2,
            page_end=3,
            metadata={"row_start": 4},
            source_metadata={"team": "search"},
        ),
        dim=DIM,
    )
    assert store.count(LIB) == 3
    assert store.count(LIB, "src1") == 3
    assert store.count(LIB, "other") == 0
    assert [c.chunk_index for c in store.list_chunks(LIB, "src1")] == [0, 1, 2]
    assert store.list_chunks(LIB, "src1", offset=1, limit=1) == [
        ChunkView(
            chunk_id="src1:1",
            source_id="src1",
            external_id=None,
            chunk_index=1,
            text="beta two",
            title="Guide",
            uri="https://example.org/guide",
            text_hash=hashlib.sha256(b"beta two").hexdigest(),
            metadata={
                "row_start": 4,
                "team": "search",
                "page_start": 2,
                "page_end": 3,
                "heading_path": ["Intro", "Setup"],
                "chunk_index": 1,
                "char_start": None,
                "char_end": None,
            },
        )
    ]


def test_replacing_a_source_leaves_only_the_new_chunks(store: ChunkStore) -> None:
    store.replace_source(LIB, "src1", rows(["old a", "old b", "old c", "old d", "old e"]), dim=DIM)
    store.replace_source(LIB, "src2", rows(["other"]), dim=DIM)
    store.replace_source(LIB, "src1", rows(["new a", "new b"], seed=50), dim=DIM)
    assert [c.text for c in store.list_chunks(LIB, "src1")] == ["new a", "new b"]
    assert store.count(LIB) == 3


def test_replace_with_no_rows_deletes_the_source(store: ChunkStore) -> None:
    store.replace_source(LIB, "src1", rows(["a", "b"]), dim=DIM)
    store.replace_source(LIB, "src2", rows(["c"]), dim=DIM)
    store.replace_source(LIB, "src1", [], dim=DIM)
    assert store.count(LIB, "src1") == 0
    assert store.count(LIB) == 1


def test_replace_source_is_a_single_commit(tmp_path: Path) -> None:
    store = ChunkStore(str(tmp_path), refresh_after_writes=1000)
    store.replace_source(LIB, "src1", rows(["a", "b", "c"]), dim=DIM)
    before = lance_table(tmp_path).version
    store.replace_source(LIB, "src1", rows(["d", "e"], seed=9), external_id="ext", dim=DIM)
    assert lance_table(tmp_path).version == before + 1


def test_external_id_replacement_removes_the_old_source(store: ChunkStore) -> None:
    store.replace_source(LIB, "old", rows(["v1 a", "v1 b", "v1 c"]), external_id="https://x.org/page", dim=DIM)
    store.replace_source(LIB, "keep", rows(["unrelated"]), external_id="https://x.org/other", dim=DIM)
    store.replace_source(LIB, "new", rows(["v2 a", "v2 b"], seed=20), external_id="https://x.org/page", dim=DIM)
    assert store.count(LIB, "old") == 0
    assert [c.text for c in store.list_chunks(LIB, "new")] == ["v2 a", "v2 b"]
    assert store.count(LIB) == 3
    assert store.source_ids_with_external_id(LIB, "https://x.org/page") == ["new"]
    assert store.list_chunks(LIB, "new")[0].external_id == "https://x.org/page"


def test_delete_source_and_library(store: ChunkStore) -> None:
    store.replace_source(LIB, "src1", rows(["a", "b"]), dim=DIM)
    store.replace_source(LIB, "src2", rows(["c"]), dim=DIM)
    store.delete_source(LIB, "src1")
    assert (store.count(LIB, "src1"), store.count(LIB)) == (0, 1)
    store.delete_library(LIB)
    assert store.count(LIB) == 0
    assert store.search(LIB, query_text="c", query_vector=unit(0), mode="hybrid", limit=5) == []
    store.delete_library(LIB)  # already gone: no error
    store.replace_source(LIB, "src3", rows(["fresh start"]), dim=DIM)
    assert [c.text for c in store.list_chunks(LIB, "src3")] == ["fresh start"]


def test_a_library_without_a_table_answers_empty(store: ChunkStore) -> None:
    assert store.count("never-written") == 0
    assert store.list_chunks("never-written", "s") == []
    assert store.search("never-written", query_text="x", query_vector=unit(1), mode="hybrid", limit=3) == []
    store.delete_source("never-written", "s")
    store.replace_source("never-written", "s", [], dim=DIM)
    assert store.count("never-written") == 0


def test_a_second_store_sees_the_first_stores_writes(tmp_path: Path) -> None:
    first, second = ChunkStore(str(tmp_path)), ChunkStore(str(tmp_path))
    first.replace_source(LIB, "src1", rows(["kestrel hovering"]), dim=DIM)
    assert ids(second.search(LIB, query_text="kestrel", query_vector=None, mode="keyword", limit=5)) == ["src1:0"]
    second.replace_source(LIB, "src2", rows(["osprey diving"], seed=7), dim=DIM)  # first has a cached handle
    assert first.count(LIB) == 2
    assert ids(first.search(LIB, query_text="osprey", query_vector=None, mode="keyword", limit=5)) == ["src2:0"]


# --- atomicity -------------------------------------------------------------------------------------


def test_concurrent_readers_never_see_a_half_replaced_source(store: ChunkStore) -> None:
    def generation(g: int) -> list[ChunkRow]:
        return rows([f"generation{g} shared words chunk {i}" for i in range(50)], seed=g * 100)

    store.replace_source(LIB, "src0", generation(0), external_id="doc", dim=DIM)
    store.replace_source(LIB, "bystander", rows(["unrelated shared words"], seed=9999), dim=DIM)
    done = threading.Event()
    seen: list[tuple[int, set[str]]] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not done.is_set():
                n = store.count(LIB)
                hits = store.search(LIB, query_text="shared words", query_vector=unit(3), mode="hybrid", limit=60)
                gens = {h.text.split()[0] for h in hits if h.source_id != "bystander"}
                seen.append((n, gens))
                assert n == 51 and len(hits) == 51 and len(gens) == 1, (n, len(hits), gens)
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # Alternate between replacing the same source id and a new source with the same external id.
        for g in range(1, 25):
            source_id = f"src{g}" if g % 2 else f"src{g - 1}"
            store.replace_source(LIB, source_id, generation(g), external_id="doc", dim=DIM)
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert len({next(iter(gens)) for _, gens in seen}) > 2  # the reader really did see replacements
    assert store.count(LIB) == 51


def test_threads_writing_different_sources_all_land(store: ChunkStore) -> None:
    def write(worker: int) -> None:
        for round_ in range(4):
            texts = [f"worker{worker} round{round_} part {i}" for i in range(worker + 3)]
            store.replace_source(LIB, f"src{worker}", rows(texts, seed=worker * 10 + round_), dim=DIM)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [store.count(LIB, f"src{w}") for w in range(4)] == [3, 4, 5, 6]
    assert {c.text.split()[1] for w in range(4) for c in store.list_chunks(LIB, f"src{w}")} == {"round3"}


# --- search ------------------------------------------------------------------------------------------


@pytest.fixture
def library(store: ChunkStore) -> ChunkStore:
    store.replace_source(
        LIB,
        "birds",
        rows(["the kestrel hovers over fields", "owls hunt at night", "the heron waits in shallow water"], seed=0),
        external_id="birds.md",
        dim=DIM,
    )
    store.replace_source(
        LIB,
        "fish",
        rows(["salmon swim upstream to spawn", "pike lurk among reeds"], seed=10),
        external_id="fish.md",
        dim=DIM,
    )
    store.replace_source(
        LIB,
        "quotes",
        rows(
            ["the kestrel is a small falcon", "a heron is not a crane"],
            seed=20,
            source_metadata={"author": "O'Brien", "year": 2021, "reviewed": True},
        ),
        dim=DIM,
    )
    return store


def test_keyword_search_ranks_the_matching_chunk_first(library: ChunkStore) -> None:
    hits = library.search(LIB, query_text="salmon upstream", query_vector=None, mode="keyword", limit=3)
    assert ids(hits) == ["fish:0"]
    assert hits[0].score > 0
    assert (hits[0].source_id, hits[0].external_id) == ("fish", "fish.md")
    assert hits[0].text == "salmon swim upstream to spawn"


def test_vector_search_ranks_the_nearest_chunk_first(library: ChunkStore) -> None:
    hits = library.search(LIB, query_text="", query_vector=near(11), mode="vector", limit=7)
    assert ids(hits)[0] == "fish:1"
    assert len(hits) == 7
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(float(unit(11) @ near(11)), abs=1e-5)


def test_hybrid_search_puts_the_chunk_both_legs_agree_on_first(library: ChunkStore) -> None:
    # "kestrel" matches birds:0 and quotes:0; the vector is near quotes:0 only.
    hits = library.search(LIB, query_text="kestrel", query_vector=near(20), mode="hybrid", limit=7)
    assert ids(hits)[0] == "quotes:0"
    assert "birds:0" in ids(hits)  # found by its word alone
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    cosine = {h.chunk_id: h.score for h in library.search(LIB, query_text="", query_vector=near(20), mode="vector", limit=10)}
    bm25 = {h.chunk_id: h.score for h in library.search(LIB, query_text="kestrel", query_vector=None, mode="keyword", limit=10)}
    for hit in hits:
        expected = 0.7 * cosine[hit.chunk_id] + 0.3 * bm25.get(hit.chunk_id, 0.0) / max(bm25.values())
        assert hit.score == pytest.approx(expected, abs=1e-6)

    fused = library.search(LIB, query_text="kestrel", query_vector=near(20), mode="hybrid", limit=3, fusion="rrf")
    assert ids(fused)[:2] == ["quotes:0", "birds:0"]
    assert fused[0].score == pytest.approx(2 / 61)


def test_min_score_leaves_out_hits_below_it_on_the_mode_s_scale(library: ChunkStore) -> None:
    every = library.search(LIB, query_text="", query_vector=near(20), mode="vector", limit=10)
    threshold = every[2].score
    kept = library.search(LIB, query_text="", query_vector=near(20), mode="vector", limit=10, min_score=threshold)
    assert ids(kept) == [h.chunk_id for h in every if h.score >= threshold]
    assert len(kept) >= 3


def test_a_hit_comes_with_its_neighbours_as_one_span_and_overlapping_hits_fold(library: ChunkStore) -> None:
    chunks = {c.chunk_index: c for c in library.list_chunks(LIB, "birds")}
    hits = library.search(LIB, query_text="", query_vector=near(0), mode="vector", limit=10, neighbours=(0, 1))
    first = hits[0]
    assert first.chunk_id == "birds:0"
    assert first.text == chunks[0].text + "\n\n" + chunks[1].text
    assert first.metadata["chunk_indexes"] == [0, 1]
    assert "birds:1" not in ids(hits)  # inside the first hit's text already
    assert len(ids(hits)) == len(set(ids(hits)))


def test_search_filters_by_source_and_external_id(library: ChunkStore) -> None:
    def search(**filters) -> list[str]:
        hits = library.search(LIB, query_text="the", query_vector=unit(0), mode="hybrid", limit=10, **filters)
        return sorted(ids(hits))

    assert search(source_ids=["fish"]) == ["fish:0", "fish:1"]
    assert search(source_ids=["fish", "quotes"]) == ["fish:0", "fish:1", "quotes:0", "quotes:1"]
    assert search(external_ids=["birds.md"]) == ["birds:0", "birds:1", "birds:2"]
    assert search(source_ids=["birds"], external_ids=["fish.md"]) == []
    assert search(source_ids=[]) == []
    assert search(source_ids=["fish' OR '1'='1"]) == []


def test_search_filters_by_metadata_including_quotes(library: ChunkStore) -> None:
    def search(metadata, mode="vector") -> list[str]:
        hits = library.search(LIB, query_text="heron", query_vector=unit(0), mode=mode, limit=10, metadata=metadata)
        return sorted(ids(hits))

    assert search({"author": "O'Brien"}) == ["quotes:0", "quotes:1"]
    assert search({"author": "O'Brien"}, mode="keyword") == ["quotes:1"]
    assert search({"year": 2021, "reviewed": True}) == ["quotes:0", "quotes:1"]
    assert search({"year": 2021.0}) == ["quotes:0", "quotes:1"]
    assert search({"year": 2020}) == []
    assert search({"author": "O'Brien' OR '1'='1"}) == []
    # A list matches any of its values; an empty one matches nothing.
    assert search({"author": ["Nobody", "O'Brien"], "year": 2021}) == ["quotes:0", "quotes:1"]
    assert search({"author": ["Nobody", "Someone"]}) == []
    assert search({"author": []}) == []
    for unusable in ({"author": {"first": "a"}}, {"author": ["a", ["b"]]}):
        with pytest.raises(InvalidRequest) as err:
            search(unusable)
        assert err.value.code == "invalid_filter"


def test_a_filter_does_not_shrink_results_below_the_limit(store: ChunkStore) -> None:
    # 40 close chunks without the tag and 3 distant ones with it: a postfilter on top-k would find none.
    store.replace_source(LIB, "crowd", [
        ChunkRow(chunk_index=i, text=f"crowd {i}", vector=near(1), workspace_id="ws1") for i in range(40)
    ], dim=DIM)
    tagged = rows(["far a", "far b", "far c"], seed=500, source_metadata={"k": "v"})
    store.replace_source(LIB, "tagged", tagged, dim=DIM)
    hits = store.search(LIB, query_text="", query_vector=unit(1), mode="vector", limit=3, metadata={"k": "v"})
    assert sorted(ids(hits)) == ["tagged:0", "tagged:1", "tagged:2"]


def test_rows_written_after_the_full_text_index_is_built_are_found(tmp_path: Path) -> None:
    store = ChunkStore(str(tmp_path), refresh_after_rows=10_000, refresh_after_writes=10_000)
    store.replace_source(LIB, "src1", rows(["indexed albatross"]), dim=DIM)
    assert store.ensure_indexes(LIB, vector_index_min_rows=10**9).unindexed_rows == 0
    store.replace_source(LIB, "src2", rows(["late cormorant"], seed=5), dim=DIM)
    assert lance_table(tmp_path).index_stats("search_text_idx").num_unindexed_rows == 1
    assert ids(store.search(LIB, query_text="cormorant", query_vector=None, mode="keyword", limit=5)) == ["src2:0"]
    assert ids(store.search(LIB, query_text="albatross", query_vector=None, mode="keyword", limit=5)) == ["src1:0"]


def test_writes_refresh_the_full_text_index_past_the_threshold(tmp_path: Path) -> None:
    store = ChunkStore(str(tmp_path), refresh_after_rows=5, refresh_after_writes=10_000)
    store.replace_source(LIB, "src1", rows(["a b", "c d", "e f"]), dim=DIM)
    assert lance_table(tmp_path).index_stats("search_text_idx").num_unindexed_rows == 3
    store.replace_source(LIB, "src2", rows(["g h", "i j", "k l"], seed=5), dim=DIM)
    assert lance_table(tmp_path).index_stats("search_text_idx").num_unindexed_rows == 0


def test_ensure_indexes_builds_a_vector_index_over_the_threshold(tmp_path: Path) -> None:
    store = ChunkStore(str(tmp_path))
    assert not store.needs_vector_index(LIB, 300)  # no table yet
    store.replace_source(LIB, "bulk", rows([f"filler {i}" for i in range(299)], seed=1000), dim=DIM)
    assert not store.needs_vector_index(LIB, 300)
    assert store.ensure_indexes(LIB, vector_index_min_rows=300).vector_index is None
    store.replace_source(LIB, "needle", rows(["needle"], seed=77), dim=DIM)
    assert store.needs_vector_index(LIB, 300)
    state = store.ensure_indexes(LIB, vector_index_min_rows=300)
    assert not store.needs_vector_index(LIB, 300)
    assert (state.rows, state.vector_index, state.unindexed_rows) == (300, "IVF_FLAT", 0)
    assert ids(store.search(LIB, query_text="", query_vector=near(77), mode="vector", limit=1)) == ["needle:0"]
    store.replace_source(LIB, "late", rows(["late"], seed=88), dim=DIM)  # not in the vector index yet
    assert ids(store.search(LIB, query_text="", query_vector=near(88), mode="vector", limit=1)) == ["late:0"]


# --- errors -----------------------------------------------------------------------------------------


def test_wrong_vector_dimensions_are_refused(store: ChunkStore) -> None:
    store.replace_source(LIB, "src1", rows(["a"]), dim=DIM)
    four_d = [ChunkRow(chunk_index=0, text="b", vector=[0.1] * 4, workspace_id="w")]
    with pytest.raises(StorageError) as err:
        store.replace_source(LIB, "src2", four_d, dim=4)  # the library holds 8-d vectors
    assert err.value.code == "vector_dimension_mismatch"
    with pytest.raises(StorageError) as err:
        store.replace_source(LIB, "src2", four_d, dim=DIM)  # the rows do not match the dim they claim
    assert err.value.code == "vector_dimension_mismatch"
    with pytest.raises(InvalidRequest) as bad_query:
        store.search(LIB, query_text="a", query_vector=[0.1] * 4, mode="vector", limit=3)
    assert bad_query.value.code == "vector_dimension_mismatch"
    assert store.count(LIB) == 1


def test_invalid_search_requests_are_refused(store: ChunkStore) -> None:
    for kwargs, code in [
        ({"mode": "semantic", "query_vector": unit(0)}, "invalid_mode"),
        ({"mode": "hybrid", "query_vector": None}, "query_vector_required"),
        ({"mode": "vector", "query_vector": unit(0), "limit": 0}, "invalid_limit"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            store.search(LIB, query_text="a", **{"limit": 5, **kwargs})
        assert err.value.code == code


def test_duplicate_chunk_indexes_are_refused(store: ChunkStore) -> None:
    dup = [ChunkRow(chunk_index=0, text=t, vector=unit(0), workspace_id="w") for t in ("a", "b")]
    with pytest.raises(StorageError) as err:
        store.replace_source(LIB, "src1", dup, dim=DIM)
    assert err.value.code == "duplicate_chunk_index"


def test_lancedb_failures_become_storage_errors(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    store = ChunkStore(str(not_a_directory))
    with pytest.raises(StorageError) as err:
        store.replace_source(LIB, "src1", rows(["a"]), dim=DIM)
    assert err.value.code == "chunk_store_failed"
    assert err.value.message.startswith("The chunk store could not store the chunks of source src1:")


def test_a_table_made_before_an_index_was_added_gets_it_at_its_next_write(tmp_path: Path) -> None:
    ChunkStore(str(tmp_path)).replace_source(LIB, "old", rows(["written by an older version"]), dim=DIM)
    lance_table(tmp_path).drop_index("text_hash_idx")
    ChunkStore(str(tmp_path)).replace_source(LIB, "new", rows(["written now"], seed=3), dim=DIM)  # as a new process
    assert {"search_text_idx", "source_id_idx", "external_id_idx", "text_hash_idx", "tags_idx"} <= {
        index.name for index in lance_table(tmp_path).list_indices()
    }


def test_the_embedding_cache_holds_only_the_texts_of_stored_chunks(store: ChunkStore) -> None:
    from storage.chunks import text_hash

    def cached(*texts: str) -> set[str]:
        found = store.vectors_by_text_hash(LIB, [text_hash(t) for t in texts])
        return {t for t in texts if text_hash(t) in found}

    store.replace_source(LIB, "v1", rows(["kept paragraph", "old paragraph"], seed=1), external_id="doc", dim=DIM)
    found = store.vectors_by_text_hash(LIB, [text_hash("kept paragraph")])
    np.testing.assert_array_equal(found[text_hash("kept paragraph")], unit(1))
    store.replace_source(LIB, "v2", rows(["kept paragraph", "new paragraph"], seed=1), external_id="doc", dim=DIM)
    assert cached("kept paragraph", "old paragraph", "new paragraph") == {"kept paragraph", "new paragraph"}
    store.replace_source(LIB, "other", rows(["kept paragraph"], seed=1), dim=DIM)
    store.delete_source(LIB, "v2")
    assert cached("kept paragraph", "new paragraph") == {"kept paragraph"}  # still stored by "other"
    store.delete_source(LIB, "other")
    assert cached("kept paragraph", "old paragraph", "new paragraph") == set()
    assert store.count(LIB) == 0


def test_a_table_made_before_the_context_header_gains_its_columns_and_keeps_its_cache(tmp_path: Path) -> None:
    from lancedb.index import FTS

    from storage.chunk_records import INDEXED_TEXT_FIELDS, chunk_schema, rows_to_arrow

    old_columns = [f.name for f in chunk_schema(DIM) if f not in INDEXED_TEXT_FIELDS]
    data = rows_to_arrow(rows(["the old kestrel row"]), library_id=LIB, source_id="old", external_id=None, dim=DIM)
    data = data.select(old_columns)
    table = lancedb.connect(str(tmp_path)).create_table(f"chunks_{LIB}", data=data)
    table.create_index("text", config=FTS(), name="text_idx")

    store = ChunkStore(str(tmp_path))
    hits = store.search(LIB, query_text="kestrel", query_vector=None, mode="keyword", limit=5)
    assert ids(hits) == ["old:0"]
    assert hits[0].text == "the old kestrel row"
    assert set(store.vectors_by_text_hash(LIB, [text_hash("the old kestrel row")])) == {text_hash("the old kestrel row")}
    store.replace_source(LIB, "new", [ChunkRow(0, "a new kestrel row", unit(3), "ws1", context="Birds")], dim=DIM)
    assert sorted(ids(store.search(LIB, query_text="birds", query_vector=None, mode="keyword", limit=5))) == ["new:0"]
    names = {index.name for index in lance_table(tmp_path).list_indices()}
    assert "search_text_idx" in names and "text_idx" not in names


# --- re-tagging, library listings, replacing another source ----------------------------------------


def test_retag_source_changes_title_metadata_and_tags_but_not_texts_or_vectors(store: ChunkStore, tmp_path: Path) -> None:
    old_source = {"team": "docs", "draft": True}
    store.replace_source(
        LIB, "src", rows(["first piece", "second piece"], source_metadata=old_source, metadata={"row_start": 1}, title="Old"),
        dim=DIM,
    )
    store.replace_source(LIB, "other", rows(["unrelated"], seed=5, source_metadata={"team": "docs"}), dim=DIM)
    vectors_before = lance_table(tmp_path).search().where("source_id = 'src'").to_arrow()["vector"].to_pylist()
    version = lance_table(tmp_path).version

    changed = store.retag_source(LIB, "src", title="New", metadata_before=old_source, metadata_after={"team": "oceans"})

    assert changed == 2 and lance_table(tmp_path).version == version + 1  # one commit
    listed = store.list_chunks(LIB, "src")
    assert [(c.text, c.title) for c in listed] == [("first piece", "New"), ("second piece", "New")]
    assert listed[0].metadata["team"] == "oceans" and "draft" not in listed[0].metadata
    assert listed[0].metadata["row_start"] == 1  # the chunk's own metadata stays
    assert lance_table(tmp_path).search().where("source_id = 'src'").to_arrow()["vector"].to_pylist() == vectors_before

    def found(metadata) -> set[str]:
        hits = store.search(LIB, query_text="", query_vector=unit(0), mode="vector", limit=10, metadata=metadata)
        return {h.source_id for h in hits}

    assert found({"team": "oceans"}) == {"src"} and found({"team": "docs"}) == {"other"} and found({"draft": True}) == set()
    assert found({"row_start": 1}) == {"src"}
    assert store.retag_source(LIB, "missing", title=None, metadata_before={}, metadata_after={}) == 0


def test_a_library_lists_all_its_chunks_by_source_then_position(store: ChunkStore) -> None:
    store.replace_source(LIB, "b-src", rows(["b0", "b1"]), dim=DIM)
    store.replace_source(LIB, "a-src", rows(["a0", "a1", "a2"], seed=3), dim=DIM)
    assert [c.text for c in store.list_chunks(LIB, None)] == ["a0", "a1", "a2", "b0", "b1"]
    assert [c.text for c in store.list_chunks(LIB, None, offset=2, limit=2)] == ["a2", "b0"]
    assert store.list_chunks("never-written", None) == []


def test_a_source_replaces_another_named_source_in_the_same_commit(store: ChunkStore, tmp_path: Path) -> None:
    store.replace_source(LIB, "v1", rows(["old guide"]), dim=DIM)
    store.replace_source(LIB, "keep", rows(["other file"], seed=4), dim=DIM)
    version = lance_table(tmp_path).version
    store.replace_source(LIB, "v2", rows(["new guide"], seed=8), dim=DIM, replaces=["v1"])
    assert lance_table(tmp_path).version == version + 1
    assert store.list_chunks(LIB, "v1") == [] and [c.text for c in store.list_chunks(LIB, "v2")] == ["new guide"]
    assert [c.text for c in store.list_chunks(LIB, "keep")] == ["other file"]
