from typing import Annotated

from fastapi import APIRouter, Body, File, Form, UploadFile, status

from api.auth import Writer
from api.deps import SessionDep, SettingsDep, StarterDep
from api.schemas import IngestAccepted, IngestBatch, IngestItem, ItemResultOut
from gristmill.errors import Conflict, InvalidRequest, PayloadTooLarge
from gristmill.metadata import metadata_from_json
from gristmill.usecases.orchestration import JobStarter
from gristmill.usecases.shapes import SourceSpec
from gristmill.usecases.submission import Submission, submit
from storage import repository
from tasks.parse import largest_size_limit

router = APIRouter(prefix="/v1/libraries/{library_id}", tags=["ingest"])

ERROR_RESPONSES = {
    409: {"description": "Single item whose content is already stored (names the existing source)."},
    413: {"description": "Content over the size limit."},
    415: {"description": "Unsupported content type."},
    422: {"description": "Malformed body, or every item of a batch failed."},
}


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED, response_model=IngestAccepted, responses=ERROR_RESPONSES)
def ingest(
    library_id: str,
    body: Annotated[IngestBatch | IngestItem, Body()],
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    starter: StarterDep,
):
    """Ingest 1 to 100 items (`{"items": [...]}`) or one item as the body."""
    library = repository.get_library(session, principal.workspace_id, library_id)
    items = body.items if isinstance(body, IngestBatch) else [body]
    specs = [_item_spec(item) for item in items]
    submission = submit(session, settings, library, specs, keep_duplicates=_keeps_duplicates(specs))
    return _answer(starter, submission, specs)


@router.post("/files", status_code=status.HTTP_202_ACCEPTED, response_model=IngestAccepted, responses=ERROR_RESPONSES)
def upload_files(
    library_id: str,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    starter: StarterDep,
    file: Annotated[list[UploadFile], File(description="One or more files.")],
    external_id: Annotated[str | None, Form(max_length=255)] = None,
    title: Annotated[str | None, Form(max_length=500)] = None,
    metadata: Annotated[str | None, Form(description="JSON object stored with each file's source.")] = None,
):
    library = repository.get_library(session, principal.workspace_id, library_id)
    if external_id and len(file) != 1:
        raise InvalidRequest("external_id applies to a single file", code="single_file_only")
    extra = metadata_from_json(metadata, "metadata")
    limit = largest_size_limit(settings)
    specs = []
    for upload in file:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{upload.filename} is over the largest size limit ({limit // 2**20} MB)", code="file_too_large")
        specs.append(
            SourceSpec(
                origin="file",
                data=data,
                content_type=upload.content_type if upload.content_type != "application/octet-stream" else None,
                title=title,  # else the document's own title, else its file name
                uri=upload.filename,
                external_id=external_id,
                metadata=extra,
            )
        )
    submission = submit(session, settings, library, specs, keep_duplicates=_keeps_duplicates(specs))
    return _answer(starter, submission, specs)


def _item_spec(item: IngestItem) -> SourceSpec:
    if item.url is not None:
        return SourceSpec(origin="url", uri=str(item.url), content_type=item.content_type, title=item.title, external_id=item.external_id, metadata=item.metadata)
    return SourceSpec(
        origin="inline",
        data=item.content.encode("utf-8"),
        content_type=item.content_type or "text/plain",
        title=item.title,
        external_id=item.external_id,
        metadata=item.metadata,
        inline=True,
    )


def _keeps_duplicates(specs: list[SourceSpec]) -> bool:
    """A single item without an external id is answered 409 when duplicate: then nothing is stored."""
    return len(specs) != 1 or bool(specs[0].external_id)


def _answer(starter: JobStarter, submission: Submission, specs: list[SourceSpec]) -> IngestAccepted:
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
        # With an external id, unchanged content is an upsert that changes nothing: a success.
        if only.status == "duplicate" and not specs[0].external_id:
            raise Conflict(
                f"this content is already stored as source {only.duplicate_of}",
                code="duplicate_content",
                details={"source_id": only.duplicate_of, "duplicate_of": only.duplicate_of},
            )
    job = submission.job
    if job is None:
        raise InvalidRequest(
            "every item failed; see details for each item's error",
            code="all_items_failed",
            details=[r.model_dump() for r in results],
        )
    if submission.queued_source_ids:
        starter.start(job.id)
    source_ids = [r.source_id for r in submission.results if r.source_id]
    return IngestAccepted(job_id=job.id, status=job.status.value, source_ids=source_ids, results=results)
