"""Queries and state changes on the SQL tables, shared by the flows, the API and the CLI."""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from gristmill.errors import Conflict, NotFound
from storage.tables import (
    FINAL_SOURCE_STATUSES,
    IngestJob,
    JobStatus,
    Library,
    Source,
    SourceStatus,
    Workspace,
    utcnow,
)

# A source's extracted text can be megabytes (a 10 MB CSV's is 10 MB) and is read only for
# `?include=content`; loading it with every progress update made embedding a big file read it
# again per batch of 32 chunks. Queries that never need it leave it out, and touching it raises.
WITHOUT_TEXT = defer(Source.extracted_text, raiseload=True)

DEFAULT_WORKSPACE = "default"


# --- workspaces and libraries ------------------------------------------------------------------


def ensure_workspace(session: Session, name: str = DEFAULT_WORKSPACE) -> Workspace:
    workspace = session.exec(select(Workspace).where(Workspace.name == name)).first()
    if workspace is None:
        workspace = Workspace(name=name)
        session.add(workspace)
        try:
            session.commit()
        except IntegrityError:  # created concurrently by another process
            session.rollback()
            return session.exec(select(Workspace).where(Workspace.name == name)).one()
    return workspace


def create_library(
    session: Session,
    workspace_id: str,
    *,
    name: str,
    embedding_model: str,
    embedding_dim: int,
    chunk_max_tokens: int,
    chunk_overlap_tokens: int,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Library:
    library = Library(
        workspace_id=workspace_id,
        name=name,
        description=description,
        metadata_=metadata or {},
        embedding_model=embedding_model,
        embedding_dim=embedding_dim,
        chunk_max_tokens=chunk_max_tokens,
        chunk_overlap_tokens=chunk_overlap_tokens,
    )
    session.add(library)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a library named {name!r} already exists in this workspace", code="library_exists") from None
    return library


def get_library(session: Session, workspace_id: str, library_id: str) -> Library:
    library = session.get(Library, library_id)
    if library is None or library.workspace_id != workspace_id:
        raise NotFound(f"library {library_id} not found", code="library_not_found")
    return library


def find_library_by_name(session: Session, workspace_id: str, name: str) -> Library | None:
    return session.exec(
        select(Library).where(Library.workspace_id == workspace_id, Library.name == name)
    ).first()


def list_libraries(session: Session, workspace_id: str) -> list[Library]:
    return list(session.exec(select(Library).where(Library.workspace_id == workspace_id).order_by(Library.name)))


def library_source_counts(session: Session, library_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(sources stored, chunks stored) per library, counting only sources that hold chunks."""
    stored = (SourceStatus.completed, SourceStatus.partial)
    rows = session.exec(
        select(Source.library_id, func.count(), func.coalesce(func.sum(Source.chunk_count), 0))
        .where(col(Source.library_id).in_(library_ids), col(Source.status).in_(stored))
        .group_by(Source.library_id)
    ).all()
    counts = {library_id: (0, 0) for library_id in library_ids}
    counts.update({library_id: (int(n), int(chunks)) for library_id, n, chunks in rows})
    return counts


# --- sources and jobs --------------------------------------------------------------------------


def create_job(session: Session, library: Library, sources: Iterable[Source]) -> IngestJob:
    """Store a job and its sources in one transaction, sources already final (duplicates) included."""
    sources = list(sources)
    job = IngestJob(
        workspace_id=library.workspace_id,
        library_id=library.id,
        source_ids=[s.id for s in sources],
        progress_total=len(sources),
    )
    for source in sources:
        source.job_id = job.id
        source.workspace_id = library.workspace_id
        source.library_id = library.id
        session.add(source)
    session.add(job)
    _count_final_sources(job, sources)
    session.commit()
    return job


def get_job(session: Session, workspace_id: str, job_id: str) -> IngestJob:
    job = session.get(IngestJob, job_id)
    if job is None or job.workspace_id != workspace_id:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job


def get_source(session: Session, workspace_id: str, source_id: str) -> Source:
    source = session.get(Source, source_id)
    if source is None or source.workspace_id != workspace_id:
        raise NotFound(f"source {source_id} not found", code="source_not_found")
    return source


def job_sources(session: Session, job: IngestJob) -> list[Source]:
    by_id = {s.id: s for s in session.exec(select(Source).options(WITHOUT_TEXT).where(col(Source.id).in_(job.source_ids)))}
    return [by_id[i] for i in job.source_ids if i in by_id]


def find_stored_duplicate(
    session: Session, library_id: str, content_hash: str, *, exclude_source_id: str | None = None
) -> Source | None:
    """The earliest source in the library with this content that is stored or on its way to being stored."""
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id,
        Source.content_hash == content_hash,
        col(Source.status).not_in((SourceStatus.failed, SourceStatus.duplicate)),
    )
    if exclude_source_id:
        query = query.where(Source.id != exclude_source_id)
    return session.exec(query.order_by(Source.created_at, Source.id)).first()


def current_source_for_external_id(
    session: Session, library_id: str, external_id: str, *, exclude_source_id: str | None = None
) -> Source | None:
    """The stored source an upsert by `external_id` would replace."""
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id,
        Source.external_id == external_id,
        col(Source.status).in_((SourceStatus.completed, SourceStatus.partial)),
    )
    if exclude_source_id:
        query = query.where(Source.id != exclude_source_id)
    return session.exec(query.order_by(col(Source.processed_at).desc())).first()


def update_source(session: Session, source_id: str, **fields: Any) -> Source:
    source = session.get(Source, source_id, options=[WITHOUT_TEXT])
    if source is None:
        raise NotFound(f"source {source_id} not found", code="source_not_found")
    for name, value in fields.items():
        setattr(source, name, value)
    source.updated_at = utcnow()
    if "status" in fields and SourceStatus(fields["status"]).is_final:
        source.processed_at = source.updated_at
    session.add(source)
    session.commit()
    return source


def delete_replaced_sources(session: Session, library_id: str, external_id: str, keep_source_id: str) -> list[str]:
    """Remove the rows of sources an external-id upsert replaced; their chunks are already gone."""
    replaced = session.exec(
        select(Source).where(
            Source.library_id == library_id,
            Source.external_id == external_id,
            Source.id != keep_source_id,
            col(Source.status).in_(FINAL_SOURCE_STATUSES),
        )
    ).all()
    for source in replaced:
        session.delete(source)
    session.commit()
    return [s.id for s in replaced]


def start_job(session: Session, job_id: str, flow_run_id: str | None) -> IngestJob:
    job = _job(session, job_id)
    job.status = JobStatus.processing
    if flow_run_id:
        job.flow_run_id = flow_run_id
    job.updated_at = utcnow()
    session.add(job)
    session.commit()
    return job


def refresh_job_progress(session: Session, job_id: str) -> IngestJob:
    """Recount the job's sources; the job is final once every source is."""
    job = _job(session, job_id)
    sources = job_sources(session, job)
    _count_final_sources(job, sources)
    job.chunk_count = sum(s.chunk_count or 0 for s in sources if s.status in (SourceStatus.completed, SourceStatus.partial))
    if job.progress_current >= job.progress_total:
        job.status = _job_outcome(job)
        job.finished_at = utcnow()
        failed = [s for s in sources if s.status == SourceStatus.failed]
        job.error = (
            f"{len(failed)} of {len(sources)} sources failed; first: {failed[0].error}" if failed else None
        )
    job.updated_at = utcnow()
    session.add(job)
    session.commit()
    return job


def fail_job(session: Session, job_id: str, message: str) -> IngestJob:
    """End a job whose flow run died: its unfinished sources fail with `message`."""
    job = _job(session, job_id)
    for source in job_sources(session, job):
        # A source retried since belongs to its new job: this job's death is not its business.
        if source.job_id == job.id and not source.status.is_final:
            source.status = SourceStatus.failed
            source.error = message
            source.error_code = "flow_run_failed"
            source.updated_at = source.processed_at = utcnow()
            session.add(source)
    session.commit()
    return refresh_job_progress(session, job_id)


def unfinished_jobs(session: Session) -> list[IngestJob]:
    return list(
        session.exec(select(IngestJob).where(or_(IngestJob.status == JobStatus.pending, IngestJob.status == JobStatus.processing)))
    )


def _job(session: Session, job_id: str) -> IngestJob:
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job


def _count_final_sources(job: IngestJob, sources: Sequence[Source]) -> None:
    statuses = [s.status for s in sources]
    job.completed_count = statuses.count(SourceStatus.completed)
    job.partial_count = statuses.count(SourceStatus.partial)
    job.failed_count = statuses.count(SourceStatus.failed)
    job.duplicate_count = statuses.count(SourceStatus.duplicate)
    job.progress_current = job.completed_count + job.partial_count + job.failed_count + job.duplicate_count


def _job_outcome(job: IngestJob) -> JobStatus:
    succeeded = job.completed_count + job.duplicate_count
    if job.failed_count == 0 and job.partial_count == 0:
        return JobStatus.completed
    if succeeded == 0 and job.partial_count == 0:
        return JobStatus.failed
    return JobStatus.partial


def reset_source(session: Session, source: Source) -> Source:
    """Put a failed source back in the queue for a retry."""
    source.status = SourceStatus.pending
    source.error = source.error_code = None
    source.progress_current = source.progress_total = 0
    source.updated_at = utcnow()
    source.processed_at = None
    session.add(source)
    session.commit()
    return source


def delete_library(session: Session, library: Library) -> list[str]:
    """Delete a library with its sources and jobs; returns the blob paths the caller should remove."""
    sources = session.exec(select(Source).where(Source.library_id == library.id)).all()
    blobs = [s.blob_path for s in sources if s.blob_path]
    for source in sources:
        session.delete(source)
    for job in session.exec(select(IngestJob).where(IngestJob.library_id == library.id)).all():
        session.delete(job)
    session.delete(library)
    session.commit()
    return blobs


def stored_url_sources(session: Session) -> list[Source]:
    return list(
        session.exec(
            select(Source).options(WITHOUT_TEXT).where(
                Source.origin == "url",
                col(Source.status).in_((SourceStatus.completed, SourceStatus.partial)),
            )
        )
    )


def forget_unchanged_sync_sources(session: Session, job_id: str) -> None:
    """A re-sync that found nothing new leaves no trace: its `duplicate` sources (and empty job) go."""
    job = session.get(IngestJob, job_id)
    if job is None:
        return
    unchanged = [s for s in job_sources(session, job) if s.status == SourceStatus.duplicate]
    unchanged_ids = {s.id for s in unchanged}
    for source in unchanged:
        session.delete(source)
    job.source_ids = [i for i in job.source_ids if i not in unchanged_ids]
    job.progress_total = len(job.source_ids)
    if not job.source_ids:
        session.delete(job)
        session.commit()
        return
    session.add(job)
    session.commit()
    refresh_job_progress(session, job_id)
