"""Embed texts through any OpenAI-compatible `POST {base_url}/embeddings` (ours, Ollama, vLLM, TEI, OpenAI).

Failures that may pass (endpoint down, timeouts, 5xx, 429) raise EmbeddingError, which is retryable;
answers that would fail the same way again (4xx, a malformed body, vectors of the wrong size) raise
EmbeddingRejected, which is not.
"""

from collections.abc import Callable, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from gristmill.errors import EmbeddingError, EmbeddingRejected
from gristmill.settings import Settings
from gristmill.tls import tls_context
from storage.chunks import open_chunk_store, text_hash
from tasks.retries import NETWORK_RETRY_DELAYS_SECONDS, retry_if_retryable

CONNECT_TIMEOUT_SECONDS = 10.0


class EmbeddingsClient:
    """A client of one embeddings endpoint, reusing its connections across batches.

        with EmbeddingsClient("http://127.0.0.1:8081/v1", "all-MiniLM-L6-v2", dimensions=384) as client:
            vectors = client.embed(["first chunk", "second chunk"])  # float32, shape (2, 384)
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        batch_size: int = 32,
        dimensions: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.batch_size = batch_size
        self.dimensions = dimensions
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            verify=tls_context(),
        )

    def __enter__(self) -> "EmbeddingsClient":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: Sequence[str], on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One float32 row per text, in order; `on_progress(n)` after each batch with the count done so far."""
        rows: list[np.ndarray] = []
        done = 0
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            rows.append(self._embed_batch(batch))
            done += len(batch)
            if on_progress is not None:
                on_progress(done)
        if not rows:
            return np.empty((0, self.dimensions or 0), dtype=np.float32)
        return np.concatenate(rows)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        try:
            response = self._http.post(self.url, json={"model": self.model, "input": texts})
        except httpx.TimeoutException as error:
            raise EmbeddingError(
                f"the embeddings endpoint {self.url} did not answer in time ({type(error).__name__})",
                code="embeddings_timeout",
            ) from error
        except httpx.ConnectError as error:
            raise EmbeddingError(
                f"the embeddings endpoint {self.url} is not reachable: {error}; is the embeddings server running?",
                code="embeddings_unreachable",
            ) from error
        except httpx.TransportError as error:
            raise EmbeddingError(
                f"the connection to the embeddings endpoint {self.url} failed: {type(error).__name__}: {error}",
                code="embeddings_connection_failed",
            ) from error
        _raise_for_status(response, self.url)
        return self._parse(response, expected=len(texts))

    def _parse(self, response: httpx.Response, *, expected: int) -> np.ndarray:
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingRejected(
                f"the embeddings endpoint {self.url} answered something that is not an embeddings list "
                f"({type(error).__name__}: {error})",
                code="embedding_malformed",
                details={"body": response.text[:500]},
            ) from error
        if matrix.shape[0] != expected or [item["index"] for item in items] != list(range(expected)):
            raise EmbeddingRejected(
                f"the embeddings endpoint {self.url} returned {matrix.shape[0]} vectors for {expected} texts",
                code="embedding_count_mismatch",
                details={"expected": expected, "received": matrix.shape[0]},
            )
        if matrix.ndim != 2 or (self.dimensions is not None and matrix.shape[1] != self.dimensions):
            received = matrix.shape[1] if matrix.ndim == 2 else None
            raise EmbeddingRejected(
                f"the embeddings endpoint {self.url} returned vectors of {received} dimensions, expected "
                f"{self.dimensions}; is {self.model} really {self.dimensions}-dimensional (GRISTMILL_EMBEDDING_MODELS)?",
                code="embedding_dimension_mismatch",
                details={"expected": self.dimensions, "received": received},
            )
        return matrix


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _error_message(response)
    if status == 429:
        raise EmbeddingError(
            f"the embeddings endpoint {url} is rate limiting requests (429): {detail}",
            code="embeddings_rate_limited",
            details={"status": status, "retry_after": response.headers.get("retry-after")},
        )
    if status >= 500:
        raise EmbeddingError(
            f"the embeddings endpoint {url} failed with {status}: {detail}",
            code="embeddings_unavailable",
            details={"status": status},
        )
    hint = "; check GRISTMILL_EMBEDDINGS_API_KEY" if status in (401, 403) else ""
    raise EmbeddingRejected(
        f"the embeddings endpoint {url} refused the request with {status}: {detail}{hint}",
        details={"status": status},
    )


def _error_message(response: httpx.Response) -> str:
    """The message of an OpenAI-style `{"error": {"message": ...}}` body, else the start of the body."""
    try:
        error: Any = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase


def embed_texts(
    texts: Sequence[str],
    settings: Settings,
    on_progress: Callable[[int], None] | None = None,
    *,
    model: str | None = None,
) -> np.ndarray:
    """Embed `texts` with a known model (default: the service's default), at the endpoint that serves
    it: float32, shape (len(texts), the model's dimensions). ServiceUnavailable for a model the
    configuration does not name."""
    known = settings.library_model(model or settings.embedding_model)
    client = shared_embeddings_client(
        known.url,
        known.name,
        api_key=known.api_key,
        timeout=settings.embeddings_timeout_seconds,
        batch_size=settings.embed_batch_size,
        dimensions=known.dimensions,
    )
    return client.embed(texts, on_progress)


@lru_cache(maxsize=16)
def shared_embeddings_client(
    base_url: str, model: str, *, api_key: str | None, timeout: float, batch_size: int, dimensions: int
) -> EmbeddingsClient:
    """The process's client for one endpoint, open for the process's life and shared by its threads.

    A search embeds one short query: a new client per call paid for a new connection (and the TLS
    context httpx builds even for http) on every request (bench/bench_search_api.py).
    """
    return EmbeddingsClient(
        base_url, model, api_key=api_key, timeout=timeout, batch_size=batch_size, dimensions=dimensions
    )


def embed_chunk_texts(
    library_id: str,
    texts: Sequence[str],
    settings: Settings,
    on_progress: Callable[[int], None] | None = None,
    *,
    model: str | None = None,
) -> np.ndarray:
    """Vectors for what a source's chunks embed (their indexed_text) with the library's `model`,
    embedding only texts that the chunk table `library_id` (a library's `chunk_table`, whose vectors
    are all of that model) holds no vector for.

    Re-ingesting an edited document so costs only its changed chunks; a text repeated within the
    document is embedded once.
    """
    keys = [text_hash(t) for t in texts]
    known = open_chunk_store(settings).vectors_by_text_hash(library_id, keys)
    reused = sum(1 for k in keys if k in known)
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if on_progress and reused:
        on_progress(reused)
    if missing:
        texts_by_key = dict(zip(keys, texts))
        report = (lambda done: on_progress(reused + done)) if on_progress else None
        fresh = embed_texts([texts_by_key[k] for k in missing], settings, on_progress=report, model=model)
        known.update(zip(missing, fresh))
    if not keys:
        return np.zeros((0, settings.library_model(model or settings.embedding_model).dimensions), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)


def __getattr__(name: str) -> Any:
    # Built on first access, not at import: importing Prefect takes ~2 s, and a search, which only
    # embeds its query, never needs the task (`gristmill search` must answer within a second).
    if name == "embed_task":
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        # The inputs are every chunk text and a progress callback: nothing worth hashing for a cache key.
        globals()["embed_task"] = task(
            name="embed",
            retries=3,
            retry_delay_seconds=NETWORK_RETRY_DELAYS_SECONDS,
            retry_condition_fn=retry_if_retryable,
            cache_policy=NO_CACHE,
        )(embed_chunk_texts)
        return globals()["embed_task"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
