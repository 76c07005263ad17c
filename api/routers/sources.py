import base64
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response, status

from api.auth import Reader, Writer
from api.deps import BlobStoreDep, ChunkStoreDep, SessionDep, SettingsDep, StarterDep
from api.routers.jobs import jobs_out
from api.schemas import ChunkOut, ChunkPage, JobOut, Progress, SourceOut, SourcePage, SourceUpdate, errors, rate_limited
from gristmill.errors import InvalidRequest
from gristmill.usecases import sources as source_cases
from gristmill.usecases.libraries import refuse_writes_while_reindexing
from storage import repository
from storage.chunks import ChunkView
from storage.tables import Source, SourceStatus

router = APIRouter(tags=["sources"])

Include = Annotated[Literal["content"] | None, Query(description="`content`: add each source's extracted text.")]
# Far past the chunks of any source the size limits admit; beyond it LanceDB's offset overflows.
MAX_CHUNK_OFFSET = 1_000_000
ChunkOffset = Annotated[int, Query(ge=0, le=MAX_CHUNK_OFFSET)]
ChunkLimit = Annotated[int, Query(ge=1, le=500)]


def source_out(source: Source, *, include_content: bool = False) -> SourceOut:
    return SourceOut(
        id=source.id,
        library_id=source.library_id,
        job_id=source.job_id,
        title=source.title,
        origin=source.origin,
        uri=source.uri,
        content_type=source.content_type,
        content_format=source.content_format,
        external_id=source.external_id,
        content_hash=source.content_hash,
        size_bytes=source.size_bytes,
        status=source.status.value,
        progress=Progress(current=source.progress_current, total=source.progress_total),
        warnings=source.warnings,
        error=source.error,
        error_code=source.error_code,
        duplicate_of=source.duplicate_of,
        token_count=source.token_count,
        chunk_count=source.chunk_count,
        page_count=source.page_count,
        metadata=source.metadata_,
        user_id=source.user_id,
        agent_id=source.agent_id,
        role=source.role,
        categories=source.categories,
        created_at=source.created_at,
        updated_at=source.updated_at,
        processed_at=source.processed_at,
        content=source.extracted_text if include_content else None,
    )


def chunk_out(chunk: ChunkView) -> ChunkOut:
    return ChunkOut(chunk_id=chunk.chunk_id, source_id=chunk.source_id, chunk_index=chunk.chunk_index, text=chunk.text,
                    metadata=chunk.metadata)


@router.get("/v1/sources/{source_id}", response_model=SourceOut, responses=errors(401, 403, 404, 422))
def get_source(source_id: str, principal: Reader, session: SessionDep, include: Include = None) -> SourceOut:
    return source_out(repository.get_source(session, principal.workspace_id, source_id), include_content=include == "content")


@router.patch(
    "/v1/sources/{source_id}",
    response_model=SourceOut,
    responses=rate_limited(200, errors(400, 401, 403, 404, 409, 413, 422, 429, 503)),
)
def update_source(source_id: str, body: SourceUpdate, principal: Writer, session: SessionDep, store: ChunkStoreDep) -> SourceOut:
    """Change a source's title, metadata (merged; null removes a key), user_id, agent_id, role or
    categories; its chunks are re-tagged in one commit, not re-embedded."""
    source = repository.get_source(session, principal.workspace_id, source_id)
    library = repository.get_library(session, principal.workspace_id, source.library_id)
    updated = source_cases.update_source(session, store, library, source, body.model_dump(exclude_unset=True))
    return source_out(updated)


@router.get(
    "/v1/sources/{source_id}/original",
    response_class=Response,
    responses={200: {"description": "The bytes as submitted (or as fetched, for a URL), with their content type.",
                     "content": {"*/*": {}}}, **errors(401, 403, 404, 422, 503)},
)
def download_original(source_id: str, principal: Reader, session: SessionDep, blobs: BlobStoreDep) -> Response:
    original = source_cases.original_of(repository.get_source(session, principal.workspace_id, source_id), blobs)
    headers = {}
    if original.filename:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(original.filename)}"
    return Response(content=original.data, media_type=original.content_type, headers=headers)


@router.get("/v1/libraries/{library_id}/sources", response_model=SourcePage, responses=errors(401, 403, 404, 422))
def list_sources(
    library_id: str,
    principal: Reader,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    status: Annotated[SourceStatus | None, Query(description="Only sources in this state (`removed` ones are listed only so).")] = None,
    external_id: str | None = None,
    include: Include = None,
) -> SourcePage:
    library = repository.get_library(session, principal.workspace_id, library_id)
    page, more = repository.list_sources(
        session,
        library.id,
        limit=limit,
        after=_decode_cursor(cursor) if cursor else None,
        status=status,
        external_id=external_id,
        with_text=include == "content",
    )
    return SourcePage(
        data=[source_out(s, include_content=include == "content") for s in page],
        next_cursor=_encode_cursor(page[-1]) if more else None,
    )


@router.delete(
    "/v1/libraries/{library_id}/sources",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=rate_limited(204, errors(401, 403, 404, 409, 422, 429, 503)),
)
def delete_sources_by_external_id(
    library_id: str,
    principal: Writer,
    session: SessionDep,
    store: ChunkStoreDep,
    blobs: BlobStoreDep,
    settings: SettingsDep,
    external_id: Annotated[str, Query(min_length=1, max_length=255, description="Delete the sources with this external id.")],
) -> Response:
    library = repository.get_library(session, principal.workspace_id, library_id)
    source_cases.delete_by_external_id(session, settings, store, blobs, library, external_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/v1/sources/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=rate_limited(204, errors(401, 403, 404, 409, 422, 429, 503, descriptions={409: "The source is still being processed."})),
)
def delete_source(
    source_id: str, principal: Writer, session: SessionDep, settings: SettingsDep, store: ChunkStoreDep, blobs: BlobStoreDep
) -> Response:
    source = repository.get_source(session, principal.workspace_id, source_id)
    library = repository.get_library(session, principal.workspace_id, source.library_id)
    source_cases.delete_source(session, settings, store, blobs, library, source)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/sources/{source_id}/chunks", response_model=ChunkPage, responses=errors(401, 403, 404, 422))
def list_source_chunks(
    source_id: str,
    principal: Reader,
    session: SessionDep,
    store: ChunkStoreDep,
    offset: ChunkOffset = 0,
    limit: ChunkLimit = 100,
) -> ChunkPage:
    source = repository.get_source(session, principal.workspace_id, source_id)
    table = repository.get_library(session, principal.workspace_id, source.library_id).chunk_table
    chunks = store.list_chunks(table, source.id, offset=offset, limit=limit)
    return ChunkPage(data=[chunk_out(c) for c in chunks], total=store.count(table, source.id))


@router.get("/v1/libraries/{library_id}/chunks", response_model=ChunkPage, responses=errors(401, 403, 404, 422))
def list_library_chunks(
    library_id: str,
    principal: Reader,
    session: SessionDep,
    store: ChunkStoreDep,
    offset: ChunkOffset = 0,
    limit: ChunkLimit = 100,
) -> ChunkPage:
    """Every chunk of the library (its passages), by source, then by position in the source."""
    table = repository.get_library(session, principal.workspace_id, library_id).chunk_table
    chunks = store.list_chunks(table, None, offset=offset, limit=limit)
    return ChunkPage(data=[chunk_out(c) for c in chunks], total=store.count(table))


@router.post(
    "/v1/sources/{source_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=rate_limited(202, errors(
        401, 403, 404, 409, 422, 429, 503,
        descriptions={409: "Only failed or cancelled sources, and those of a job that is over, can be retried."},
    )),
)
def retry_source(source_id: str, principal: Writer, session: SessionDep, settings: SettingsDep, starter: StarterDep) -> JobOut:
    """Run a failed or cancelled source (or one its finished or lost job left behind) again in a new
    job (its bytes were kept for this)."""
    source = repository.get_source(session, principal.workspace_id, source_id)
    source_cases.check_retryable(session, settings, source)
    library = repository.get_library(session, principal.workspace_id, source.library_id)
    refuse_writes_while_reindexing(session, library)
    repository.reset_source(session, source)
    job = repository.create_job(session, library, [source])
    starter.start(job.id)
    session.refresh(job)  # the starter recorded its flow run in a session of its own
    return jobs_out(session, [job])[0]


def _encode_cursor(source: Source) -> str:
    return base64.urlsafe_b64encode(f"{source.created_at.isoformat()}|{source.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, source_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), source_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor", code="invalid_cursor") from None
