"""The scheduled re-sync of URL sources: re-ingest each stored URL; what did not change leaves no trace.

A URL source's external id defaults to its URL, so a changed page replaces its old chunks through the
ordinary external-id upsert. For each page the sync's fresh source then settles onto the stored one:
- changed: the fresh source is the page now (the old row went with the upsert);
- unchanged: the fresh source goes, and the stored one's sync error, if any, is cleared;
- failed: the fresh source goes and the stored one records the error (no row piles up per sync);
  a page that answers 404 or 410 on GRISTMILL_SYNC_PRUNE_AFTER consecutive syncs is removed with its
  chunks, recorded as `removed` under the sync's job.
A sync job left naming no source (nothing changed, nothing removed) is deleted.
"""

from collections import defaultdict

from prefect import flow

from flows.ingest import ingest_job
from flows.run_story import sync_run_name
from gristmill.settings import Settings, get_settings
from storage import repository
from storage.blobs import open_blob_store
from storage.db import session_scope
from storage.tables import JobKind, JobTrigger, Source, SourceStatus
from tasks.remove import remove_source

GONE_CODES = ("http_404", "http_410")


@flow(name="sync-url-sources", log_prints=True, flow_run_name=sync_run_name)
def sync_url_sources(library_id: str | None = None) -> dict[str, int]:
    """Re-sync every stored URL source, or only library `library_id`'s (the `sync-library` deployment)."""
    settings = get_settings()
    database_url = settings.resolved_database_url
    with session_scope(database_url) as session:
        by_library: dict[str, list[Source]] = defaultdict(list)
        for source in repository.stored_url_sources(session):
            if library_id is None or source.library_id == library_id:
                by_library[source.library_id].append(source)
    totals = {"checked": 0, "changed": 0, "failed": 0, "removed": 0, "unchanged": 0}
    for library_id, stored in by_library.items():
        with session_scope(database_url) as session:
            library = repository.find_library(session, library_id)
            if repository.unfinished_job_of_kind(session, library_id, JobKind.reindex):
                continue  # a re-indexing library takes no new sources; the next sync checks it
            fresh = [_fresh_copy(s) for s in stored]
            job = repository.create_job(session, library, fresh, trigger=JobTrigger.sync)
        ingest_job(job.id, return_state=True)  # a failed page is the sync's to count, not to raise
        totals["checked"] += len(fresh)
        for new, old in zip(fresh, stored, strict=True):
            totals[_settle(new.id, old.id, job.id, settings)] += 1
        with session_scope(database_url) as session:
            repository.forget_job_if_empty(session, job.id)
    del totals["unchanged"]
    print(
        f"checked {totals['checked']} URL sources: {totals['changed']} changed, {totals['failed']} failed, "
        f"{totals['removed']} removed"
    )
    return totals


def _fresh_copy(stored: Source) -> Source:
    return Source(
        origin="url",
        uri=stored.uri,
        title=stored.title,
        external_id=stored.external_id,
        metadata_=stored.metadata_,
        user_id=stored.user_id,
        agent_id=stored.agent_id,
        role=stored.role,
        categories=stored.categories,
        workspace_id=stored.workspace_id,
        library_id=stored.library_id,
    )


def _settle(fresh_id: str, stored_id: str, job_id: str, settings: Settings) -> str:
    """Settle one page's fresh source onto its stored one; returns what happened to the page."""
    with session_scope(settings.resolved_database_url) as session:
        fresh = repository.find_source(session, fresh_id)
        if fresh is None:
            return "unchanged"
        if fresh.status in (SourceStatus.completed, SourceStatus.partial):
            return "changed"
        repository.delete_source(session, fresh)
        open_blob_store(settings).remove(fresh.blob_path)
        if fresh.status != SourceStatus.failed:
            repository.record_sync_outcome(session, stored_id, error=None, error_code=None, gone=False)
            return "unchanged"
        gone_syncs = repository.record_sync_outcome(
            session, stored_id, error=fresh.error, error_code=fresh.error_code, gone=fresh.error_code in GONE_CODES
        )
    if gone_syncs >= settings.sync_prune_after:
        reason = f"the page answered {fresh.error_code.removeprefix('http_')} on {gone_syncs} consecutive syncs"
        if remove_source(stored_id, reason, job_id, settings):
            return "removed"
    return "failed"
