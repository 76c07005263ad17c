"""A running flow run's heartbeat on its job: the lease the reconciler checks (docs/job-states.md)."""

import logging
import threading

from gristmill.settings import Settings
from storage import repository
from storage.db import session_scope

log = logging.getLogger("gristmill.heartbeat")
# Renewals per lease: a run may miss a few (a slow database write, a long GIL hold) and keep its job.
RENEWALS_PER_LEASE = 4


def keep_heartbeat(settings: Settings, job_id: str, flow_run_id: str) -> threading.Event:
    """Renew the job's heartbeat from a daemon thread until the job is final or no longer this run's
    (it dies with the process, which is the point); set the returned event to stop it sooner."""
    stop = threading.Event()
    every = max(settings.job_lease_seconds / RENEWALS_PER_LEASE, 0.2)

    def renew() -> None:
        while not stop.wait(every):
            try:
                with session_scope(settings.resolved_database_url) as session:
                    if not repository.renew_heartbeat(session, job_id, flow_run_id):
                        return
            except Exception:  # noqa: BLE001 - a database hiccup: the next renewal may get through
                log.exception("could not renew the heartbeat of job %s", job_id)

    threading.Thread(target=renew, name=f"heartbeat-{job_id}", daemon=True).start()
    return stop
