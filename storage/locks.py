"""One holder at a time among the processes that share Gristmill's database.

Several API processes each run a reconciler; on PostgreSQL only the one holding a session-level
advisory lock does its rounds. The lock lives on a connection of its own for as long as the process
holds it, and the server releases it when that connection ends, so a process that dies (kill -9
included) hands the work to another one within a round, with no lease to expire. On SQLite every
process holds it: a SQLite file is one machine's, and SQLite already serialises its writers.
"""

import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.db import get_engine

log = logging.getLogger("gristmill.locks")


def lock_key(name: str) -> int:
    """PostgreSQL's advisory locks are keyed by a bigint: one derived from the name, the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SingletonLease:
    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        self.key = lock_key(name)
        self._connection: Connection | None = None

    @property
    def shared(self) -> bool:
        return self.database_url.startswith("postgresql")

    def held(self) -> bool:
        """Whether this process holds the lock now, taking it when it is free."""
        if not self.shared:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception:  # noqa: BLE001 - the connection, and with it the lock, is gone
                log.warning("lost the connection holding advisory lock %d; trying to take it again", self.key)
                self._drop()
        connection = get_engine(self.database_url).connect()
        try:
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self._connection.commit()
            finally:
                self._drop()

    def _drop(self) -> None:
        try:
            if self._connection is not None:
                # Invalidated, not returned to the pool: a pooled connection would keep the lock.
                self._connection.invalidate()
                self._connection.close()
        finally:
            self._connection = None
