"""Libraries as a caller sees them: created with a known embedding model, listed with their counts,
upserted by name in bulk, re-indexed and pruned as jobs."""

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from gristmill.embedding_models import EmbeddingModel
from gristmill.errors import Conflict, InvalidRequest
from gristmill.settings import Settings
from storage import repository
from storage.tables import IngestJob, JobKind, Library

# The most external ids one full-set declaration may list.
MAX_DECLARED_EXTERNAL_IDS = 100_000


@dataclass(frozen=True)
class LibraryCounts:
    sources: int  # sources that hold chunks
    chunks: int


@dataclass(frozen=True)
class LibraryFields:
    """What a caller sets on a library; None leaves a field as it is (or to its default, when created)."""

    description: str | None = None
    instructions: str | None = None
    metadata: dict[str, Any] | None = None
    embedding_model: str | None = None
    chunk_max_tokens: int | None = None
    chunk_overlap_tokens: int | None = None


def create_library(
    session: Session, settings: Settings, workspace_id: str, name: str, fields: LibraryFields | None = None
) -> Library:
    """A new library embedding with the model it names (else the service's default); chunking as asked,
    else the defaults, within the model's window."""
    columns = _new_library_columns(settings, fields or LibraryFields())
    return repository.create_library(session, workspace_id, name=name, **columns)


def upsert_libraries(
    session: Session, settings: Settings, workspace_id: str, entries: list[tuple[str, LibraryFields]]
) -> list[tuple[Library, bool]]:
    """Create or update libraries by name in one transaction; (library, created) for each, in order.
    An existing library keeps what an entry leaves out, and its model (409 if an entry names another)."""
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise InvalidRequest(f"each library may appear once; repeated: {', '.join(repeated)}", code="duplicate_name")
    rows = []
    for name, fields in entries:
        existing = repository.find_library_by_name(session, workspace_id, name)
        if existing is not None:
            refuse_writes_while_reindexing(session, existing)
        model = settings.embedding_model_named(fields.embedding_model or (existing.embedding_model if existing else None))
        _check_chunking(fields, model)
        changes = {
            key: value
            for key, value in (
                ("description", fields.description),
                ("instructions", fields.instructions),
                ("metadata_", fields.metadata),
                ("embedding_model", fields.embedding_model),
                ("chunk_max_tokens", fields.chunk_max_tokens),
                ("chunk_overlap_tokens", fields.chunk_overlap_tokens),
            )
            if value is not None
        }
        defaults = {("metadata_" if k == "metadata" else k): v for k, v in _new_library_columns(settings, fields).items()}
        defaults["metadata_"] = defaults["metadata_"] or {}
        rows.append({"name": name, **changes, "defaults": defaults})
    return repository.upsert_libraries(session, workspace_id, rows)


def update_library(session: Session, settings: Settings, library: Library, name: str | None, fields: LibraryFields) -> Library:
    """Change the given fields; chunking applies to sources ingested from now on (a re-index applies
    it to the others); the model changes only by re-indexing."""
    if fields.embedding_model is not None and fields.embedding_model != library.embedding_model:
        raise Conflict(
            f"a library's model changes by re-indexing it: POST /v1/libraries/{library.id}/reindex "
            f'with {{"embedding_model": "{fields.embedding_model}"}}',
            code="embedding_model_in_use",
        )
    _check_chunking(fields, settings.embedding_model_named(library.embedding_model))
    if fields.chunk_max_tokens is not None or fields.chunk_overlap_tokens is not None:
        refuse_writes_while_reindexing(session, library)
    return repository.update_library(
        session,
        library,
        name=name,
        description=fields.description,
        instructions=fields.instructions,
        metadata_=fields.metadata,
        chunk_max_tokens=fields.chunk_max_tokens,
        chunk_overlap_tokens=fields.chunk_overlap_tokens,
    )


def is_compatible(library: Library, settings: Settings) -> bool:
    """Whether the library embeds with the service's current default model."""
    return library.embedding_model == settings.embedding_model


def counts_of(session: Session, libraries: list[Library]) -> dict[str, LibraryCounts]:
    counts = repository.library_source_counts(session, [lib.id for lib in libraries])
    return {library_id: LibraryCounts(*pair) for library_id, pair in counts.items()}


def refuse_writes_while_reindexing(session: Session, library: Library) -> None:
    """A library being re-indexed takes no new, changed or deleted sources until its job ends (search
    answers throughout); 409 library_reindexing naming the job."""
    job = repository.unfinished_job_of_kind(session, library.id, JobKind.reindex)
    if job is not None:
        raise Conflict(
            f"library {library.name!r} is being re-indexed (job {job.id}); it takes no changes until that job "
            "has finished, and answers searches meanwhile",
            code="library_reindexing",
            details={"job_id": job.id},
        )


def create_reindex_job(session: Session, settings: Settings, library: Library, embedding_model: str | None) -> IngestJob:
    """A job that re-chunks and re-embeds every stored source with the library's chunking and
    `embedding_model` (default: the library's own); start its flow run next."""
    refuse_writes_while_reindexing(session, library)
    model = settings.embedding_model_named(embedding_model or library.embedding_model)
    parameters = {
        "embedding_model": model.name,
        "chunk_max_tokens": min(library.chunk_max_tokens, model.window_tokens),
        "chunk_overlap_tokens": library.chunk_overlap_tokens,
    }
    return repository.create_job(session, library, [], kind=JobKind.reindex, parameters=parameters)


def create_prune_job(session: Session, library: Library, external_ids: list[str], prefix: str | None) -> IngestJob:
    """A job that removes every finished source the declared full set of external ids (under
    `prefix`, if given) leaves out; start its flow run next."""
    refuse_writes_while_reindexing(session, library)
    if len(external_ids) > MAX_DECLARED_EXTERNAL_IDS:
        raise InvalidRequest(
            f"a declaration lists at most {MAX_DECLARED_EXTERNAL_IDS:,} external ids; split it by prefix",
            code="too_many_external_ids",
        )
    if prefix is not None and not prefix:
        raise InvalidRequest("prefix, when given, must not be empty", code="invalid_prefix")
    parameters = {"external_ids": sorted(set(external_ids)), "prefix": prefix}
    return repository.create_job(session, library, [], kind=JobKind.prune, parameters=parameters)


def _new_library_columns(settings: Settings, fields: LibraryFields) -> dict[str, Any]:
    model = settings.embedding_model_named(fields.embedding_model)
    _check_chunking(fields, model)
    max_tokens = fields.chunk_max_tokens if fields.chunk_max_tokens is not None else settings.chunk_max_tokens
    overlap = fields.chunk_overlap_tokens if fields.chunk_overlap_tokens is not None else settings.chunk_overlap_tokens
    return {
        "description": fields.description,
        "instructions": fields.instructions,
        "metadata": fields.metadata,
        "embedding_model": model.name,
        "embedding_dim": model.dimensions,
        "chunk_max_tokens": min(max_tokens, model.window_tokens),
        "chunk_overlap_tokens": overlap,
    }


def _check_chunking(fields: LibraryFields, model: EmbeddingModel) -> None:
    if fields.chunk_max_tokens is not None and fields.chunk_max_tokens > model.window_tokens:
        raise InvalidRequest(
            f"chunking.max_tokens is {fields.chunk_max_tokens}, but {model.name} reads at most "
            f"{model.window_tokens} tokens",
            code="chunk_too_large",
            details={"embedding_model": model.name, "window_tokens": model.window_tokens},
        )
