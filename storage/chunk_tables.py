"""Open LanceDB handles of the chunk tables under one directory, shared by the threads of a process.

Two handles per table: one that follows the newest version (for writes and to learn the newest
version number) and one pinned to the newest version seen, for reads. A read made of several queries
(the two legs of a hybrid search) runs on the pinned handle, so all of its queries see one version.
"""

import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

import lancedb
import pyarrow as pa
from lancedb.index import FTS, BTree, LabelList
from lancedb.table import Table

from gristmill.errors import GristmillError, InvalidRequest, StorageError
from storage.chunk_records import INDEXED_TEXT_DEFAULTS, chunk_schema

LANCE_ERRORS = (ValueError, RuntimeError, OSError, pa.ArrowException)
_LIBRARY_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

# Built when a table is created (instant while it is empty) and brought up to date by optimize().
# BTREE: source/external id filters, the replace's delete condition and the embedding cache's
# lookup by text hash (2.7 ms instead of 10.6 ms at 100k rows); LABEL_LIST: metadata tags.
# The full-text index covers search_text (context header + text); "text_idx", on text alone, is what
# tables made before the header had, and is dropped when they are brought up to date.
FULL_TEXT_INDEX = "search_text_idx"
BASE_INDEXES = {
    FULL_TEXT_INDEX: ("search_text", FTS()),
    "source_id_idx": ("source_id", BTree()),
    "external_id_idx": ("external_id", BTree()),
    "text_hash_idx": ("text_hash", BTree()),
    "tags_idx": ("tags", LabelList()),
}


def table_name(library_id: str) -> str:
    if not _LIBRARY_ID.match(library_id):
        raise InvalidRequest(
            f"Library id {library_id!r} may hold only letters, digits, '-' and '_'.", code="invalid_id"
        )
    return f"chunks_{library_id}"


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn LanceDB's and Arrow's exceptions into StorageError, naming what was being done."""
    try:
        yield
    except GristmillError:
        raise
    except LANCE_ERRORS as exc:
        raise StorageError(f"The chunk store could not {action}: {exc}", code="chunk_store_failed") from exc


class TableCache:
    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._db: lancedb.DBConnection | None = None
        self._lock = threading.Lock()
        self._latest: dict[str, Table] = {}
        self._pinned: dict[str, Table] = {}
        self._indexed: set[str] = set()  # tables whose base indexes this process has checked
        self._named_locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    def connection(self) -> lancedb.DBConnection:
        with self._lock:
            if self._db is None:
                # Zero interval: every read asks for the newest version (about 0.4 ms on a local disk),
                # so a flow run's write in another process is visible to the next search.
                self._db = lancedb.connect(
                    self.uri, read_consistency_interval=timedelta(0), storage_options=self.storage_options or None
                )
            return self._db

    def latest(self, name: str, *, create_dim: int | None = None) -> Table | None:
        """The handle following `name`'s newest version; the table is created when `create_dim` is given."""
        with self._lock:
            table = self._latest.get(name)
        if table is None:
            db = self.connection()
            try:
                table = db.open_table(name)
            except ValueError as exc:
                if "not found" not in str(exc).lower():
                    raise
                if create_dim is None:
                    return None
                table = _create(db, name, create_dim)
            _add_indexed_text_columns(table)
            with self._lock:
                table = self._latest.setdefault(name, table)
        if create_dim is not None and name not in self._indexed:
            _ensure_base_indexes(table)
            self._indexed.add(name)
        return table

    def snapshot(self, name: str) -> Table | None:
        """A handle pinned to the newest version, None when the table does not exist."""
        latest = self.latest(name)
        if latest is None:
            return None
        version = latest.version
        with self._lock:
            pinned = self._pinned.get(name)
        if pinned is None or pinned.version != version:
            pinned = self.connection().open_table(name, version=version)
            with self._lock:
                current = self._pinned.get(name)
                if current is None or current.version < version:
                    self._pinned[name] = pinned
        return pinned

    def forget(self, name: str) -> None:
        with self._lock:
            self._latest.pop(name, None)
            self._pinned.pop(name, None)
            self._indexed.discard(name)

    def drop(self, name: str) -> None:
        self.forget(name)
        self.connection().drop_table(name, ignore_missing=True)

    @contextmanager
    def locked(self, purpose: str, name: str) -> Iterator[None]:
        """One holder at a time per (purpose, table): writers queue instead of racing to commit."""
        with self._lock:
            lock = self._named_locks[(purpose, name)]
        with lock:
            yield


def _create(db: lancedb.DBConnection, name: str, dim: int) -> Table:
    try:
        return db.create_table(name, schema=chunk_schema(dim))
    except ValueError as exc:  # another process created it first
        if "already exists" not in str(exc):
            raise
        return db.open_table(name)


def _add_indexed_text_columns(table: Table) -> None:
    """Bring a table made before the context header up to date: its rows get context "" and
    search_text = text (what they were embedded from, so the embedding cache still holds), and the
    full-text index moves to search_text. Another process doing the same at once is no error."""
    missing = {c: sql for c, sql in INDEXED_TEXT_DEFAULTS.items() if c not in table.schema.names}
    try:
        if missing:
            table.add_columns(missing)
    except LANCE_ERRORS:
        table.checkout_latest()
        if any(c not in table.schema.names for c in INDEXED_TEXT_DEFAULTS):
            raise
    present = {index.name for index in table.list_indices()}
    if "text_idx" in present:
        _ensure_base_indexes(table)
        try:
            table.drop_index("text_idx")
        except LANCE_ERRORS:  # dropped meanwhile by another process
            pass


def _ensure_base_indexes(table: Table) -> None:
    present = {index.name for index in table.list_indices()}
    for index_name, (column, config) in BASE_INDEXES.items():
        if index_name not in present:
            try:
                table.create_index(column, config=config, name=index_name, replace=False)
            except RuntimeError as exc:  # built meanwhile by another process
                if "already exists" not in str(exc):
                    raise
