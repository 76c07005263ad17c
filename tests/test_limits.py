"""Bounded input and rate limits, through the real API on loopback: what an attacker tries is refused
in the envelope (never 500), and what a client needs to pace itself is on every answer."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from api.body_size import BodySizeLimit
from gristmill.errors import InvalidRequest
from gristmill.metadata import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_METADATA_KEYS, check_metadata, metadata_from_json
from gristmill.settings import Settings
from tests.conftest import LocalApi, require_redis, serve_local_api

# Gristmill's own database on both backends (tests/conftest.py: database_backend).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"down": value}
    return value


def rate_headers(answer: httpx.Response) -> tuple[int, int, int]:
    return (int(answer.headers["X-RateLimit-Limit"]), int(answer.headers["X-RateLimit-Remaining"]), int(answer.headers["X-RateLimit-Reset"]))


# --- rate limits -----------------------------------------------------------------------------------


def test_writes_are_limited_per_key_with_headers_on_every_answer_and_429_in_the_envelope(
    gristmill_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_local_api(monkeypatch, GRISTMILL_RATE_LIMIT_WRITES="3/minute", GRISTMILL_RATE_LIMIT_SEARCHES="2/minute") as api:
        with api.client() as client:
            before = time.time()
            created = client.post("/v1/libraries", json={"name": "paced"})
            assert created.status_code == 201
            limit, remaining, reset = rate_headers(created)
            assert (limit, remaining) == (3, 2) and before + 59 <= reset <= time.time() + 61
            missing = client.post("/v1/libraries/no-such-library/ingest", json={"content": "a"})
            assert missing.status_code == 404 and rate_headers(missing)[1] == 1  # an error answer counts, and says so
            invalid = client.post("/v1/libraries", json={"name": ""})
            assert invalid.status_code == 422 and rate_headers(invalid)[1] == 0

            refused = client.post(f"/v1/libraries/{created.json()['id']}/ingest", json={"content": "one more"})
            assert refused.status_code == 429
            assert refused.json()["error"]["type"] == "rate_limit_error" and refused.json()["error"]["code"] == "rate_limited"
            assert refused.json()["error"]["details"]["limit"] == 3
            assert 55 <= int(refused.headers["Retry-After"]) <= 60
            assert rate_headers(refused)[:2] == (3, 0)
            assert client.get("/v1/libraries").json()["data"][0]["source_count"] == 0  # refused before anything was stored

            # Reads are not limited and carry no quota; searches have their own budget.
            listed = client.get("/v1/libraries")
            assert listed.status_code == 200 and "X-RateLimit-Limit" not in listed.headers
            library_id = created.json()["id"]
            keyword = {"query": "anything", "mode": "keyword"}
            assert [client.post(f"/v1/libraries/{library_id}/search", json=keyword).status_code for _ in range(3)] == [200, 200, 429]

        with api.client(_key(["ingest.read", "ingest.write"])) as other:  # another key has its own budget
            answer = other.post("/v1/libraries", json={"name": "theirs"})
            assert answer.status_code == 201 and rate_headers(answer)[1] == 2


def test_a_shared_redis_store_counts_across_api_processes(gristmill_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_url = require_redis()
    env = {"GRISTMILL_RATE_LIMIT_WRITES": "2/minute", "GRISTMILL_RATE_LIMIT_STORAGE_URI": redis_url}
    with serve_local_api(monkeypatch, **env) as first:
        from api.app import create_app
        from tests.embedder import serve_app

        with serve_app(create_app(reconcile=False)) as second_url, first.client() as one:
            two = httpx.Client(base_url=second_url, headers={"Authorization": f"Bearer {first.admin_key}"})
            assert one.post("/v1/libraries", json={"name": f"r-{uuid.uuid4()}"}).status_code == 201
            assert two.post("/v1/libraries", json={"name": f"r-{uuid.uuid4()}"}).status_code == 201
            refused = one.post("/v1/libraries", json={"name": f"r-{uuid.uuid4()}"})
            assert refused.status_code == 429, "the second process's write was not counted by the first"
            two.close()


def test_a_bad_rate_limit_setting_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="is not a rate limit"):
        Settings(rate_limit_writes="sixty a minute")


# --- request bodies ----------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_while_read(gristmill_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GRISTMILL_MAX_REQUEST_BYTES": "100000", "GRISTMILL_MAX_UPLOAD_REQUEST_BYTES": "300000"}
    with serve_local_api(monkeypatch, **env) as api, api.client() as client:
        library_id = client.post("/v1/libraries", json={"name": "bodies"}).json()["id"]
        declared = client.post(f"/v1/libraries/{library_id}/ingest", json={"content": "x" * 200_000})
        assert declared.status_code == 413
        assert declared.json()["error"] == {
            "type": "payload_too_large",
            "code": "request_too_large",
            "message": "a request body may be at most 100,000 bytes (GRISTMILL_MAX_REQUEST_BYTES)",
            "details": {"limit": 100000},
        }

        def chunks():
            yield b'{"content": "'
            for _ in range(50):
                yield b"y" * 10_000

        chunked = client.post(f"/v1/libraries/{library_id}/ingest", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"

        # Uploads have their own limit: 150 KB passes it although it is over the JSON limit.
        upload = client.post(f"/v1/libraries/{library_id}/files", files={"file": ("notes.txt", b"word " * 30_000, "text/plain")})
        assert upload.status_code == 202, upload.text
        too_big = client.post(f"/v1/libraries/{library_id}/files", files={"file": ("big.txt", b"word " * 70_000, "text/plain")})
        assert too_big.status_code == 413 and "GRISTMILL_MAX_UPLOAD_REQUEST_BYTES" in too_big.json()["error"]["message"]
        assert len(client.get(f"/v1/libraries/{library_id}/sources").json()["data"]) == 1


def test_the_app_never_reads_past_the_limit() -> None:
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    chunks = [{"type": "http.request", "body": b"z" * 1000, "more_body": True} for _ in range(20)]
    chunks.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    guarded = BodySizeLimit(app, Settings(max_request_bytes=4500))
    asyncio.run(guarded({"type": "http", "headers": [(b"content-type", b"application/json")]}, receive, send))
    assert sum(seen) <= 4500  # the chunk that crossed the limit never reached the app
    assert sent[0]["status"] == 413 and not chunks  # the rest was read and thrown away before answering


# --- metadata, names, pagination ---------------------------------------------------------------------


def test_metadata_limits_name_the_limit() -> None:
    assert check_metadata(nested(MAX_METADATA_DEPTH)) == nested(MAX_METADATA_DEPTH)
    cases = {
        "metadata_too_deep": nested(MAX_METADATA_DEPTH + 1),
        "metadata_too_many_keys": {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)},
        "metadata_too_large": {"text": "x" * MAX_METADATA_BYTES},
        "control_characters": {"bad\x00key": 1},
        "invalid_metadata": ["not", "an", "object"],
    }
    for code, value in cases.items():
        with pytest.raises(InvalidRequest) as refused:
            check_metadata(value)
        assert refused.value.code == code
    with pytest.raises(InvalidRequest) as deep_json:
        metadata_from_json("[" * 100_000, "--metadata")  # deeper than Python's parser goes
    assert deep_json.value.code == "metadata_too_deep" and deep_json.value.details["limit"] == MAX_METADATA_DEPTH


def test_metadata_nul_and_pagination_are_refused_with_422_and_nothing_is_stored(local_api: LocalApi) -> None:
    with local_api.client() as client:
        deep = client.post("/v1/libraries", json={"name": "deep", "metadata": nested(300)})
        assert deep.status_code == 422 and f"deeper than {MAX_METADATA_DEPTH} levels" in deep.json()["error"]["message"]
        library_id = client.post("/v1/libraries", json={"name": "ok"}).json()["id"]
        patched = client.patch(f"/v1/libraries/{library_id}", json={"metadata": nested(9)})
        assert patched.status_code == 422
        for field, value in (("title", "a\x00b"), ("external_id", "id\x1f"), ("content_type", "text/plain\x7f")):
            answer = client.post(f"/v1/libraries/{library_id}/ingest", json={"content": "text", field: value})
            assert answer.status_code == 422, (field, answer.text)
            assert "control character" in answer.json()["error"]["message"]
        named = client.post("/v1/libraries", json={"name": "tab\there"})
        assert named.status_code == 422
        form = client.post(
            f"/v1/libraries/{library_id}/files",
            files={"file": ("a.txt", b"some text", "text/plain")},
            data={"metadata": json.dumps(nested(20))},
        )
        assert form.status_code == 422 and form.json()["error"]["code"] == "metadata_too_deep"
        assert form.json()["error"]["details"] == {"field": "metadata", "limit": MAX_METADATA_DEPTH}
        nul_title = client.post(
            f"/v1/libraries/{library_id}/files", files={"file": ("a.txt", b"some text", "text/plain")}, data={"title": "x\x00"}
        )
        assert nul_title.status_code == 422

        assert [lib["name"] for lib in client.get("/v1/libraries").json()["data"]] == ["ok"]
        assert client.get(f"/v1/libraries/{library_id}/sources").json()["data"] == []

        pages = client.get("/v1/jobs", params={"page": 461168601842738792})
        assert pages.status_code == 422 and pages.json()["error"]["code"] == "validation_failed"
        source_id = client.post(f"/v1/libraries/{library_id}/ingest", json={"content": "a note"}).json()["source_ids"][0]
        offset = client.get(f"/v1/sources/{source_id}/chunks", params={"offset": 4294967296})
        assert offset.status_code == 422
        assert client.get(f"/v1/sources/{source_id}/chunks", params={"offset": 1_000_000}).status_code == 200


def test_the_cli_refuses_metadata_over_the_limits(gristmill_home: Path, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    done = subprocess.run(
        [sys.executable, "-m", "gristmill.cli", "ingest", str(note), "--library", "x", "--metadata", json.dumps(nested(12))],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )
    assert done.returncode == 1
    assert f"--metadata is nested deeper than {MAX_METADATA_DEPTH} levels (metadata_too_deep)" in done.stderr


def _key(scopes: list[str]) -> str:
    from gristmill.settings import get_settings
    from storage.db import session_scope
    from storage.keys import create_key
    from storage.repository import ensure_workspace

    with session_scope(get_settings().resolved_database_url) as session:
        return create_key(session, ensure_workspace(session), scopes)[0]
