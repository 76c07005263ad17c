"""Queries and state changes on the SQL tables, shared by the flows, the API and the CLI."""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from gristmill.errors import Conflict, InvalidRequest, NotFound, SourceCancelled
from storage import webhooks
from storage.tables import (
    FINAL_SOURCE_STATUSES,
    STORED_SOURCE_STATUSES,
    IngestJob,
    JobKind,
    JobStatus,
    JobTrigger,
    Library,
    Source,
    SourceStatus,
    Workspace,
    as_utc,
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


def create_workspace(session: Session, name: str) -> Workspace:
    workspace = Workspace(name=name)
    session.add(workspace)
    _commit_unique(session, Conflict(f"a workspace named {name!r} already exists", code="workspace_exists"))
    return workspace


def _commit_unique(session: Session, conflict: Conflict) -> None:
    """Commit, or raise `conflict` when a unique name is taken (also by another process meanwhile)."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise conflict from None


def find_workspace_by_name(session: Session, name: str) -> Workspace | None:
    return session.exec(select(Workspace).where(Workspace.name == name)).first()


def get_workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"workspace {workspace_id} not found", code="workspace_not_found")
    return workspace


def list_workspaces(session: Session) -> list[Workspace]:
    return list(session.exec(select(Workspace).order_by(Workspace.name)))


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
    instructions: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Library:
    library = Library(
        workspace_id=workspace_id,
        name=name,
        description=description,
        instructions=instructions,
        metadata_=metadata or {},
        embedding_model=embedding_model,
        embedding_dim=embedding_dim,
        chunk_max_tokens=chunk_max_tokens,
        chunk_overlap_tokens=chunk_overlap_tokens,
    )
    session.add(library)
    _commit_unique(session, Conflict(f"a library named {name!r} already exists in this workspace", code="library_exists"))
    return library


def find_library(session: Session, library_id: str) -> Library | None:
    return session.get(Library, library_id)


def get_library(session: Session, workspace_id: str, library_id: str) -> Library:
    library = session.get(Library, library_id)
    if library is None or library.workspace_id != workspace_id:
        raise NotFound(f"library {library_id} not found", code="library_not_found")
    return library


def find_library_by_name(session: Session, workspace_id: str, name: str) -> Library | None:
    return session.exec(
        select(Library).where(Library.workspace_id == workspace_id, Library.name == name)
    ).first()


def list_libraries(
    session: Session,
    workspace_id: str,
    *,
    name: str | None = None,
    limit: int | None = None,
    after: str | None = None,
    before: str | None = None,
    ascending: bool = True,
) -> tuple[list[Library], bool]:
    """The workspace's libraries in creation order (newest first unless `ascending`), whose name
    contains `name` (case-insensitive), created after the library `after` and before the library
    `before`; at most `limit` of them, and whether more follow."""
    query = select(Library).where(Library.workspace_id == workspace_id)
    if name:
        query = query.where(func.lower(Library.name).contains(name.lower(), autoescape=True))
    for cursor, later in ((after, True), (before, False)):
        if cursor:
            query = query.where(_created_beside(session, workspace_id, cursor, later=later))
    order = (col(Library.created_at), col(Library.id))
    query = query.order_by(*(order if ascending else [c.desc() for c in order]))
    rows = list(session.exec(query.limit(limit + 1) if limit else query))
    more = limit is not None and len(rows) > limit
    return rows[:limit] if limit else rows, more


def _created_beside(session: Session, workspace_id: str, library_id: str, *, later: bool):
    cursor = session.get(Library, library_id)
    if cursor is None or cursor.workspace_id != workspace_id:
        side = "after" if later else "before"
        raise InvalidRequest(f"{side}={library_id} names no library of this workspace", code="invalid_cursor")
    created_at, last_id = cursor.created_at, cursor.id
    if later:
        return or_(Library.created_at > created_at, and_(Library.created_at == created_at, Library.id > last_id))
    return or_(Library.created_at < created_at, and_(Library.created_at == created_at, Library.id < last_id))


def upsert_libraries(session: Session, workspace_id: str, entries: Sequence[dict[str, Any]]) -> list[tuple[Library, bool]]:
    """Create or update libraries by name, all in one transaction: each entry holds `name` and the
    Library fields to set (absent ones keep their value, or take the entry's defaults when created).
    Returns each library and whether it was created; raises Conflict (nothing written) when an
    existing library would change its embedding model."""
    names = [entry["name"] for entry in entries]
    existing = {
        library.name: library
        for library in session.exec(select(Library).where(Library.workspace_id == workspace_id, col(Library.name).in_(names)))
    }
    done: list[tuple[Library, bool]] = []
    now = utcnow()
    for entry in entries:
        fields = {k: v for k, v in entry.items() if k not in ("name", "defaults")}
        library = existing.get(entry["name"])
        if library is None:
            library = Library(workspace_id=workspace_id, name=entry["name"], **{**entry.get("defaults", {}), **fields})
            done.append((library, True))
        else:
            if fields.get("embedding_model", library.embedding_model) != library.embedding_model:
                session.rollback()
                raise Conflict(
                    f"library {library.name!r} embeds with {library.embedding_model}; change its model with "
                    f"POST /v1/libraries/{library.id}/reindex",
                    code="embedding_model_in_use",
                    details={"library_id": library.id, "embedding_model": library.embedding_model},
                )
            for field_name, value in fields.items():
                setattr(library, field_name, value)
            library.updated_at = now
            done.append((library, False))
        session.add(library)
    try:
        session.commit()
    except IntegrityError:  # a name created concurrently: the caller may simply send the batch again
        session.rollback()
        raise Conflict("a library of this batch was created meanwhile; send the batch again", code="library_exists") from None
    return done


def update_library(session: Session, library: Library, *, name: str | None = None, **fields: Any) -> Library:
    """Change the given fields (None leaves one as it is); a new name must be free in the workspace."""
    if name is not None and name != library.name:
        if find_library_by_name(session, library.workspace_id, name):
            raise Conflict(f"a library named {name!r} already exists in this workspace", code="library_exists")
        library.name = name
    for field_name, value in fields.items():
        if value is not None:
            setattr(library, field_name, value)
    library.updated_at = utcnow()
    session.add(library)
    session.commit()
    return library


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


def create_job(
    session: Session,
    library: Library,
    sources: Iterable[Source],
    *,
    kind: JobKind = JobKind.ingest,
    parameters: dict[str, Any] | None = None,
    trigger: JobTrigger = JobTrigger.request,
) -> IngestJob:
    """Store a job and its sources in one transaction, sources already final (duplicates) included;
    a job whose sources are all final already is finished at once (nothing is left to run).

    A job's sources are the sources whose `job_id` names it, in the order they were created: a
    retried source moves to its new job. Reindex and prune jobs start without sources.
    """
    sources = list(sources)
    job = IngestJob(
        workspace_id=library.workspace_id,
        library_id=library.id,
        kind=kind,
        parameters=parameters or {},
        progress_total=len(sources),
        trigger=trigger,
    )
    previous: datetime | None = None
    for source in sources:
        source.job_id = job.id
        source.workspace_id = library.workspace_id
        source.library_id = library.id
        if previous is not None and as_utc(source.created_at) <= previous:
            # Two sources made within one clock tick: the order they were given in stays their order.
            source.created_at = previous + timedelta(microseconds=1)
        previous = as_utc(source.created_at)
        session.add(source)
        webhooks.record_source_final(session, source, job)
    session.add(job)
    _count_final_sources(job, sources)
    if kind == JobKind.ingest and sources and job.progress_current >= job.progress_total:
        _finish(job, sources)
        webhooks.record_job_finished(session, job)
    session.commit()
    return job


def list_jobs(
    session: Session, workspace_id: str, *, page: int, page_size: int, library_id: str | None = None, status: str | None = None
) -> tuple[list[IngestJob], int]:
    """One page of the workspace's jobs, newest first, and how many there are in all."""
    query = select(IngestJob).where(IngestJob.workspace_id == workspace_id)
    if library_id:
        query = query.where(IngestJob.library_id == library_id)
    if status:
        query = query.where(IngestJob.status == status)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(IngestJob.created_at).desc(), col(IngestJob.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return list(rows), int(total)


def list_sources(
    session: Session,
    library_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    status: SourceStatus | None = None,
    external_id: str | None = None,
    with_text: bool = False,
) -> tuple[list[Source], bool]:
    """Up to `limit` of the library's sources in creation order, after the (created_at, id) cursor;
    and whether more follow. `with_text` loads their extracted text too."""
    query = select(Source).options(*(() if with_text else (WITHOUT_TEXT,))).where(Source.library_id == library_id)
    # A removed source is a record of a removal, listed only when asked for.
    query = query.where(Source.status == status) if status else query.where(Source.status != SourceStatus.removed)
    if external_id:
        query = query.where(Source.external_id == external_id)
    if after:
        created_at, last_id = after
        query = query.where(or_(Source.created_at > created_at, and_(Source.created_at == created_at, Source.id > last_id)))
    rows = list(session.exec(query.order_by(Source.created_at, Source.id).limit(limit + 1)).all())
    return rows[:limit], len(rows) > limit


def find_job(session: Session, job_id: str) -> IngestJob | None:
    return session.get(IngestJob, job_id)


def find_source(session: Session, source_id: str) -> Source | None:
    return session.get(Source, source_id)


def delete_source(session: Session, source: Source) -> None:
    session.delete(source)
    session.commit()


def sources_with_external_id(session: Session, library_id: str, external_id: str) -> list[Source]:
    """Every source of the library with this external id (removal records aside)."""
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id, Source.external_id == external_id, Source.status != SourceStatus.removed
    )
    return list(session.exec(query.order_by(Source.created_at, Source.id)))


def source_for_url(session: Session, library_id: str, url: str, external_id: str) -> Source | None:
    """The source that already stands for `url` (under its default external id) in the library:
    stored, or on its way to being stored."""
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id,
        Source.origin == "url",
        Source.uri == url,
        Source.external_id == external_id,
        col(Source.status).not_in((SourceStatus.failed, SourceStatus.duplicate, SourceStatus.removed)),
    )
    return session.exec(query.order_by(col(Source.created_at).desc())).first()


def sources_named(session: Session, library_id: str, names: Iterable[str]) -> dict[str, Source]:
    """Uploaded files of the library by file name (stored or in flight), for duplicate_handling."""
    names = list(names)
    if not names:
        return {}
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id,
        Source.origin == "file",
        col(Source.uri).in_(names),
        col(Source.status).not_in((SourceStatus.failed, SourceStatus.duplicate, SourceStatus.removed)),
    )
    return {source.uri: source for source in session.exec(query.order_by(Source.created_at, Source.id))}


def file_names_taken(session: Session, library_id: str, stem: str) -> set[str]:
    """File names of the library's uploads that start with `stem`, whatever their state."""
    query = select(Source.uri).where(
        Source.library_id == library_id, Source.origin == "file", col(Source.uri).startswith(stem, autoescape=True)
    )
    return {uri for uri in session.exec(query) if uri}


def stored_source_ids(session: Session, library_id: str) -> list[str]:
    """Ids of the library's sources that hold chunks, oldest first."""
    query = select(Source.id).where(Source.library_id == library_id, col(Source.status).in_(STORED_SOURCE_STATUSES))
    return list(session.exec(query.order_by(Source.created_at, Source.id)))


def sources_left_out(session: Session, library_id: str, keep: set[str], prefix: str | None) -> list[str]:
    """Ids of the library's finished sources that a full-set declaration of `keep` (the external ids
    there are, under `prefix` if given) leaves out. Without a prefix every source counts, those
    without an external id too; with one, only sources whose external id starts with it."""
    query = select(Source.id, Source.external_id).where(
        Source.library_id == library_id,
        col(Source.status).in_((*STORED_SOURCE_STATUSES, SourceStatus.failed, SourceStatus.duplicate)),
    )
    if prefix:
        query = query.where(col(Source.external_id).startswith(prefix, autoescape=True))
    rows = session.exec(query.order_by(Source.created_at, Source.id))
    return [source_id for source_id, external_id in rows if external_id not in keep]


def record_removal(session: Session, source: Source, reason: str, job_id: str | None) -> list[str]:
    """A source removed with its chunks (by the caller, first) stays as a record: status `removed`,
    `error` saying why, under the job that removed it. Returns the blob path to delete, if any."""
    blob = [source.blob_path] if source.blob_path else []
    source.status = SourceStatus.removed
    source.error = reason
    source.error_code = "removed"
    source.chunk_count = 0
    source.blob_path = None
    source.job_id = job_id
    source.updated_at = source.processed_at = utcnow()
    session.add(source)
    session.commit()
    return blob


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
    query = select(Source).options(WITHOUT_TEXT).where(Source.job_id == job.id)
    return list(session.exec(query.order_by(Source.created_at, Source.id)))


def job_source_ids(session: Session, job_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each job's source ids, in order, for many jobs at once."""
    found: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    rows = session.exec(
        select(Source.job_id, Source.id).where(col(Source.job_id).in_(list(job_ids))).order_by(Source.created_at, Source.id)
    )
    for job_id, source_id in rows:
        found[job_id].append(source_id)
    return found


def stored_original(session: Session, source: Source) -> Source | None:
    """The stored source that `source` repeats, if any: then nothing of it is stored. The dedupe rule.

    With an external id (or a file it `replaces`), only the source it would replace counts, and only
    when its bytes are the same (an unchanged upsert); without one, any other source of the library with the same bytes that
    is stored or on its way to being stored, and of two equal sources in flight the one created first.
    """
    if source.content_hash is None:
        return None
    if source.replaces:  # an upload replacing a file of its name: an upsert keyed by that file
        current = session.get(Source, source.replaces, options=[WITHOUT_TEXT])
        stored = current is not None and current.status in STORED_SOURCE_STATUSES
        return current if stored and current.content_hash == source.content_hash else None
    if source.external_id:
        current = current_source_for_external_id(
            session, source.library_id, source.external_id, exclude_source_id=source.id
        )
        return current if current and current.content_hash == source.content_hash else None
    original = find_stored_duplicate(session, source.library_id, source.content_hash, exclude_source_id=source.id)
    if original and (as_utc(original.created_at), original.id) < (as_utc(source.created_at), source.id):
        return original
    return None


def duplicate_fields(source: Source, original: Source) -> dict[str, Any]:
    """What a source that repeats `original` records: nothing stored, and where the content is."""
    return {
        "status": SourceStatus.duplicate,
        "duplicate_of": original.id,
        "chunk_count": 0,
        "title": source.title or original.title,
        "content_format": original.content_format or source.content_format,
    }


def find_stored_duplicate(
    session: Session, library_id: str, content_hash: str, *, exclude_source_id: str | None = None
) -> Source | None:
    """The earliest source in the library with this content that is stored or on its way to being stored."""
    query = select(Source).options(WITHOUT_TEXT).where(
        Source.library_id == library_id,
        Source.content_hash == content_hash,
        col(Source.status).not_in((SourceStatus.failed, SourceStatus.duplicate, SourceStatus.removed)),
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
    """Change a source's fields. A cancelled source takes no other status but stored: the flow run
    learns of the cancel here (SourceCancelled) at its next stage, while a source whose chunks
    were committed before the cancel is stored, and says so."""
    source = session.get(Source, source_id, options=[WITHOUT_TEXT])
    if source is None:
        raise NotFound(f"source {source_id} not found", code="source_not_found")
    if source.status == SourceStatus.cancelled and "status" in fields and fields["status"] not in STORED_SOURCE_STATUSES:
        raise SourceCancelled(f"source {source_id} was cancelled with its job")
    for name, value in fields.items():
        setattr(source, name, value)
    source.updated_at = utcnow()
    if "status" in fields and SourceStatus(fields["status"]).is_final:
        source.processed_at = source.updated_at
    webhooks.record_source_final(session, source)
    session.add(source)
    session.commit()
    return source


def delete_replaced_sources(
    session: Session, library_id: str, external_id: str | None, keep_source_id: str, *, also: Sequence[str] = ()
) -> list[str]:
    """Remove the rows of the sources an upsert replaced (those of its external id, and `also`);
    their chunks are already gone. Returns the blob paths the caller should remove."""
    conditions = [col(Source.id).in_(list(also))] if also else []
    if external_id:
        conditions.append(Source.external_id == external_id)
    if not conditions:
        return []
    replaced = session.exec(
        select(Source).where(
            Source.library_id == library_id,
            or_(*conditions),
            Source.id != keep_source_id,
            col(Source.status).in_(FINAL_SOURCE_STATUSES),
        )
    ).all()
    blobs = [s.blob_path for s in replaced if s.blob_path]
    for source in replaced:
        session.delete(source)
    session.commit()
    return blobs


def start_job(session: Session, job_id: str, flow_run_id: str | None) -> IngestJob:
    """A flow run starts working on the job: one more attempt, and its first heartbeat."""
    job = _job(session, job_id)
    job.status = JobStatus.processing
    if flow_run_id:
        job.flow_run_id = flow_run_id
    job.updated_at = job.heartbeat_at = utcnow()
    job.attempts += 1
    session.add(job)
    session.commit()
    return job


def renew_heartbeat(session: Session, job_id: str, flow_run_id: str) -> bool:
    """The job's flow run is alive; False once the job is no longer its to renew (finished, or
    taken as lost and given to another run)."""
    renewed = session.exec(
        update(IngestJob)
        .where(col(IngestJob.id) == job_id, col(IngestJob.flow_run_id) == flow_run_id, col(IngestJob.status) == JobStatus.processing)
        .values(heartbeat_at=utcnow())
    )
    session.commit()
    return renewed.rowcount == 1


def release_job(session: Session, job_id: str, flow_run_id: str) -> None:
    """The job's flow run stops before the job is done (a graceful stop): its lease ends now, so the
    next reconciliation runs it again without waiting for the lease to run out."""
    session.exec(
        update(IngestJob)
        .where(col(IngestJob.id) == job_id, col(IngestJob.flow_run_id) == flow_run_id, col(IngestJob.status) == JobStatus.processing)
        .values(heartbeat_at=None)
    )
    session.commit()


def is_lease_expired(job: IngestJob, cutoff: datetime) -> bool:
    """Whether a processing job's heartbeat is older than `cutoff` (or was given up)."""
    return job.status == JobStatus.processing and (job.heartbeat_at is None or as_utc(job.heartbeat_at) < cutoff)


def claim_lost_job(session: Session, job: IngestJob, cutoff: datetime, note: str) -> bool:
    """Take a job whose flow run was lost back to `pending`, with `note` as its error, if no one did
    since `job` was read: a compare-and-set on its flow run, attempts and stale heartbeat, so of
    several reconcilers (one per API process) exactly one wins. Whether this one did.

    A run lost before it started working on the job counts as an attempt here (a run that started
    counted itself), which also gives its successor a new idempotency key."""
    same_run = col(IngestJob.flow_run_id).is_(None) if job.flow_run_id is None else col(IngestJob.flow_run_id) == job.flow_run_id
    claimed = session.exec(
        update(IngestJob)
        .where(
            col(IngestJob.id) == job.id,
            col(IngestJob.status).in_([JobStatus.pending, JobStatus.processing]),
            col(IngestJob.attempts) == job.attempts,
            same_run,
            or_(col(IngestJob.heartbeat_at).is_(None), col(IngestJob.heartbeat_at) < cutoff),
        )
        .values(
            status=JobStatus.pending,
            flow_run_id=None,
            heartbeat_at=None,
            attempts=IngestJob.attempts + (0 if job.status == JobStatus.processing else 1),
            error=note,
            updated_at=utcnow(),
        )
    )
    session.commit()
    return claimed.rowcount == 1


def record_flow_run(session: Session, job_id: str, flow_run_id: str, *, clear_error_starting: str) -> None:
    """The job's flow run is made; an error that begins with `clear_error_starting` (a note of ours
    that it waited for one) goes, a finished run's error stays."""
    job = session.get(IngestJob, job_id)
    if job is None:
        return
    job.flow_run_id = flow_run_id
    if (job.error or "").startswith(clear_error_starting):
        job.error = None
    session.add(job)
    session.commit()


def record_start_deferred(session: Session, job_id: str, note: str) -> None:
    """The job's flow run could not be made yet: why, unless a run was made meanwhile."""
    job = session.get(IngestJob, job_id)
    if job is None or job.flow_run_id:
        return
    job.error = note
    session.add(job)
    session.commit()


def jobs_waiting_for_a_run(session: Session, note_prefix: str) -> list[tuple[str, JobKind, int]]:
    """Pending jobs without a flow run whose error says they wait for one: (id, kind, attempts so far)."""
    return [
        (job.id, JobKind(job.kind), job.attempts)
        for job in unfinished_jobs(session)
        if job.status == JobStatus.pending and not job.flow_run_id and (job.error or "").startswith(note_prefix)
    ]


def refresh_job_progress(session: Session, job_id: str) -> IngestJob:
    """Recount the job's sources; the job is final once every source is."""
    job = _job(session, job_id)
    sources = job_sources(session, job)
    job.progress_total = len(sources)
    _count_final_sources(job, sources)
    if job.progress_current >= job.progress_total:
        _finish(job, sources)
    webhooks.record_job_finished(session, job)
    job.updated_at = utcnow()
    session.add(job)
    session.commit()
    return job


def _finish(job: IngestJob, sources: Sequence[Source]) -> None:
    job.chunk_count = sum(s.chunk_count or 0 for s in sources if s.status in STORED_SOURCE_STATUSES)
    job.status = _job_outcome(job)
    job.finished_at = utcnow()
    failed = [s for s in sources if s.status == SourceStatus.failed]
    job.error = f"{len(failed)} of {len(sources)} sources failed; first: {failed[0].error}" if failed else None


def count_job_step(
    session: Session, job_id: str, *, completed: int = 0, failed: int = 0, removed: int = 0, chunks: int = 0,
    error: str | None = None,
) -> None:
    """One step of a reindex or prune job done: its counts move on (their sources are not the job's).
    One UPDATE, so steps counted by concurrent threads all count."""
    values: dict[str, Any] = {
        "completed_count": IngestJob.completed_count + completed,
        "failed_count": IngestJob.failed_count + failed,
        "removed_count": IngestJob.removed_count + removed,
        "chunk_count": IngestJob.chunk_count + chunks,
        "progress_current": IngestJob.progress_current + completed + failed + removed,
        "updated_at": utcnow(),
    }
    if error:
        values["error"] = func.coalesce(IngestJob.error, error)
    session.execute(update(IngestJob).where(IngestJob.id == job_id).values(**values))
    session.commit()


def set_job_total(session: Session, job_id: str, total: int) -> IngestJob:
    job = _job(session, job_id)
    job.progress_total = total
    job.updated_at = utcnow()
    session.add(job)
    session.commit()
    return job


def finish_job(session: Session, job_id: str, *, error: str | None = None) -> IngestJob:
    """End a reindex or prune job from its counts; `error` (a reason it stopped) fails it."""
    job = _job(session, job_id)
    job.status = JobStatus.failed if error else _job_outcome(job)
    if error:
        job.error = error
    elif job.failed_count:
        job.error = f"{job.failed_count} of {job.progress_total} sources failed; first: {job.error}"
    job.finished_at = job.updated_at = utcnow()
    session.add(job)
    session.commit()
    return job


def switch_chunk_table(
    session: Session, library_id: str, *, table: str, embedding_model: str, embedding_dim: int,
    counts: dict[str, tuple[int, int]],
) -> Library:
    """A re-index to another model is done: the library reads `table` from now on, and its sources'
    chunk and token counts are the new table's, in one commit."""
    library = session.get(Library, library_id)
    library.chunk_table_key = None if table == library.id else table
    library.embedding_model = embedding_model
    library.embedding_dim = embedding_dim
    library.updated_at = utcnow()
    session.add(library)
    for source_id, (chunks, tokens) in counts.items():
        source = session.get(Source, source_id, options=[WITHOUT_TEXT])
        if source is not None:
            source.chunk_count, source.token_count = chunks, tokens
            session.add(source)
    session.commit()
    return library


def unfinished_job_of_kind(session: Session, library_id: str, kind: JobKind) -> IngestJob | None:
    query = select(IngestJob).where(
        IngestJob.library_id == library_id,
        IngestJob.kind == kind,
        col(IngestJob.status).in_((JobStatus.pending, JobStatus.processing)),
    )
    return session.exec(query.order_by(IngestJob.created_at)).first()


def unfinished_ingest_jobs_before(session: Session, library_id: str, job: IngestJob) -> list[str]:
    """Ids of the library's ingest jobs created before `job` that have not finished."""
    query = select(IngestJob.id).where(
        IngestJob.library_id == library_id,
        IngestJob.kind == JobKind.ingest,
        IngestJob.created_at <= job.created_at,
        IngestJob.id != job.id,
        col(IngestJob.status).in_((JobStatus.pending, JobStatus.processing)),
    )
    return list(session.exec(query))


def fail_job(session: Session, job_id: str, message: str) -> IngestJob:
    """End a job whose flow run died: its unfinished sources fail with `message`."""
    job = _job(session, job_id)
    if job.kind != JobKind.ingest:
        return finish_job(session, job_id, error=message)
    for source in job_sources(session, job):  # a source retried since belongs to its new job
        if not source.status.is_final:
            source.status = SourceStatus.failed
            source.error = message
            source.error_code = "flow_run_failed"
            source.updated_at = source.processed_at = utcnow()
            webhooks.record_source_final(session, source, job)
            session.add(source)
    session.commit()
    return refresh_job_progress(session, job_id)


def cancel_job(session: Session, job_id: str, reason: str) -> IngestJob:
    """End an unfinished job as cancelled: its sources not yet stored are `cancelled` with `reason`
    (each announced as final); a job already final stays as it is."""
    job = _job(session, job_id)
    if job.status.is_final:
        return job
    if job.kind == JobKind.ingest:
        for source in job_sources(session, job):
            if not source.status.is_final:
                source.status = SourceStatus.cancelled
                source.error, source.error_code = reason, "cancelled"
                source.updated_at = source.processed_at = utcnow()
                webhooks.record_source_final(session, source, job)
                session.add(source)
        session.commit()
        job = refresh_job_progress(session, job_id)
    if not job.status.is_final:  # a reindex or prune job counts steps, not sources
        job.status, job.error = JobStatus.cancelled, reason
        job.finished_at = job.updated_at = utcnow()
        webhooks.record_job_finished(session, job)
        session.add(job)
        session.commit()
    return job


def source_is_settled(session: Session, source: Source, lease_cutoff: datetime) -> bool:
    """Whether nothing works on the source any more: it is final, or its job is (finished, cancelled,
    gone), or its job's flow run was lost (lease older than `lease_cutoff`). A caller may delete or
    retry a settled source."""
    if source.status.is_final:
        return True
    job = session.get(IngestJob, source.job_id) if source.job_id else None
    return job is None or job.status.is_final or is_lease_expired(job, lease_cutoff)


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
    job.removed_count = statuses.count(SourceStatus.removed)
    job.cancelled_count = statuses.count(SourceStatus.cancelled)
    job.progress_current = (
        job.completed_count + job.partial_count + job.failed_count + job.duplicate_count + job.removed_count
        + job.cancelled_count
    )


def _job_outcome(job: IngestJob) -> JobStatus:
    if job.cancelled_count:
        return JobStatus.cancelled
    succeeded = job.completed_count + job.duplicate_count + job.removed_count
    if job.failed_count == 0 and job.partial_count == 0:
        return JobStatus.completed
    if succeeded == 0 and job.partial_count == 0:
        return JobStatus.failed
    return JobStatus.partial


def reset_source(session: Session, source: Source) -> Source:
    """Put a failed, cancelled or stuck source back in the queue for a retry."""
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
    webhooks.delete_library_subscriptions(session, library.id)
    session.delete(library)
    session.commit()
    return blobs


def stored_url_sources(session: Session) -> list[Source]:
    return list(
        session.exec(
            select(Source).options(WITHOUT_TEXT).where(
                Source.origin == "url",
                col(Source.status).in_(STORED_SOURCE_STATUSES),
            )
        )
    )


def record_sync_outcome(
    session: Session, source_id: str, *, error: str | None, error_code: str | None, gone: bool
) -> int:
    """What a sync found for a stored URL source: the error of a failed fetch (None: the page was
    there, unchanged) and whether the page is gone (404/410). Returns the consecutive syncs that found
    it gone."""
    source = session.get(Source, source_id, options=[WITHOUT_TEXT])
    if source is None:
        return 0
    source.error = f"the last sync failed: {error}" if error else None
    source.error_code = error_code
    source.gone_syncs = source.gone_syncs + 1 if gone else 0
    source.updated_at = utcnow()
    session.add(source)
    session.commit()
    return source.gone_syncs


def forget_job_if_empty(session: Session, job_id: str) -> bool:
    """Delete a job no source names any more (a sync that changed nothing); True if it went."""
    job = session.get(IngestJob, job_id)
    if job is None:
        return True
    if job_sources(session, job):
        refresh_job_progress(session, job_id)
        return False
    session.delete(job)
    session.commit()
    return True
