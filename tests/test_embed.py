"""The embeddings client against real loopback servers, the server's routes, and the real model (slow)."""

import base64
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prefect.states import Failed

from gristmill.embeddings.precision import choose_precision
from gristmill.embeddings.server import build_app
from gristmill.errors import EmbeddingError, EmbeddingRejected
from gristmill.settings import Settings
from tasks.embed import EmbeddingsClient, embed_texts
from tasks.retries import retry_if_retryable
from tests.embedder import HashingEncoder, hashed_vector, serve_app, serve_test_embedder
from tests.http_server import LoopbackServer, Reply

TEXTS = [f"chunk number {i} about topic {i % 3}" for i in range(10)]


@pytest.fixture(scope="module")
def embedder() -> tuple[str, HashingEncoder]:
    encoder = HashingEncoder()
    with serve_test_embedder(encoder=encoder) as base_url:
        yield base_url, encoder


def openai_answer(vectors: list[list[float]], order: list[int] | None = None) -> bytes:
    order = order if order is not None else list(range(len(vectors)))
    data = [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order]
    return json.dumps({"object": "list", "data": data, "model": "m", "usage": {}}).encode()


def embed_error(base_url: str, texts: list[str] = ["a text"], **options) -> EmbeddingError:
    with EmbeddingsClient(base_url, "all-MiniLM-L6-v2", dimensions=384, **options) as client:
        with pytest.raises(EmbeddingError) as raised:
            client.embed(texts)
    return raised.value


# --- the client ---------------------------------------------------------------------------------


def test_client_batches_reports_progress_and_keeps_order(embedder):
    base_url, encoder = embedder
    encoder.calls.clear()
    progress: list[int] = []
    with EmbeddingsClient(base_url, "all-MiniLM-L6-v2", batch_size=4, dimensions=384) as client:
        vectors = client.embed(TEXTS, on_progress=progress.append)
    assert vectors.dtype == np.float32 and vectors.shape == (10, 384)
    assert progress == [4, 8, 10]
    assert encoder.calls == [4, 4, 2]
    np.testing.assert_array_equal(vectors, np.stack([hashed_vector(t) for t in TEXTS]))


def test_embed_texts_uses_the_settings(embedder):
    base_url, encoder = embedder
    encoder.calls.clear()
    progress: list[int] = []
    settings = Settings(embeddings_url=base_url, embed_batch_size=3, embedding_dim=384)
    vectors = embed_texts(TEXTS[:7], settings, on_progress=progress.append)
    assert vectors.shape == (7, 384)
    assert progress == [3, 6, 7] and encoder.calls == [3, 3, 1]
    # Texts sharing words are close: the test embedder is usable for search tests.
    assert vectors[0] @ vectors[3] > vectors[0] @ vectors[1]  # "topic 0" twice vs different topics


def test_embed_texts_keeps_one_connection_for_every_call_of_a_process():
    client_ports: list[int] = []
    app = build_app(lambda: HashingEncoder())

    @app.middleware("http")
    async def record_connection(request, call_next):
        client_ports.append(request.client.port)  # one client port per TCP connection
        return await call_next(request)

    with serve_app(app) as root:
        settings = Settings(embeddings_url=root + "/v1")
        for query in ("first query", "second query", "third query"):
            assert embed_texts([query], settings).shape == (1, 384)
    assert len(client_ports) == 3 and len(set(client_ports)) == 1


def test_no_texts_means_no_request(embedder):
    base_url, encoder = embedder
    encoder.calls.clear()
    with EmbeddingsClient(base_url, "m", dimensions=384) as client:
        vectors = client.embed([])
    assert vectors.shape == (0, 384) and encoder.calls == []


def test_answers_are_put_back_in_input_order_and_the_key_is_sent():
    with LoopbackServer() as server:
        # Vectors for the texts "0", "1", "2" returned last-first, as an API is allowed to.
        answer = openai_answer([[float(i)] * 384 for i in range(3)], order=[2, 0, 1])
        server.reply("/v1/embeddings", Reply(200, answer, content_type="application/json"))
        with EmbeddingsClient(server.url("/v1"), "text-embedding-3-small", api_key="sk-test", dimensions=384) as c:
            vectors = c.embed(["0", "1", "2"])
        [request] = server.requests
    assert vectors[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.body) == {"model": "text-embedding-3-small", "input": ["0", "1", "2"]}


# --- errors: what may pass is retryable, what would fail again is not ------------------------------


def test_a_stopped_server_is_unreachable_and_retryable():
    with serve_test_embedder() as base_url:
        pass
    error = embed_error(base_url)
    assert (error.code, error.retryable) == ("embeddings_unreachable", True)
    assert f"{base_url}/embeddings" in error.message


@pytest.mark.parametrize(
    ("reply", "code", "in_message"),
    [
        (Reply(500, b'{"error": {"message": "CUDA out of memory"}}'), "embeddings_unavailable", "CUDA out of memory"),
        (Reply(503, b"warming up"), "embeddings_unavailable", "failed with 503: warming up"),
        (Reply(429, b"slow down"), "embeddings_rate_limited", "rate limiting requests (429): slow down"),
    ],
)
def test_server_failures_are_retryable(reply, code, in_message):
    with LoopbackServer() as server:
        server.reply("/v1/embeddings", reply)
        error = embed_error(server.url("/v1"))
    assert type(error) is EmbeddingError
    assert (error.code, error.retryable) == (code, True)
    assert server.url("/v1/embeddings") in error.message and in_message in error.message
    assert error.details["status"] == reply.status


def test_rate_limit_keeps_retry_after():
    with LoopbackServer() as server:
        server.reply("/v1/embeddings", Reply(429, b"slow down", headers={"Retry-After": "7"}))
        assert embed_error(server.url("/v1")).details == {"status": 429, "retry_after": "7"}


def test_a_timeout_is_retryable():
    with LoopbackServer() as server:
        server.reply("/v1/embeddings", Reply(200, openai_answer([[0.0] * 384]), delay=2.0))
        error = embed_error(server.url("/v1"), timeout=0.3)
    assert (error.code, error.retryable) == ("embeddings_timeout", True)


@pytest.mark.parametrize(
    ("reply", "code", "in_message"),
    [
        (Reply(400, b'{"error": {"message": "input too long"}}'), "embedding_rejected", "input too long"),
        (Reply(401, b'{"error": "bad key"}'), "embedding_rejected", "GRISTMILL_EMBEDDINGS_API_KEY"),
        (Reply(200, b"<html>captive portal</html>"), "embedding_malformed", "not an embeddings"),
        (Reply(200, b'{"data": [{"index": 0}]}'), "embedding_malformed", "not an embeddings"),
        (Reply(200, openai_answer([[0.5] * 384])), "embedding_count_mismatch", "returned 1 vectors for 2 texts"),
        (Reply(200, openai_answer([[0.5] * 384, [0.5] * 10])), "embedding_malformed", "not an embeddings"),
    ],
)
def test_answers_that_would_fail_again_are_not_retryable(reply, code, in_message):
    with LoopbackServer() as server:
        server.reply("/v1/embeddings", reply)
        error = embed_error(server.url("/v1"), texts=["one", "two"])
    assert isinstance(error, EmbeddingRejected)
    assert (error.code, error.retryable) == (code, False)
    assert in_message in error.message and server.url("/v1/embeddings") in error.message


def test_vectors_of_the_wrong_dimension_are_not_retryable():
    with serve_test_embedder(dimensions=128) as base_url:
        error = embed_error(base_url, texts=["one", "two"])
    assert (error.code, error.retryable) == ("embedding_dimension_mismatch", False)
    assert error.details == {"expected": 384, "received": 128}
    assert "128 dimensions, expected 384" in error.message


def test_retry_condition_reads_the_failed_state():
    # Prefect calls retry_condition_fn(task, task_run, state) with the exception as the state's data.
    assert retry_if_retryable(None, None, Failed(data=EmbeddingError("down", code="embeddings_unreachable"))) is True
    assert retry_if_retryable(None, None, Failed(data=EmbeddingRejected("bad", code="embedding_malformed"))) is False
    assert retry_if_retryable(None, None, Failed(data=ValueError("a bug"))) is False


@pytest.mark.slow
def test_embed_task_retries_only_retryable_errors(prefect_server, tmp_path):
    from prefect import flow

    from tasks.embed import embed_task

    quick = embed_task.with_options(retry_delay_seconds=0)

    @flow
    def embed_once(url: str) -> None:
        quick("library-without-chunks", ["text"], Settings(embeddings_url=url, home=tmp_path))

    with LoopbackServer() as server:
        server.reply("/down/embeddings", Reply(503, b"down"))
        server.reply("/bad/embeddings", Reply(400, b"bad input"))
        with pytest.raises(EmbeddingError):
            embed_once(server.url("/down"))
        with pytest.raises(EmbeddingRejected):
            embed_once(server.url("/bad"))
        assert server.hits("/down/embeddings") == 4  # the first try and 3 retries
        assert server.hits("/bad/embeddings") == 1


# --- the server's routes (with the hashing encoder) -----------------------------------------------


@pytest.fixture(scope="module")
def hashing_app() -> TestClient:
    with TestClient(build_app(lambda: HashingEncoder())) as client:
        yield client


def test_server_answers_in_the_openai_shape(hashing_app):
    answer = hashing_app.post("/v1/embeddings", json={"input": ["one two", "three"], "model": "any-name", "user": "u1"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list" and body["model"] == "any-name"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1)]
    assert body["data"][1]["embedding"] == hashed_vector("three").tolist()


def test_server_accepts_a_single_string_and_base64(hashing_app):
    body = hashing_app.post("/v1/embeddings", json={"input": "one two", "encoding_format": "base64"}).json()
    [item] = body["data"]
    vector = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, hashed_vector("one two"))
    assert body["model"] == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"input": []}, "empty_input"),
        ({"input": ""}, "empty_input"),
        ({"input": ["ok", ""]}, "empty_input"),
        ({"input": [[101, 2023]]}, "validation_failed"),  # token arrays are not supported
        ({"model": "all-MiniLM-L6-v2"}, "validation_failed"),
        ({"input": ["x"] * 2049}, "too_many_inputs"),
        ({"input": "x", "dimensions": 256}, "unsupported_dimensions"),
    ],
)
def test_server_refuses_bad_input_with_the_error_envelope(hashing_app, body, code):
    answer = hashing_app.post("/v1/embeddings", json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request", code)
    assert set(error) == {"type", "code", "message", "details"}


def test_server_lists_its_model_and_health(hashing_app):
    assert hashing_app.get("/v1/models").json() == {
        "object": "list",
        "data": [{"id": "all-MiniLM-L6-v2", "object": "model", "created": 0, "owned_by": "gristmill"}],
    }
    assert hashing_app.get("/healthz").json() == {
        "status": "ok",
        "model": "all-MiniLM-L6-v2",
        "dimensions": 384,
        "precision": "float32",
    }


class GatedEncoder(HashingEncoder):
    """Holds its first call until released, so that other requests queue up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.first_call_started = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self.calls:
            self.first_call_started.set()
            self.release.wait(10)
        return super().embed(texts)


@pytest.mark.parametrize(("coalesce", "calls"), [(True, [2, 9]), (False, [2, 3, 3, 3])])
def test_requests_waiting_for_the_model_are_folded_into_one_call(coalesce, calls):
    encoder = GatedEncoder()
    app = build_app(lambda: encoder, coalesce=coalesce)
    with serve_app(app) as root:
        answers: dict[int, list] = {}

        def post(i: int, texts: list[str]) -> None:
            answers[i] = httpx.post(f"{root}/v1/embeddings", json={"input": texts}, timeout=20).json()["data"]

        threads = [threading.Thread(target=post, args=(0, ["a b", "c"]))]
        threads[0].start()
        assert encoder.first_call_started.wait(10)
        for i in range(1, 4):
            threads.append(threading.Thread(target=post, args=(i, [f"text {i} {j}" for j in range(3)])))
            threads[-1].start()
        deadline = time.monotonic() + 10
        while app.state.inference.waiting < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        encoder.release.set()
        for thread in threads:
            thread.join(20)
    assert sorted(encoder.calls) == sorted(calls) and encoder.calls[0] == 2
    for i in range(1, 4):  # each request still gets its own vectors, in its own order
        assert [d["embedding"] for d in answers[i]] == [hashed_vector(f"text {i} {j}").tolist() for j in range(3)]


# --- the real model (slow: loading torch and the weights takes seconds) ------------------------------


@pytest.fixture(scope="module")
def model_server() -> str:
    """The real app on a loopback port, loaded once for these tests; yields its base URL."""
    from gristmill.embeddings.server import create_app

    with serve_app(create_app()) as root:
        yield root + "/v1"


QUERY = "How do I rotate my API keys?"
ANSWER = "To rotate keys, open Settings > API and click Regenerate."
UNRELATED = "The cafeteria serves lunch at noon."


def served_vectors(base_url: str, texts: list[str]) -> np.ndarray:
    body = httpx.post(f"{base_url}/embeddings", json={"input": texts}, timeout=60).json()
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


@pytest.mark.slow
def test_real_model_answers_unit_vectors_that_mean_something(model_server):
    from tasks.chunk import count_tokens, load_tokenizer

    texts = [QUERY, ANSWER, UNRELATED]
    answer = httpx.post(f"{model_server}/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"}, timeout=60)
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"] == "all-MiniLM-L6-v2" and [d["index"] for d in body["data"]] == [0, 1, 2]
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    tokens = sum(count_tokens(t, load_tokenizer()) + 2 for t in texts)  # with [CLS] and [SEP]
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


@pytest.mark.slow
def test_real_model_agrees_with_sentence_transformers(model_server):
    from sentence_transformers import SentenceTransformer

    from gristmill.embedding_models import packaged_model_dir

    texts = [QUERY, ANSWER, UNRELATED, "water " * 400]  # the last is cut to the 256-token window by both
    served = served_vectors(model_server, texts)
    direct = SentenceTransformer(str(packaged_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.sum(served * direct, axis=1).min() >= 0.999


@pytest.mark.slow
def test_embed_texts_batches_against_the_real_model(model_server):
    progress: list[int] = []
    settings = Settings(embeddings_url=model_server, embed_batch_size=2)
    vectors = embed_texts([QUERY, ANSWER, UNRELATED], settings, on_progress=progress.append)
    assert vectors.shape == (3, 384) and progress == [2, 3]
    # The same vectors as one request of three, in order; equal to the last digit only in float32:
    # in bfloat16 a text's vector moves in the fourth digit with the length of the batch it is in.
    together = served_vectors(model_server, [QUERY, ANSWER, UNRELATED])
    assert np.sum(vectors * together, axis=1).min() >= 0.9999


@pytest.mark.slow
def test_real_model_runs_in_the_precision_this_cpu_supports(model_server):
    health = httpx.get(model_server.removesuffix("/v1") + "/healthz").json()
    assert health["precision"] == choose_precision("auto").precision


@pytest.mark.slow
def test_module_main_prints_its_address_when_ready_and_logs_its_precision(tmp_path):
    log_path = tmp_path / "embeddings.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gristmill.embeddings", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "GRISTMILL_EMBEDDINGS_PRECISION": "float32"},
        )
    try:
        line = process.stdout.readline()
        assert line.startswith("embeddings server ready at http://127.0.0.1:")
        base_url = line.split(" at ")[1].strip()
        health = httpx.get(base_url.removesuffix("/v1") + "/healthz").json()
        assert (health["dimensions"], health["precision"]) == (384, "float32")
        assert served_vectors(base_url, ["hi"]).shape == (1, 384)
    finally:
        process.terminate()
        process.wait(20)
    assert "INFO:     embedding in float32: set by GRISTMILL_EMBEDDINGS_PRECISION\n" in log_path.read_text()
