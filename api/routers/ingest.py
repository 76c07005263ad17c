from typing import Annotated

from fastapi import APIRouter, Body, Form, Query, Response, status

from api.auth import Writer
from api.deps import SessionDep, SettingsDep, StarterDep
from api.schemas import (
    IngestAccepted,
    IngestBatch,
    IngestBody,
    IngestItem,
    ItemResultOut,
    Title,
    UploadForm,
    errors,
    rate_limited,
)
from gristmill.errors import Conflict, InvalidRequest, PayloadTooLarge
from gristmill.metadata import metadata_from_json
from gristmill.usecases.orchestration import JobStarter
from gristmill.usecases.shapes import SourceSpec
from gristmill.usecases.submission import DEFAULT_DUPLICATE_HANDLING, DuplicateHandling, Submission, submit
from storage import repository
from tasks.parse import largest_size_limit

router = APIRouter(prefix="/v1/libraries/{library_id}", tags=["ingest"])

INGEST_RESPONSES = rate_limited(
    202,
    {
        200: {"model": IngestAccepted,
              "description": "Nothing new was stored: every item is `existing` (a URL the library has, a skipped file)."},
        **errors(
            400, 401, 403, 404, 409, 413, 415, 422, 429, 503,
            descriptions={
                409: "Single item whose content is already stored (names the existing source); a file name taken "
                "(duplicate_handling=error); the library is being re-indexed.",
                422: "Malformed body, or every item of a batch failed.",
            },
        ),
    },
)


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED, response_model=IngestAccepted, responses=INGEST_RESPONSES)
def ingest(
    library_id: str,
    body: Annotated[IngestBody, Body()],
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    starter: StarterDep,
    response: Response,
):
    """Ingest 1 to 100 items (`{"items": [...]}`) or one item as the body."""
    library = repository.get_library(session, principal.workspace_id, library_id)
    items = body.items if isinstance(body, IngestBatch) else [body]
    specs = [_item_spec(item) for item in items]
    submission = submit(session, settings, library, specs, keep_duplicates=_keeps_duplicates(specs))
    return _answer(starter, submission, specs, response)


@router.post("/files", status_code=status.HTTP_202_ACCEPTED, response_model=IngestAccepted, responses=INGEST_RESPONSES)
def upload_files(
    library_id: str,
    form: Annotated[UploadForm, Form(media_type="multipart/form-data")],
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    starter: StarterDep,
    response: Response,
    duplicate_handling: Annotated[
        DuplicateHandling,
        Query(description="When the library already has a file of this name (and no external_id is given): "
              "suffix (the default, as Letta's) stores it as 'name (1).ext', replace replaces it once stored, "
              "skip answers `existing`, error answers 409 file_exists."),
    ] = DEFAULT_DUPLICATE_HANDLING,
    name: Annotated[Title | None, Query(min_length=1, max_length=255, description="File name to store a single file under.")] = None,
):
    """Upload one or more files (or give one `url`) as multipart form fields."""
    library = repository.get_library(session, principal.workspace_id, library_id)
    if (form.external_id or name) and len(form.file) > 1:
        raise InvalidRequest("external_id and name apply to a single file", code="single_file_only")
    extra = metadata_from_json(form.metadata, "metadata")
    memory = {"user_id": form.user_id, "agent_id": form.agent_id, "role": form.role, "categories": form.categories}
    if form.url:
        specs = [SourceSpec(origin="url", uri=str(form.url), content_type=form.content_type, title=form.title,
                            external_id=form.external_id, metadata=extra, **memory)]
    else:
        specs = [_upload_spec(upload, form, name, extra, memory, largest_size_limit(settings)) for upload in form.file]
    submission = submit(
        session, settings, library, specs, keep_duplicates=_keeps_duplicates(specs), duplicate_handling=duplicate_handling
    )
    return _answer(starter, submission, specs, response)


def _upload_spec(upload, form: UploadForm, name: str | None, metadata: dict, memory: dict, limit: int) -> SourceSpec:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename} is over the largest size limit ({limit // 2**20} MB)", code="file_too_large")
    declared = upload.content_type if upload.content_type != "application/octet-stream" else None
    return SourceSpec(
        origin="file",
        data=data,
        content_type=form.content_type or declared,
        title=form.title,  # else the document's own title, else its file name
        uri=name or upload.filename,
        external_id=form.external_id,
        metadata=metadata,
        **memory,
    )


def _item_spec(item: IngestItem) -> SourceSpec:
    memory = {"user_id": item.user_id, "agent_id": item.agent_id, "role": item.role, "categories": item.categories}
    if item.url is not None:
        return SourceSpec(origin="url", uri=str(item.url), content_type=item.content_type, title=item.title,
                          external_id=item.external_id, metadata=item.metadata, **memory)
    return SourceSpec(
        origin="inline",
        data=item.content.encode("utf-8"),
        content_type=item.content_type or "text/plain",
        title=item.title,
        external_id=item.external_id,
        metadata=item.metadata,
        inline=True,
        **memory,
    )


def _keeps_duplicates(specs: list[SourceSpec]) -> bool:
    """A single item that is a plain duplicate is answered 409: then nothing is stored (an upsert's
    duplicate, unchanged content, is kept whatever this says)."""
    return len(specs) != 1


def _answer(starter: JobStarter, submission: Submission, specs: list[SourceSpec], response: Response) -> IngestAccepted:
    results = [
        ItemResultOut(
            index=r.index,
            source_id=r.source_id,
            status=r.status,
            duplicate_of=r.duplicate_of,
            error=r.error.to_dict() if r.error else None,
        )
        for r in submission.results
    ]
    if len(specs) == 1:
        only = submission.results[0]
        if only.error is not None:
            raise only.error
        # With an external id (or a file it replaces), unchanged content is an upsert that changes nothing: a success.
        if only.status == "duplicate" and not specs[0].external_id and not specs[0].replaces:
            raise Conflict(
                f"this content is already stored as source {only.duplicate_of}",
                code="duplicate_content",
                details={"source_id": only.duplicate_of, "duplicate_of": only.duplicate_of},
            )
    job = submission.job
    if job is None and not submission.count("existing"):
        raise InvalidRequest(
            "every item failed; see details for each item's error",
            code="all_items_failed",
            details=[r.model_dump() for r in results],
        )
    if job is None:
        response.status_code = status.HTTP_200_OK  # nothing new: the answer names what is there
    elif submission.queued_source_ids:
        starter.start(job.id)
    source_ids = [r.source_id for r in submission.results if r.source_id]
    return IngestAccepted(
        job_id=job.id if job else None,
        status=job.status.value if job else "completed",
        source_ids=source_ids,
        queued=submission.count("queued"),
        failed=submission.count("error"),
        total=len(submission.results),
        results=results,
    )
