from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Reader, Writer
from api.deps import SessionDep
from api.schemas import JobCounts, JobOut, JobPage, PageNumber, Progress, errors, rate_limited
from gristmill.usecases import jobs
from gristmill.usecases.orchestration import prefect_run_url
from storage import repository
from storage.tables import IngestJob, JobKind, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(job: IngestJob, source_ids: list[str]) -> JobOut:
    return JobOut(
        id=job.id,
        library_id=job.library_id,
        kind=JobKind(job.kind).value,
        status=job.status.value,
        progress=Progress(current=job.progress_current, total=job.progress_total),
        source_ids=source_ids,
        counts=JobCounts(
            completed=job.completed_count,
            partial=job.partial_count,
            failed=job.failed_count,
            duplicate=job.duplicate_count,
            removed=job.removed_count,
            cancelled=job.cancelled_count,
        ),
        chunk_count=job.chunk_count,
        error=job.error,
        flow_run_id=job.flow_run_id,
        prefect_url=prefect_run_url(job.flow_run_id),
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )


def jobs_out(session: SessionDep, jobs: list[IngestJob]) -> list[JobOut]:
    source_ids = repository.job_source_ids(session, [job.id for job in jobs])
    return [job_out(job, source_ids[job.id]) for job in jobs]


@router.get("/{job_id}", response_model=JobOut, responses=errors(401, 403, 404))
def get_job(job_id: str, principal: Reader, session: SessionDep) -> JobOut:
    return jobs_out(session, [repository.get_job(session, principal.workspace_id, job_id)])[0]


@router.get("", response_model=JobPage, responses=errors(401, 403, 422))
def list_jobs(
    principal: Reader,
    session: SessionDep,
    page: PageNumber = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    library_id: str | None = None,
    status: JobStatus | None = None,
) -> JobPage:
    rows, total = repository.list_jobs(
        session, principal.workspace_id, page=page, page_size=page_size, library_id=library_id, status=status
    )
    return JobPage(data=jobs_out(session, rows), total=total, page=page, page_size=page_size)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=rate_limited(200, errors(401, 403, 404, 409, 429, descriptions={409: "The job has already finished."})),
)
def cancel_job(job_id: str, principal: Writer, session: SessionDep) -> JobOut:
    """Cancel an unfinished job and its Prefect flow run: its sources not yet stored end `cancelled`."""
    return jobs_out(session, [jobs.cancel_job(session, principal.workspace_id, job_id)])[0]
