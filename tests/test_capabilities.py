"""What users of the five seed services expect, each in Gristmill's one way, through the running service."""

import threading

import httpx
import pytest

from tests.http_server import LoopbackServer
from tests.running_service import (
    SECOND_MODEL,
    SECOND_MODEL_DIMENSIONS,
    Service,
    create_library,
    ingest,
    search,
    wait_for_job,
)

pytestmark = pytest.mark.slow

LONG_NOTE = "\n\n".join(
    f"Paragraph {i} of the harbour manual explains how crane {i} is oiled, tested and certified before winter."
    for i in range(12)
)


def error_of(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


# --- libraries: models, listing, bulk upsert, reindex ----------------------------------------------


def test_a_library_names_its_model_and_says_whether_it_is_compatible(service: Service) -> None:
    with service.client() as client:
        models = client.get("/v1/embedding-models").json()["data"]
        assert {(m["name"], m["dimensions"], m["default"]) for m in models} == {
            ("all-MiniLM-L6-v2", 384, True), (SECOND_MODEL, SECOND_MODEL_DIMENSIONS, False),
        }
        default = create_library(client, "models-default")
        other = create_library(client, "models-other", embedding_model=SECOND_MODEL, chunking={"max_tokens": 400})
        assert (default["embedding_model"], default["embedding_dim"], default["compatible"]) == ("all-MiniLM-L6-v2", 384, True)
        assert (other["embedding_model"], other["embedding_dim"], other["compatible"]) == (SECOND_MODEL, 64, False)
        assert other["chunking"]["max_tokens"] == 400  # the second model reads 512 tokens

        unknown = error_of(client.post("/v1/libraries", json={"name": "m3", "embedding_model": "text-embedding-3-small"}), 422)
        assert unknown["code"] == "unknown_embedding_model" and unknown["details"]["known"] == sorted(m["name"] for m in models)
        too_big = error_of(client.post("/v1/libraries", json={"name": "m4", "chunking": {"max_tokens": 400}}), 422)
        assert too_big["code"] == "chunk_too_large" and "all-MiniLM-L6-v2 reads at most 256 tokens" in too_big["message"]
        letta = error_of(client.post("/v1/libraries", json={"name": "m5", "embedding": "openai/text-embedding-3-small"}), 422)
        assert letta["message"] == "embedding: unknown field (here: embedding_model)"

        job = ingest(client, other["id"], {"content": "Herons stand still in shallow water to catch fish."})
        assert wait_for_job(client, job["job_id"])["status"] == "completed"
        hits = search(client, other["id"], "heron fish shallow water", mode="vector")
        assert [h["source_id"] for h in hits] == job["source_ids"]  # embedded and searched with the library's model
        changed = error_of(client.patch(f"/v1/libraries/{other['id']}", json={"embedding_model": "all-MiniLM-L6-v2"}), 409)
        assert changed["code"] == "embedding_model_in_use" and f"/v1/libraries/{other['id']}/reindex" in changed["message"]


def test_libraries_are_listed_by_page_name_and_order(service: Service) -> None:
    with service.client() as client:
        made = [create_library(client, name, instructions=f"use {name} for support")
                for name in ("supp-alpha", "supp-beta", "Supp-gamma", "sales")]
        first = client.get("/v1/libraries", params={"limit": 1, "name": "supp"}).json()
        assert [lib["name"] for lib in first["data"]] == ["supp-alpha"] and first["has_more"] is True
        assert first["data"][0]["instructions"] == "use supp-alpha for support"
        rest = client.get("/v1/libraries", params={"name": "SUPP", "after": first["data"][0]["id"]}).json()
        assert [lib["name"] for lib in rest["data"]] == ["supp-beta", "Supp-gamma"] and rest["has_more"] is False
        newest = client.get("/v1/libraries", params={"name": "supp", "ascending": "false", "limit": 2}).json()
        assert [lib["name"] for lib in newest["data"]] == ["Supp-gamma", "supp-beta"]
        older = client.get("/v1/libraries", params={"name": "supp", "before": made[1]["id"]}).json()
        assert [lib["name"] for lib in older["data"]] == ["supp-alpha"]
        assert client.get("/v1/libraries/by-name/sales").json()["id"] == made[3]["id"]
        assert error_of(client.get("/v1/libraries/by-name/sale"), 404)["code"] == "library_not_found"
        assert error_of(client.get("/v1/libraries", params={"after": "nope"}), 422)["code"] == "invalid_cursor"


def test_libraries_are_upserted_by_name_in_one_transaction(service: Service) -> None:
    with service.client() as client:
        existing = create_library(client, "bulk-existing", description="old", metadata={"team": "docs"})
        answer = client.post("/v1/libraries/bulk", json={"libraries": [
            {"name": "bulk-existing", "description": "new", "instructions": "answer politely"},
            {"name": "bulk-new", "embedding_model": SECOND_MODEL},
        ]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["created"], body["updated"]) == (1, 1)
        updated, created = body["data"]
        assert updated["id"] == existing["id"] and updated["metadata"] == {"team": "docs"}
        assert (updated["description"], updated["instructions"]) == ("new", "answer politely")
        assert (created["name"], created["embedding_model"]) == ("bulk-new", SECOND_MODEL)

        refused = client.post("/v1/libraries/bulk", json={"libraries": [
            {"name": "bulk-never", "description": "would be created"},
            {"name": "bulk-existing", "embedding_model": SECOND_MODEL},
        ]})
        assert error_of(refused, 409)["code"] == "embedding_model_in_use"
        assert client.get("/v1/libraries/by-name/bulk-never").status_code == 404  # all or nothing
        twice = client.post("/v1/libraries/bulk", json={"libraries": [{"name": "a"}, {"name": "a"}]})
        assert error_of(twice, 422)["code"] == "duplicate_name"


def test_a_reindex_to_another_model_switches_once_every_source_is_in_and_search_answers_throughout(service: Service) -> None:
    with service.client() as client:
        library = create_library(client, "reindex-model")
        lib = library["id"]
        job = ingest(client, lib, {"items": [
            {"content": LONG_NOTE, "content_type": "markdown", "title": "cranes"},
            {"content": "Lighthouses warn ships away from the rocks at night.", "external_id": "lighthouse"},
        ]})
        assert wait_for_job(client, job["job_id"])["status"] == "completed"
        before = client.get(f"/v1/libraries/{lib}").json()

        answers: list[int] = []
        stop = threading.Event()

        def keep_searching() -> None:
            with service.client() as searcher:
                while not stop.is_set():
                    found = searcher.post(f"/v1/libraries/{lib}/search", json={"query": "lighthouse ships rocks"})
                    answers.append(len(found.json()["results"]) if found.status_code == 200 else -found.status_code)

        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        try:
            started = client.post(f"/v1/libraries/{lib}/reindex", json={"embedding_model": SECOND_MODEL})
            assert started.status_code == 202, started.text
            reindex = started.json()
            assert reindex["kind"] == "reindex"
            busy = error_of(client.post(f"/v1/libraries/{lib}/ingest", json={"content": "a new note"}), 409)
            assert busy["code"] == "library_reindexing" and busy["details"]["job_id"] == reindex["id"]
            done = wait_for_job(client, reindex["id"])
        finally:
            stop.set()
            searcher.join()
        assert done["status"] == "completed", done
        assert done["counts"]["completed"] == 2 and done["progress"] == {"current": 2, "total": 2}
        assert answers and all(n > 0 for n in answers), answers  # never an error, never empty
        after = client.get(f"/v1/libraries/{lib}").json()
        assert (after["embedding_model"], after["embedding_dim"], after["compatible"]) == (SECOND_MODEL, 64, False)
        assert after["chunk_count"] == before["chunk_count"]
        assert search(client, lib, "lighthouse ships rocks", mode="vector")[0]["text"].startswith("Lighthouses")
        assert ingest(client, lib, {"content": "Gulls follow the fishing boats home."})["queued"] == 1


def test_a_reindex_applies_new_chunking_in_place(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "reindex-chunking")["id"]
        job = ingest(client, lib, {"content": LONG_NOTE, "content_type": "markdown"})
        wait_for_job(client, job["job_id"])
        source_id = job["source_ids"][0]
        chunks_before = client.get(f"/v1/sources/{source_id}").json()["chunk_count"]
        patched = client.patch(f"/v1/libraries/{lib}", json={"chunking": {"max_tokens": 24, "overlap_tokens": 4}})
        assert patched.status_code == 200, patched.text
        done = wait_for_job(client, client.post(f"/v1/libraries/{lib}/reindex").json()["id"])
        assert done["status"] == "completed" and done["counts"]["completed"] == 1
        source = client.get(f"/v1/sources/{source_id}").json()
        assert source["chunk_count"] > chunks_before
        listed = client.get(f"/v1/sources/{source_id}/chunks", params={"limit": 500}).json()
        assert listed["total"] == source["chunk_count"] and all(len(c["text"].split()) <= 30 for c in listed["data"])
        assert client.get(f"/v1/libraries/{lib}").json()["embedding_model"] == "all-MiniLM-L6-v2"


# --- ingest: fields, answers, duplicates --------------------------------------------------------------


def test_items_carry_memory_fields_and_search_filters_on_them(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "memory")["id"]
        answer = ingest(client, lib, {"items": [
            {"content": "# Budget\n\nThe finance team approved the travel budget for the third quarter.",
             "content_type": "markdown", "role": "user", "user_id": "u1", "agent_id": "a1",
             "categories": ["finance", "travel"], "metadata": {"team": "ops"}},
            {"content": "The assistant suggested booking trains instead of flights for the travel.",
             "content_type": "TEXT", "role": "assistant", "user_id": "u2", "categories": ["travel"]},
            {"url": "http://10.0.0.1/private"},
        ]})
        assert (answer["queued"], answer["failed"], answer["total"]) == (2, 1, 3)
        assert [r["status"] for r in answer["results"]] == ["queued", "queued", "error"]
        wait_for_job(client, answer["job_id"])
        budget, trains = answer["source_ids"]
        source = client.get(f"/v1/sources/{budget}").json()
        assert (source["user_id"], source["agent_id"], source["role"], source["categories"]) == ("u1", "a1", "user", ["finance", "travel"])
        assert source["content_format"] == "markdown"

        def found(**filter) -> list[str]:
            return [h["source_id"] for h in search(client, lib, "travel budget trains", filter=filter)]

        assert found(user_id="u1") == [budget]
        assert found(user_id="u1", categories=["finance"]) == [budget]
        assert sorted(found(categories=["travel", "nothing"])) == sorted([budget, trains])
        assert found(role=["assistant", "system"]) == [trains]
        assert found(metadata={"team": ["ops", "sales"]}) == [budget]
        assert found(categories=[]) == []
        hit = search(client, lib, "finance budget", filter={"agent_id": "a1"})[0]
        assert hit["metadata"]["user_id"] == "u1" and hit["metadata"]["categories"] == ["finance", "travel"]
        reserved = error_of(client.post(f"/v1/libraries/{lib}/search", json={"query": "x", "filter": {"metadata": {"user_id": "u1"}}}), 422)
        assert reserved["code"] == "invalid_filter"
        in_metadata = error_of(client.post(f"/v1/libraries/{lib}/ingest", json={"content": "y", "metadata": {"role": "user"}}), 422)
        assert in_metadata["code"] == "reserved_metadata_key"


def test_validation_errors_name_the_field_and_the_cause(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "errors")["id"]

        def message(body: dict) -> str:
            return error_of(client.post(f"/v1/libraries/{lib}/ingest", json=body), 422)["message"]

        assert message({"content": "a", "meta": {"k": "v"}}) == "meta: unknown field (here: metadata)"
        assert message({"content": "a", "role": 3}) == "role: Input should be a valid string"
        assert message({"content": "a", "url": "http://127.0.0.1/x"}) == "body: give exactly one of 'content' or 'url'"
        assert message({"items": [{"content": "ok"}, {"url": "ftp://x.org/a"}]}).startswith("items[1].url: URL scheme should be")
        assert message({"items": []}) == "items: List should have at least 1 item after validation, not 0"
        assert message({"contentType": "text/plain", "content": "a"}) == "contentType: unknown field (here: content_type)"
        listed = error_of(client.get(f"/v1/libraries/{lib}/sources", params={"include_content": "true"}), 422)
        assert listed["message"].startswith("query parameter include_content: unknown parameter (here: include=content)")


def test_short_content_type_names_are_accepted(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "short-types")["id"]
        answer = ingest(client, lib, {"items": [
            {"content": "# Title\n\nSome *markdown* text.", "content_type": "markdown"},
            {"content": "<html><body><p>Some html text about owls.</p></body></html>", "content_type": "html"},
            {"content": '{"owl": "hoots"}', "content_type": "json"},
            {"content": "plain words", "content_type": "text"},
        ]})
        wait_for_job(client, answer["job_id"])
        formats = [client.get(f"/v1/sources/{s}").json()["content_format"] for s in answer["source_ids"]]
        assert formats == ["markdown", "html", "json", "text"]


def test_a_url_the_library_has_is_answered_with_its_source(service: Service, web: LoopbackServer) -> None:
    web.serve("/pricing.html", "<html><body><article><h1>Pricing</h1><p>The plan costs ten euros a month.</p></article></body></html>",
              content_type="text/html")
    with service.client() as client:
        lib = create_library(client, "urls")["id"]
        first = ingest(client, lib, {"url": web.url("/pricing.html"), "title": "Pricing"})
        again = ingest(client, lib, {"url": web.url("/pricing.html")}, expect=200)
        assert again["job_id"] is None and again["results"][0]["status"] == "existing"
        assert again["source_ids"] == first["source_ids"]
        wait_for_job(client, first["job_id"])
        hits = web.hits("/pricing.html")
        assert ingest(client, lib, {"items": [{"url": web.url("/pricing.html")}]}, expect=200)["results"][0]["status"] == "existing"
        upsert = ingest(client, lib, {"url": web.url("/pricing.html"), "external_id": web.url("/pricing.html")})
        assert upsert["results"][0]["status"] == "queued"  # an explicit external id is an upsert: fetched again
        assert wait_for_job(client, upsert["job_id"])["counts"]["duplicate"] == 1
        assert web.hits("/pricing.html") == hits + 1
        stored = client.get(f"/v1/libraries/{lib}/sources", params={"status": "completed"}).json()["data"]
        assert [s["id"] for s in stored] == first["source_ids"]


def test_uploads_follow_duplicate_handling_for_a_name_the_library_has(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "uploads")["id"]

        def upload(data: bytes, expect: int = 202, **params) -> dict:
            answer = client.post(f"/v1/libraries/{lib}/files", params=params, files={"file": ("guide.txt", data, "text/plain")})
            assert answer.status_code == expect, answer.text
            return answer.json()

        first = upload(b"Version one: the office opens at eight.")
        wait_for_job(client, first["job_id"])
        suffixed = upload(b"Version two: the office opens at nine.")  # the default, suffix
        wait_for_job(client, suffixed["job_id"])
        assert client.get(f"/v1/sources/{suffixed['source_ids'][0]}").json()["uri"] == "guide (1).txt"
        skipped = upload(b"Version three.", expect=200, duplicate_handling="skip")
        assert skipped["results"][0] == {**skipped["results"][0], "status": "existing", "source_id": first["source_ids"][0]}
        refused = client.post(f"/v1/libraries/{lib}/files", params={"duplicate_handling": "error"},
                              files={"file": ("guide.txt", b"Version three.", "text/plain")})
        assert error_of(refused, 409)["code"] == "file_exists"
        replaced = upload(b"Version three: the office opens at ten.", duplicate_handling="replace")
        assert wait_for_job(client, replaced["job_id"])["status"] == "completed"
        assert client.get(f"/v1/sources/{first['source_ids'][0]}").status_code == 404
        assert sorted(h["text"] for h in search(client, lib, "office opens", mode="keyword")) == [
            "Version three: the office opens at ten.", "Version two: the office opens at nine.",
        ]
        unchanged = upload(b"Version three: the office opens at ten.", duplicate_handling="replace")
        assert unchanged["results"][0]["status"] == "duplicate"  # an unchanged replace changes nothing
        named = upload(b"Some other words entirely.", name="renamed.txt")
        assert client.get(f"/v1/sources/{named['source_ids'][0]}").json()["uri"] == "renamed.txt"
        bad = client.post(f"/v1/libraries/{lib}/files", params={"duplicate_handling": "SUFFIXX"},
                          files={"file": ("x.txt", b"x", "text/plain")})
        assert error_of(bad, 422)["message"].startswith("query parameter duplicate_handling:")


def test_multipart_forms_take_a_url_and_memory_fields_and_refuse_unknown_ones(service: Service, web: LoopbackServer) -> None:
    web.serve("/report.html", "<html><body><article><p>Quarterly revenue grew by four percent.</p></article></body></html>",
              content_type="text/html")
    with service.client() as client:
        lib = create_library(client, "forms")["id"]
        by_url = client.post(f"/v1/libraries/{lib}/files", data={
            "url": web.url("/report.html"), "user_id": "user-123", "agent_id": "agent-7", "categories": "finance,reports",
        })
        assert by_url.status_code == 202, by_url.text
        wait_for_job(client, by_url.json()["job_id"])
        source = client.get(f"/v1/sources/{by_url.json()['source_ids'][0]}").json()
        assert (source["origin"], source["user_id"], source["agent_id"], source["categories"]) == (
            "url", "user-123", "agent-7", ["finance", "reports"])
        filed = client.post(f"/v1/libraries/{lib}/files", data={"content_type": "markdown", "role": "user"},
                            files={"file": ("notes", b"# Notes\n\nRevenue targets for next year.", "application/octet-stream")})
        assert filed.status_code == 202, filed.text
        wait_for_job(client, filed.json()["job_id"])
        assert client.get(f"/v1/sources/{filed.json()['source_ids'][0]}").json()["content_format"] == "markdown"
        assert [h["source_id"] for h in search(client, lib, "revenue", filter={"categories": ["reports"]})] == by_url.json()["source_ids"]

        for field, here in (("source_url", "url"), ("format", "content_type"), ("workspace_id", "the API key's workspace")):
            answer = client.post(f"/v1/libraries/{lib}/files", data={field: "x"}, files={"file": ("a.txt", b"a", "text/plain")})
            assert error_of(answer, 422)["message"] == f"{field}: unknown field (here: {here})"
        options = client.post(f"/v1/libraries/{lib}/files", data={"options": "{}"}, files={"file": ("a.txt", b"a", "text/plain")})
        assert error_of(options, 422)["message"].startswith("options: unknown field (here: the library's chunking")
        neither = client.post(f"/v1/libraries/{lib}/files", data={"user_id": "u"})
        assert error_of(neither, 422)["message"] == "body: give one or more 'file' fields, or a 'url'"


# --- sources: edit, delete, originals, lists, passages -------------------------------------------------


def test_a_source_is_edited_without_re_embedding_and_its_original_downloaded(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "edits")["id"]
        upload = client.post(f"/v1/libraries/{lib}/files", data={"metadata": '{"team": "docs", "draft": true}'},
                             files={"file": ("tides.md", b"# Tides\n\nSpring tides happen when the sun and moon align.", "text/markdown")})
        job = wait_for_job(client, upload.json()["job_id"])
        source_id = job["source_ids"][0]
        chunks_before = client.get(f"/v1/sources/{source_id}/chunks").json()

        patched = client.patch(f"/v1/sources/{source_id}", json={
            "title": "Tide tables", "metadata": {"team": "oceans", "draft": None}, "categories": ["nature"],
        })
        assert patched.status_code == 200, patched.text
        assert (patched.json()["title"], patched.json()["categories"]) == ("Tide tables", ["nature"])
        assert patched.json()["metadata"]["team"] == "oceans" and "draft" not in patched.json()["metadata"]
        [hit] = search(client, lib, "spring tides", filter={"metadata": {"team": "oceans"}, "categories": ["nature"]})
        assert hit["title"] == "Tide tables" and "draft" not in hit["metadata"]
        assert search(client, lib, "spring tides", filter={"metadata": {"team": "docs"}}) == []
        chunks_after = client.get(f"/v1/sources/{source_id}/chunks").json()
        assert [(c["chunk_id"], c["text"]) for c in chunks_after["data"]] == [(c["chunk_id"], c["text"]) for c in chunks_before["data"]]
        assert error_of(client.patch(f"/v1/sources/{source_id}", json={"name": "x"}), 422)["message"] == "name: unknown field (here: title)"

        original = client.get(f"/v1/sources/{source_id}/original")
        assert original.status_code == 200
        assert original.content == b"# Tides\n\nSpring tides happen when the sun and moon align."
        assert original.headers["content-type"].startswith("text/markdown")
        assert original.headers["content-disposition"] == "attachment; filename*=UTF-8''tides.md"


def test_sources_are_deleted_by_external_id(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "delete-by-id")["id"]
        job = ingest(client, lib, {"items": [
            {"content": "Slack thread about the offsite in Lisbon.", "external_id": "slack-C1-2026-05-27"},
            {"content": "Slack thread about the budget review.", "external_id": "slack-C1-2026-05-28"},
        ]})
        wait_for_job(client, job["job_id"])
        assert client.delete(f"/v1/libraries/{lib}/sources", params={"external_id": "slack-C1-2026-05-27"}).status_code == 204
        assert client.get(f"/v1/sources/{job['source_ids'][0]}").status_code == 404
        assert [h["text"] for h in search(client, lib, "slack thread", mode="keyword")] == ["Slack thread about the budget review."]
        again = client.delete(f"/v1/libraries/{lib}/sources", params={"external_id": "slack-C1-2026-05-27"})
        assert error_of(again, 404)["code"] == "source_not_found"
        assert error_of(client.delete(f"/v1/libraries/{lib}/sources"), 422)["message"] == "query parameter external_id: required"


def test_source_lists_include_content_and_the_library_lists_its_passages(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "passages")["id"]
        job = ingest(client, lib, {"items": [{"content": LONG_NOTE, "content_type": "markdown"}, {"content": "A short note."}]})
        wait_for_job(client, job["job_id"])
        listed = client.get(f"/v1/libraries/{lib}/sources", params={"include": "content"}).json()["data"]
        assert [s["content"] for s in listed][1] == "A short note." and listed[0]["content"].startswith("Paragraph 0")
        assert all(s["content"] is None for s in client.get(f"/v1/libraries/{lib}/sources").json()["data"])
        passages = client.get(f"/v1/libraries/{lib}/chunks", params={"limit": 500}).json()
        counts = [client.get(f"/v1/sources/{s}").json()["chunk_count"] for s in job["source_ids"]]
        assert passages["total"] == sum(counts) == len(passages["data"])
        assert {p["source_id"] for p in passages["data"]} == set(job["source_ids"])
        page = client.get(f"/v1/libraries/{lib}/chunks", params={"offset": 1, "limit": 1}).json()["data"]
        assert [p["chunk_id"] for p in page] == [passages["data"][1]["chunk_id"]]


def test_a_declared_full_set_removes_the_sources_it_leaves_out(service: Service) -> None:
    with service.client() as client:
        lib = create_library(client, "full-set")["id"]
        job = ingest(client, lib, {"items": [
            {"content": "Channel one says hello.", "external_id": "slack-1"},
            {"content": "Channel two says goodbye.", "external_id": "slack-2"},
            {"content": "A document about ponies.", "external_id": "doc-1"},
        ]})
        wait_for_job(client, job["job_id"])
        slack_1, slack_2, doc_1 = job["source_ids"]
        started = client.post(f"/v1/libraries/{lib}/prune", json={"external_ids": ["slack-1"], "prefix": "slack-"})
        assert started.status_code == 202, started.text
        done = wait_for_job(client, started.json()["id"])
        assert (done["kind"], done["status"], done["counts"]["removed"], done["source_ids"]) == ("prune", "completed", 1, [slack_2])
        removed = client.get(f"/v1/sources/{slack_2}").json()
        assert removed["status"] == "removed" and "declared as the full set of external ids starting with 'slack-'" in removed["error"]
        assert [s["id"] for s in client.get(f"/v1/libraries/{lib}/sources").json()["data"]] == [slack_1, doc_1]
        assert [s["id"] for s in client.get(f"/v1/libraries/{lib}/sources", params={"status": "removed"}).json()["data"]] == [slack_2]
        assert {h["source_id"] for h in search(client, lib, "channel says", mode="keyword")} == {slack_1}

        whole = wait_for_job(client, client.post(f"/v1/libraries/{lib}/prune", json={"external_ids": ["doc-1"]}).json()["id"])
        assert whole["counts"]["removed"] == 1
        assert [s["id"] for s in client.get(f"/v1/libraries/{lib}/sources").json()["data"]] == [doc_1]
        library = client.get(f"/v1/libraries/{lib}").json()
        assert (library["source_count"], library["chunk_count"]) == (1, 1)
