"""Turning what a caller submits (inline text, uploads, URLs, local files) into a job and its sources.

Shared by the REST API and the standalone CLI. Checks that need only the request (size, type,
duplicate inline content, a URL or a file name the library has already) happen here, so the caller
hears about them at once; everything else happens in the flow run.
"""

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Literal

from sqlmodel import Session

from connectors.outbound import policy_for
from gristmill.documents import FetchedContent
from gristmill.errors import Conflict, GristmillError, PayloadTooLarge
from gristmill.file_types import declared_mime_type
from gristmill.metadata import refuse_memory_field_keys
from gristmill.settings import Settings
from gristmill.usecases.libraries import refuse_writes_while_reindexing
from gristmill.usecases.shapes import SourceSpec
from storage import repository
from storage.blobs import open_blob_store
from storage.tables import IngestJob, Library, Source, file_name, new_id
from tasks.parse import check_size, detect_format


class DuplicateHandling(StrEnum):
    """What an upload does when the library already has a file of its name (Letta's four ways)."""

    suffix = "suffix"  # stored beside it as "name (1).ext" (the default, as Letta's)
    replace = "replace"  # replaces it once stored, as an external-id upsert would
    skip = "skip"  # not stored; the answer names the file there (`existing`)
    error = "error"  # refused: 409 file_exists


DEFAULT_DUPLICATE_HANDLING = DuplicateHandling.suffix

ItemStatus = Literal["queued", "duplicate", "existing", "error"]


@dataclass
class ItemResult:
    index: int
    status: ItemStatus  # existing: nothing submitted; `source_id` is the source already standing for it
    source_id: str | None = None
    duplicate_of: str | None = None
    error: GristmillError | None = None


@dataclass
class Submission:
    job: IngestJob | None  # None when nothing was stored (every item failed, or was there already)
    results: list[ItemResult]

    @property
    def queued_source_ids(self) -> list[str]:
        return [r.source_id for r in self.results if r.status == "queued" and r.source_id]

    def count(self, status: ItemStatus) -> int:
        return sum(1 for r in self.results if r.status == status)


def submit(
    session: Session,
    settings: Settings,
    library: Library,
    specs: list[SourceSpec],
    *,
    keep_duplicates: bool = True,
    duplicate_handling: DuplicateHandling = DEFAULT_DUPLICATE_HANDLING,
) -> Submission:
    """Store a job with one source per accepted spec; bytes wait in the blob folder for the flow run.

    Duplicates found now are kept as `duplicate` sources of the job, so its counts show them, unless
    `keep_duplicates` is false (a single-item request answered 409 leaves nothing behind); an
    upsert's duplicate (unchanged content under an external id, or of a file it replaces) is kept.
    `duplicate_handling` decides for uploads without an external id whose file name the library has.
    """
    refuse_writes_while_reindexing(session, library)
    results: list[ItemResult] = []
    sources: list[Source] = []
    names = _NameClaims(session, library)
    for index, spec in enumerate(specs):
        try:
            # Uploads only: a local file the CLI reads by its path keeps its path.
            existing = names.claim(spec, duplicate_handling) if spec.origin == "file" and spec.data is not None else None
            source, result = (None, existing) if existing else _accept(session, settings, library, spec, index)
        except GristmillError as error:
            results.append(ItemResult(index=index, status="error", error=error))
            continue
        result.index = index
        if source is None:
            pass  # there already: nothing is stored
        elif result.status == "duplicate" and not (keep_duplicates or spec.external_id or spec.replaces):
            result.source_id = None
        else:
            sources.append(source)
        results.append(result)
    job = repository.create_job(session, library, sources) if sources else None
    return Submission(job=job, results=results)


def url_external_id(url: str) -> str:
    """A URL source's upsert key when the caller gives none: the URL itself (hashed past 255 chars)."""
    return url if len(url) <= 255 else "url:" + hashlib.sha256(url.encode()).hexdigest()


class _NameClaims:
    """File names of uploads: the library's and those claimed earlier in the same request."""

    def __init__(self, session: Session, library: Library) -> None:
        self.session = session
        self.library = library
        self.claimed: set[str] = set()

    def claim(self, spec: SourceSpec, handling: DuplicateHandling) -> ItemResult | None:
        """Settle the spec's file name; an `existing` result when the upload is skipped."""
        name = spec.uri
        if not name or spec.external_id:  # an external id is an explicit upsert key already
            return None
        if name in self.claimed:  # two files of one request with one name: the later one is renamed
            spec.uri = self._free_name(name)
            self.claimed.add(spec.uri)
            return None
        there = repository.sources_named(self.session, self.library.id, [name]).get(name)
        if there is None:
            self.claimed.add(name)
            return None
        if handling == DuplicateHandling.skip:
            return ItemResult(index=0, status="existing", source_id=there.id)
        if handling == DuplicateHandling.error:
            raise Conflict(
                f"the library already has a file named {name!r} (source {there.id})",
                code="file_exists",
                details={"source_id": there.id, "name": name},
            )
        if handling == DuplicateHandling.replace:
            if not there.status.is_final:
                raise Conflict(
                    f"the file named {name!r} is still being processed; replace it when its job has finished",
                    code="source_busy",
                    details={"source_id": there.id},
                )
            spec.replaces = there.id
            self.claimed.add(name)
            return None
        spec.uri = self._free_name(name)
        self.claimed.add(spec.uri)
        return None

    def _free_name(self, name: str) -> str:
        path = PurePosixPath(name)
        stem, suffix = path.stem, path.suffix
        taken = repository.file_names_taken(self.session, self.library.id, stem) | self.claimed
        n = 1
        while f"{stem} ({n}){suffix}" in taken:
            n += 1
        return f"{stem} ({n}){suffix}"


def _accept(
    session: Session, settings: Settings, library: Library, spec: SourceSpec, index: int
) -> tuple[Source | None, ItemResult]:
    spec.content_type = declared_mime_type(spec.content_type)
    refuse_memory_field_keys(spec.metadata)
    if spec.origin == "url" and spec.uri:
        policy_for(settings).check_url(spec.uri)  # what can be told now; the fetch checks the address it connects to
        if not spec.external_id:
            # A URL the library has already is answered with its source, not fetched again (a caller
            # who wants it re-fetched names an external id: that is an upsert). Its external id
            # defaults to the URL, which is what lets the scheduled sync update it in place.
            spec.external_id = url_external_id(spec.uri)
            there = repository.source_for_url(session, library.id, spec.uri, spec.external_id)
            if there is not None:
                return None, ItemResult(index=index, status="existing", source_id=there.id)
    source = Source(
        id=new_id(),
        workspace_id=library.workspace_id,
        library_id=library.id,
        origin=spec.origin,
        uri=spec.uri,
        content_type=spec.content_type,
        title=spec.title,
        external_id=spec.external_id,
        metadata_=spec.metadata,
        user_id=spec.user_id,
        agent_id=spec.agent_id,
        role=spec.role,
        categories=list(spec.categories),
        replaces=spec.replaces,
    )
    if spec.data is None:
        return source, ItemResult(index=index, status="queued", source_id=source.id)

    if spec.inline and len(spec.data) > settings.max_inline_bytes:
        raise PayloadTooLarge(
            f"inline content is {len(spec.data):,} bytes; the limit is {settings.max_inline_bytes:,} bytes",
            code="content_too_large",
        )
    filename = file_name(spec.origin, spec.uri, spec.title)
    fmt = detect_format(FetchedContent(data=spec.data, content_type=spec.content_type, uri=None, filename=filename))
    check_size(fmt, len(spec.data), settings)
    source.content_format = fmt
    source.size_bytes = len(spec.data)
    source.content_hash = hashlib.sha256(spec.data).hexdigest()

    original = repository.stored_original(session, source)
    if original is not None:
        for name, value in repository.duplicate_fields(source, original).items():
            setattr(source, name, value)
        return source, ItemResult(index=index, status="duplicate", source_id=source.id, duplicate_of=original.id)

    source.blob_path = open_blob_store(settings).write(source.id, spec.data)
    return source, ItemResult(index=index, status="queued", source_id=source.id)
