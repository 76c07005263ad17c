"""The scheduled re-sync of URL sources: re-ingest each stored URL; unchanged content stores nothing.

A URL source's external id defaults to its URL, so a changed page replaces its old chunks through
the ordinary external-id upsert, and an unchanged one ends `duplicate` and is then forgotten.
"""

from collections import defaultdict

from prefect import flow

from flows.ingest import ingest_job
from gristmill.settings import get_settings
from storage import repository
from storage.db import session_scope
from storage.tables import JobTrigger, Source


@flow(name="sync-url-sources", log_prints=True)
def sync_url_sources() -> dict[str, int]:
    database_url = get_settings().resolved_database_url
    with session_scope(database_url) as session:
        by_library: dict[str, list[Source]] = defaultdict(list)
        for source in repository.stored_url_sources(session):
            by_library[source.library_id].append(source)
    totals = {"checked": 0, "changed": 0, "failed": 0}
    for library_id, stored in by_library.items():
        with session_scope(database_url) as session:
            library = repository.find_library(session, library_id)
            fresh = [
                Source(
                    origin="url",
                    uri=s.uri,
                    title=s.title,
                    external_id=s.external_id,
                    metadata_=s.metadata_,
                    workspace_id=s.workspace_id,
                    library_id=s.library_id,
                )
                for s in stored
            ]
            job = repository.create_job(session, library, fresh, trigger=JobTrigger.sync)
        outcome = ingest_job(job.id)
        totals["checked"] += len(fresh)
        totals["changed"] += int(outcome["completed"]) + int(outcome["partial"])
        totals["failed"] += int(outcome["failed"])
        with session_scope(database_url) as session:
            repository.forget_unchanged_sync_sources(session, job.id)
    print(f"checked {totals['checked']} URL sources: {totals['changed']} changed, {totals['failed']} failed")
    return totals
