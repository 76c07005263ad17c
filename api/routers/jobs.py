from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from api.auth import Reader
from api.deps import SessionDep
from api.orchestration import prefect_run_url
from api.schemas import JobCounts, JobOut, JobPage, Progress
from storage import repository
from storage.tables import IngestJob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(job: IngestJob) -> JobOut:
    return JobOut(
        id=job.id,
        library_id=job.library_id,
        status=job.status.value,
        progress=Progress(current=job.progress_current, total=job.progress_total),
        source_ids=job.source_ids,
        counts=JobCounts(
            completed=job.completed_count,
            partial=job.partial_count,
            failed=job.failed_count,
            duplicate=job.duplicate_count,
        ),
        chunk_count=job.chunk_count,
        error=job.error,
        flow_run_id=job.flow_run_id,
        prefect_url=prefect_run_url(job.flow_run_id),
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, principal: Reader, session: SessionDep) -> JobOut:
    return job_out(repository.get_job(session, principal.workspace_id, job_id))


@router.get("", response_model=JobPage)
def list_jobs(
    principal: Reader,
    session: SessionDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    library_id: str | None = None,
    status: str | None = None,
) -> JobPage:
    query = select(IngestJob).where(IngestJob.workspace_id == principal.workspace_id)
    if library_id:
        query = query.where(IngestJob.library_id == library_id)
    if status:
        query = query.where(IngestJob.status == status)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(IngestJob.created_at).desc(), col(IngestJob.id).desc()).offset((page - 1) * page_size).limit(page_size)
    ).all()
    return JobPage(data=[job_out(j) for j in rows], total=total, page=page, page_size=page_size)
