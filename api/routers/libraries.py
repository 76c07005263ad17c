from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from api.auth import Reader, Writer
from api.deps import BlobStoreDep, ChunkStoreDep, SessionDep, SettingsDep, StarterDep
from api.routers.jobs import jobs_out
from api.schemas import (
    Chunking,
    EmbeddingModelList,
    EmbeddingModelOut,
    JobOut,
    LibraryBulk,
    LibraryBulkResult,
    LibraryCreate,
    LibraryList,
    LibraryOut,
    LibraryUpdate,
    PruneRequest,
    ReindexRequest,
    errors,
    rate_limited,
)
from gristmill.errors import NotFound
from gristmill.settings import Settings
from gristmill.usecases import libraries as library_cases
from gristmill.usecases.libraries import LibraryCounts, LibraryFields
from storage import repository
from storage.tables import JobKind, Library

router = APIRouter(tags=["libraries"])


def _writes(conflict: str) -> dict[int | str, dict[str, Any]]:
    """The error answers of a write to libraries, with what its 409 means."""
    return errors(400, 401, 403, 404, 409, 413, 422, 429, 503, descriptions={409: conflict})


def library_out(library: Library, counts: LibraryCounts, settings: Settings) -> LibraryOut:
    return LibraryOut(
        id=library.id,
        name=library.name,
        description=library.description,
        instructions=library.instructions,
        metadata=library.metadata_,
        embedding_model=library.embedding_model,
        embedding_dim=library.embedding_dim,
        compatible=library_cases.is_compatible(library, settings),
        chunking=Chunking.model_construct(max_tokens=library.chunk_max_tokens, overlap_tokens=library.chunk_overlap_tokens),
        source_count=counts.sources,
        chunk_count=counts.chunks,
        created_at=library.created_at,
        updated_at=library.updated_at,
    )


def _fields(body: LibraryCreate | LibraryUpdate) -> LibraryFields:
    return LibraryFields(
        description=body.description,
        instructions=body.instructions,
        metadata=body.metadata if "metadata" in body.model_fields_set else None,  # not given: left as it is
        embedding_model=body.embedding_model,
        chunk_max_tokens=body.chunking.max_tokens if body.chunking else None,
        chunk_overlap_tokens=body.chunking.overlap_tokens if body.chunking else None,
    )


@router.get("/v1/embedding-models", response_model=EmbeddingModelList, tags=["embedding models"], responses=errors(401, 403, 422))
def list_embedding_models(_principal: Reader, settings: SettingsDep) -> EmbeddingModelList:
    """The models a library may name; `default` is the one new libraries get (and `compatible` compares with)."""
    return EmbeddingModelList(
        data=[
            EmbeddingModelOut(**model.describe(), default=model.name == settings.embedding_model)
            for model in sorted(settings.known_embedding_models.values(), key=lambda m: m.name)
        ]
    )


@router.post(
    "/v1/libraries",
    status_code=status.HTTP_201_CREATED,
    response_model=LibraryOut,
    responses=rate_limited(201, _writes("A library of this name exists.")),
)
def create_library(body: LibraryCreate, principal: Writer, session: SessionDep, settings: SettingsDep) -> LibraryOut:
    library = library_cases.create_library(session, settings, principal.workspace_id, body.name, _fields(body))
    return library_out(library, LibraryCounts(sources=0, chunks=0), settings)


@router.post("/v1/libraries/bulk", response_model=LibraryBulkResult, responses=rate_limited(200, _writes("A library of this name exists, or the library is being re-indexed.")))
def upsert_libraries(body: LibraryBulk, principal: Writer, session: SessionDep, settings: SettingsDep) -> LibraryBulkResult:
    """Create or update libraries by name, all in one transaction (all or none). An existing library
    takes the fields an entry gives and keeps the others; its embedding model changes only by a reindex."""
    entries = [(entry.name, _fields(entry)) for entry in body.libraries]
    done = library_cases.upsert_libraries(session, settings, principal.workspace_id, entries)
    counts = library_cases.counts_of(session, [library for library, _ in done])
    return LibraryBulkResult(
        data=[library_out(library, counts[library.id], settings) for library, _ in done],
        created=sum(1 for _, created in done if created),
        updated=sum(1 for _, created in done if not created),
    )


@router.get("/v1/libraries", response_model=LibraryList, responses=errors(401, 403, 422))
def list_libraries(
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str | None, Query(max_length=200, description="Only libraries whose name contains this (any case).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    after: Annotated[str | None, Query(description="Only libraries created after this library (its id).")] = None,
    before: Annotated[str | None, Query(description="Only libraries created before this library (its id).")] = None,
    ascending: Annotated[bool, Query(description="Oldest first (true, the default) or newest first.")] = True,
) -> LibraryList:
    """The workspace's libraries in creation order. Page on with `after=<last id>` (ascending) or
    `before=<last id>` (descending) while `has_more`."""
    libraries, more = repository.list_libraries(
        session, principal.workspace_id, name=name, limit=limit, after=after, before=before, ascending=ascending
    )
    counts = library_cases.counts_of(session, libraries)
    return LibraryList(data=[library_out(lib, counts[lib.id], settings) for lib in libraries], has_more=more)


@router.get("/v1/libraries/by-name/{name:path}", response_model=LibraryOut, responses=errors(401, 403, 404, 422))
def get_library_by_name(name: str, principal: Reader, session: SessionDep, settings: SettingsDep) -> LibraryOut:
    """The library with exactly this name (404 when there is none)."""
    library = repository.find_library_by_name(session, principal.workspace_id, name)
    if library is None:
        raise NotFound(f"no library named {name!r}", code="library_not_found")
    return library_out(library, library_cases.counts_of(session, [library])[library.id], settings)


@router.get("/v1/libraries/{library_id}", response_model=LibraryOut, responses=errors(401, 403, 404, 422))
def get_library(library_id: str, principal: Reader, session: SessionDep, settings: SettingsDep) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    return library_out(library, library_cases.counts_of(session, [library])[library.id], settings)


@router.patch("/v1/libraries/{library_id}", response_model=LibraryOut, responses=rate_limited(200, _writes("A library of this name exists, or the library is being re-indexed.")))
def update_library(
    library_id: str, body: LibraryUpdate, principal: Writer, session: SessionDep, settings: SettingsDep
) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    library_cases.update_library(session, settings, library, body.name, _fields(body))
    return library_out(library, library_cases.counts_of(session, [library])[library.id], settings)


@router.delete(
    "/v1/libraries/{library_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=rate_limited(204, errors(401, 403, 404, 409, 422, 429, 503)),
)
def delete_library(
    library_id: str, principal: Writer, session: SessionDep, store: ChunkStoreDep, blobs: BlobStoreDep
) -> Response:
    library = repository.get_library(session, principal.workspace_id, library_id)
    library_cases.refuse_writes_while_reindexing(session, library)
    # Chunks first: a failure here leaves the library listed and retryable, never rows without chunks' owner.
    for table in library.chunk_tables:
        store.delete_library(table)
    for blob in repository.delete_library(session, library):
        blobs.remove(blob)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/libraries/{library_id}/reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=rate_limited(202, _writes("The library is being re-indexed.")),
)
def reindex_library(
    library_id: str, principal: Writer, session: SessionDep, settings: SettingsDep, starter: StarterDep,
    body: ReindexRequest | None = None,
) -> JobOut:
    """Re-chunk and re-embed every stored source (with the library's chunking, and `embedding_model`
    if given) as a job, source by source; search answers throughout, and the library takes no changes
    until the job ends (409 library_reindexing)."""
    library = repository.get_library(session, principal.workspace_id, library_id)
    job = library_cases.create_reindex_job(session, settings, library, body.embedding_model if body else None)
    starter.start(job.id, JobKind.reindex)
    session.refresh(job)  # the starter recorded its flow run in a session of its own
    return jobs_out(session, [job])[0]


@router.post(
    "/v1/libraries/{library_id}/prune",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=rate_limited(202, _writes("The library is being re-indexed.")),
)
def prune_library(
    library_id: str, body: PruneRequest, principal: Writer, session: SessionDep, starter: StarterDep
) -> JobOut:
    """Declare the full set of the library's external ids (or of those under `prefix`): a job removes
    every finished source the set leaves out, each recorded as `removed` under the job."""
    library = repository.get_library(session, principal.workspace_id, library_id)
    job = library_cases.create_prune_job(session, library, body.external_ids, body.prefix)
    starter.start(job.id, JobKind.prune)
    session.refresh(job)  # the starter recorded its flow run in a session of its own
    return jobs_out(session, [job])[0]
