"""A deterministic OpenAI-compatible embeddings server for tests (never for users).

Vectors are hashed word unigrams: lower-cased words feature-hashed (with a sign) into 384 dimensions
and L2-normalised, so texts that share words are close and texts that share none are nearly
orthogonal. It is the real server's app (same routes, shapes and errors) around this encoder instead
of the model, served by uvicorn on a free loopback port in a background thread:

    with serve_test_embedder() as base_url:  # http://127.0.0.1:PORT/v1
        vectors = embed_texts(["hello"], Settings(embeddings_url=base_url))
"""

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import uvicorn
from fastapi import FastAPI

from gristmill.embeddings.server import build_app

_WORD = re.compile(r"\w+")


class HashingEncoder:
    def __init__(self, dimensions: int = 384, name: str = "all-MiniLM-L6-v2") -> None:
        self.dimensions = dimensions
        self.name = name
        self.precision = "float32"
        self.calls: list[int] = []  # texts per model call, to observe batching

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([hashed_vector(t, self.dimensions) for t in texts])

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(_WORD.findall(t)) + 2 for t in texts)  # + [CLS] and [SEP], as the model counts


def hashed_vector(text: str, dimensions: int = 384) -> np.ndarray:
    vector = np.zeros(dimensions, dtype=np.float32)
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[digest % dimensions] += 1.0 if (digest >> 63) & 1 else -1.0
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Serve any ASGI app on a free 127.0.0.1 port in a background thread; yields `http://127.0.0.1:PORT`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-embedder", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serve_test_embedder(dimensions: int = 384, encoder: HashingEncoder | None = None) -> Iterator[str]:
    """The hashing embeddings server; yields its base URL, `http://127.0.0.1:PORT/v1`."""
    encoder = encoder or HashingEncoder(dimensions)
    with serve_app(build_app(lambda: encoder)) as root:
        yield root + "/v1"
