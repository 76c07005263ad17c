import base64
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from api.auth import Reader, Writer
from api.deps import ChunkStoreDep, SessionDep, StarterDep
from api.routers.jobs import jobs_out
from api.schemas import ChunkOut, ChunkPage, JobOut, Progress, SourceOut, SourcePage
from gristmill.errors import Conflict, InvalidRequest
from storage import repository
from storage.blobs import remove_blob
from storage.tables import Source, SourceStatus

router = APIRouter(tags=["sources"])


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
        created_at=source.created_at,
        updated_at=source.updated_at,
        processed_at=source.processed_at,
        content=source.extracted_text if include_content else None,
    )


@router.get("/v1/sources/{source_id}", response_model=SourceOut)
def get_source(
    source_id: str, principal: Reader, session: SessionDep, include: Literal["content"] | None = None
) -> SourceOut:
    return source_out(repository.get_source(session, principal.workspace_id, source_id), include_content=include == "content")


@router.get("/v1/libraries/{library_id}/sources", response_model=SourcePage)
def list_sources(
    library_id: str,
    principal: Reader,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    status: SourceStatus | None = None,
    external_id: str | None = None,
) -> SourcePage:
    library = repository.get_library(session, principal.workspace_id, library_id)
    page, more = repository.list_sources(
        session,
        library.id,
        limit=limit,
        after=_decode_cursor(cursor) if cursor else None,
        status=status,
        external_id=external_id,
    )
    return SourcePage(data=[source_out(s) for s in page], next_cursor=_encode_cursor(page[-1]) if more else None)


@router.delete("/v1/sources/{source_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(source_id: str, principal: Writer, session: SessionDep, store: ChunkStoreDep) -> Response:
    source = repository.get_source(session, principal.workspace_id, source_id)
    if not source.status.is_final:
        raise Conflict("the source is still being processed; delete it when its job has finished", code="source_busy")
    store.delete_source(source.library_id, source.id)
    remove_blob(source.blob_path)
    repository.delete_source(session, source)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/sources/{source_id}/chunks", response_model=ChunkPage)
def list_source_chunks(
    source_id: str,
    principal: Reader,
    session: SessionDep,
    store: ChunkStoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ChunkPage:
    source = repository.get_source(session, principal.workspace_id, source_id)
    chunks = store.list_chunks(source.library_id, source.id, offset=offset, limit=limit)
    return ChunkPage(
        data=[ChunkOut(chunk_id=c.chunk_id, chunk_index=c.chunk_index, text=c.text, metadata=c.metadata) for c in chunks],
        total=store.count(source.library_id, source.id),
    )


@router.post("/v1/sources/{source_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def retry_source(source_id: str, principal: Writer, session: SessionDep, starter: StarterDep) -> JobOut:
    """Run a failed source again in a new job (its bytes were kept for this)."""
    source = repository.get_source(session, principal.workspace_id, source_id)
    if source.status != SourceStatus.failed:
        raise Conflict(f"only failed sources can be retried; this one is {source.status.value}", code="not_retryable")
    library = repository.get_library(session, principal.workspace_id, source.library_id)
    repository.reset_source(session, source)
    job = repository.create_job(session, library, [source])
    starter.start(job.id)
    return jobs_out(session, [repository.get_job(session, principal.workspace_id, job.id)])[0]


def _encode_cursor(source: Source) -> str:
    return base64.urlsafe_b64encode(f"{source.created_at.isoformat()}|{source.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, source_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), source_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor", code="invalid_cursor") from None



