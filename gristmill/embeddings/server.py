"""The embeddings server: all-MiniLM-L6-v2 behind an OpenAI-compatible `POST /v1/embeddings`.

The one long-lived process that holds the model: importing torch and loading the weights takes
seconds, which no flow run should pay. Requests are answered from a single inference thread; the
requests that queue up while it is busy are folded into its next batch.

    python -m gristmill.embeddings [--host 127.0.0.1] [--port 8081] [--model-dir DIR]
"""

import argparse
import asyncio
import base64
import ctypes
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from gristmill.embedding_models import DEFAULT_MODEL, packaged_model_dir
from gristmill.embeddings.auth import require_key
from gristmill.embeddings.precision import Precision, choose_precision
from gristmill.environment import prepare_process
from gristmill.errors import InvalidRequest
from gristmill.http_errors import install_error_handlers
from gristmill.settings import get_settings

log = logging.getLogger("gristmill.embeddings")

MAX_INPUTS = 2048  # OpenAI's limit per request; larger jobs batch on the client side
MAX_BATCH_TEXTS = 128  # requests are folded together up to about this many texts per model call
# Texts per forward pass: activations grow with it, speed did not (bench/bench_embedder.py, 254-token
# chunks: 26.9 chunks/s at 16, 25.1 at 32; peak resident 777 MB against 814 MB).
MODEL_BATCH = 16


# --- the OpenAI shapes ------------------------------------------------------------------------


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. OpenAI's `user`

    input: str | list[str]
    model: str | None = None
    # The official openai client asks for base64 unless told otherwise.
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "gristmill"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- encoders ---------------------------------------------------------------------------------


class Encoder(Protocol):
    """What the server needs of a model; tests plug in a deterministic one."""

    name: str
    dimensions: int
    precision: str  # the number format it computes in, e.g. "bfloat16"; /healthz reports it

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""
        ...

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for these texts, special tokens and truncation included."""
        ...


def _malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols, the C library's among them
    except (OSError, AttributeError):  # not glibc: its allocator has its own habits
        return lambda: None
    return lambda: trim(0)


# glibc keeps the pages torch frees after a forward pass for the next allocation, and the varying
# tensor sizes of varying batches fragment them: over 3,000 CSV chunks, 64 per call, the encoder's
# resident memory between calls grew by 520 MB without trimming and by 70 MB with it, and 1,000
# chunks took 28.1 and 27.9 s trimmed against 29.2 and 26.2 s not (bench/bench_memory.py shows the
# service-wide effect).
_return_freed_memory = _malloc_trim()


class SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 (or another sentence-transformers folder) on the CPU, with every core, in
    float32 or under bfloat16 autocast (gristmill/embeddings/precision.py says which and why)."""

    def __init__(self, model_dir: Path, name: str, precision: Precision = "float32") -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a progress bar per start-up only clutters the log
        if not (model_dir / "modules.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a sentence-transformers model folder (no modules.json)")
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.name = name
        self.precision = precision
        self.dimensions = int(self.model.get_embedding_dimension())
        # Autocast, not bfloat16 weights: the linear layers and attention run in bfloat16 while the
        # residual stream, the layer norms and the pooling stay in float32, which is closer to float32's
        # vectors (min cosine 0.99997 against 0.99993) at the same speed (bench/bench_embedder.py --direct).
        self._autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.model.max_seq_length)

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._autocast:
            vectors = self.model.encode(
                texts, batch_size=MODEL_BATCH, convert_to_tensor=True, show_progress_bar=False
            )
        _return_freed_memory()
        vectors = vectors.float().numpy()
        # Normalised here, in float32, whatever the model computed in.
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(texts))


# --- one inference thread, requests folded into batches ----------------------------------------


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class InferenceQueue:
    """Runs `encoder.embed` on one thread, one call at a time (torch already uses every core within a
    call; two calls at once would only fight over them). Requests that arrive while a call runs wait
    in a queue and are embedded together in the next call, up to `max_batch` texts."""

    def __init__(self, encoder: Encoder, *, max_batch: int = MAX_BATCH_TEXTS, coalesce: bool = True) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self.coalesce = coalesce
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Requests queued behind the model call in progress."""
        return self._queue.qsize()

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="inference-queue")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def embed(self, texts: list[str]) -> np.ndarray:
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].texts)
            while self.coalesce and size < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                size += len(jobs[-1].texts)
            texts = [t for job in jobs for t in job.texts]
            try:
                vectors = await loop.run_in_executor(self._executor, self.encoder.embed, texts)
            except Exception as error:  # one bad batch fails its requests, not the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            offset = 0
            for job in jobs:
                if not job.future.done():  # the client may have hung up
                    job.future.set_result(vectors[offset : offset + len(job.texts)])
                offset += len(job.texts)


# --- routes -----------------------------------------------------------------------------------


def _queue(request: Request) -> InferenceQueue:
    return request.app.state.inference


Inference = Annotated[InferenceQueue, Depends(_queue)]


def embeddings_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse, dependencies=[Depends(require_key)])
    async def create_embeddings(body: EmbeddingsRequest, inference: Inference) -> dict:
        texts = [body.input] if isinstance(body.input, str) else body.input
        _check_input(texts, body, inference.encoder)
        vectors = await inference.embed(texts)
        tokens = inference.encoder.count_tokens(texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
                for i, vector in enumerate(vectors)
            ],
            "model": body.model or inference.encoder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @router.get("/v1/models", response_model=ModelList, dependencies=[Depends(require_key)])
    async def list_models(inference: Inference) -> ModelList:
        return ModelList(data=[ModelCard(id=inference.encoder.name)])

    @router.get("/healthz")
    async def health(inference: Inference) -> dict:
        encoder = inference.encoder
        return {"status": "ok", "model": encoder.name, "dimensions": encoder.dimensions, "precision": encoder.precision}

    return router


def _check_input(texts: list[str], body: EmbeddingsRequest, encoder: Encoder) -> None:
    if not texts:
        raise InvalidRequest("`input` is an empty list; send at least one text", code="empty_input")
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise InvalidRequest(
            f"`input` holds {len(empty)} empty string(s); every text must be non-empty",
            code="empty_input",
            details={"indices": empty[:20]},
        )
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(
            f"`input` holds {len(texts)} texts; send at most {MAX_INPUTS} per request", code="too_many_inputs"
        )
    if body.dimensions is not None and body.dimensions != encoder.dimensions:
        raise InvalidRequest(
            f"{encoder.name} makes {encoder.dimensions}-dimensional vectors, not {body.dimensions}",
            code="unsupported_dimensions",
        )


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


# --- apps -------------------------------------------------------------------------------------


def build_app(load_encoder: Callable[[], Encoder], *, coalesce: bool = True, api_key: str | None = None) -> FastAPI:
    """An embeddings app around whatever `load_encoder` returns, loaded once at start-up; with
    `api_key`, its /v1 routes answer only requests that bear it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        encoder = await asyncio.to_thread(load_encoder)
        app.state.inference = InferenceQueue(encoder, coalesce=coalesce)
        app.state.inference.start()
        try:
            yield
        finally:
            await app.state.inference.stop()

    app = FastAPI(title="Gristmill embeddings", version="0.1.0", lifespan=lifespan)
    app.state.api_key = api_key
    app.include_router(embeddings_router())
    install_error_handlers(app)
    return app


def create_app(model_dir: Path | None = None, *, coalesce: bool = True, api_key: str | None = None) -> FastAPI:
    """The real server: the packaged all-MiniLM-L6-v2 unless `model_dir` names another model folder,
    in the precision GRISTMILL_EMBEDDINGS_PRECISION asks for; with `api_key`, requests must bear it."""
    settings = get_settings()
    # The model's own name, whichever model the service defaults to (GRISTMILL_EMBEDDING_MODEL).
    name = model_dir.name if model_dir else DEFAULT_MODEL

    def load() -> SentenceTransformerEncoder:
        choice = choose_precision(settings.embeddings_precision)
        log.info("embedding in %s: %s", choice.precision, choice.reason)
        return SentenceTransformerEncoder(model_dir or packaged_model_dir(), name, choice.precision)

    return build_app(load, coalesce=coalesce, api_key=api_key)


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    prepare_process(settings)  # before huggingface_hub is imported: it reads the offline switches once
    parser = argparse.ArgumentParser(prog="python -m gristmill.embeddings", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.embeddings_host)
    parser.add_argument("--port", type=int, default=settings.embeddings_port, help="0 picks a free port")
    parser.add_argument("--model-dir", type=Path, default=None, help="a sentence-transformers model folder")
    args = parser.parse_args(argv)
    # Our own lines (the precision chosen) in uvicorn's format, on stderr beside uvicorn's.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")

    # Access logs off: the pipeline calls this thousands of times per ingest.
    app = create_app(args.model_dir, api_key=settings.resolved_embeddings_api_key)
    config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False)
    # If the model cannot load or the port is taken, uvicorn logs why and exits non-zero.
    _AnnouncingServer(config).run()


class _AnnouncingServer(uvicorn.Server):
    """Prints the address once the model is loaded and the port bound, for whoever started the process."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"embeddings server ready at http://{host}:{port}/v1", flush=True)
