"""The run manifest in a SQLite file: the embedded default for local runs and notebooks.

Same contract and semantics as ``RunManifests`` on DynamoDB, with the
standard library only. Safe with several threads and processes at once: the file is in WAL
mode (readers never wait for the writer), waits up to ``timeout`` seconds for a lock, and
every read-then-write (claim, commit, ...) runs in one ``BEGIN IMMEDIATE`` transaction, so
two claims on one run cannot both succeed. Keep the file on a local disk: SQLite locking is
not reliable on network file systems (NFS, SMB, EFS).

The table, ``run_manifest``, is created on first use; its columns are the fields of
``ManifestEntry``, times as epoch seconds. A row with a NULL status
counts as processed (``LEGACY``), as an item the Snowplow SDK wrote does on DynamoDB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Callable

from ._locations import PathLike
from ._manifest_rules import (
    can_claim,
    check_claim,
    check_owner,
    holds,
    holds_live,
    in_progress,
    is_abandoned,
    left_as_committed,
    ownership_lost,
    settled_by,
)
from ._sqlite_rows import (
    SCHEMA,
    SELECT,
    WATERMARK_SCHEMA,
    entry_from_row,
    mark_committed,
    mark_failed,
    read_entry,
    read_watermark,
    upsert,
    use_wal,
    write_watermark,
)
from .exceptions import (
    InvalidLocationError,
    RetryableError,
    RunInProgressError,
    SparkManifestsError,
)
from .manifest import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    ManifestEntry,
    RunManifest,
    RunStatus,
    Watermark,
    check_run_id,
    clip_error,
    refusal_of,
    unique_run_ids,
)

_logger = logging.getLogger(__name__)

__all__ = ["SQLiteRunManifest"]

MEMORY = ":memory:"
# Runs edited per transaction by edit_many: one commit (one disk sync) per group, and the
# write lock is never held long enough to stall a job's claims.
EDITS_PER_TRANSACTION = 500
# Well below SQLite's oldest limit on host parameters (999).
_IN_CHUNK = 500


class SQLiteRunManifest(RunManifest):
    """The run manifest in a local SQLite file (``:memory:`` for a private, in-memory one).

    Parameters
    ----------
    path
        The database file; its folder is created if missing.
    clock
        Returns the current time in epoch seconds; decides lease expiry.
    timeout
        Seconds to wait for another process's lock before giving up (RetryableError).

    Examples
    --------
    >>> with SQLiteRunManifest(".spark-manifests/manifest.sqlite") as manifest:
    ...     manifest.claim("archive/run=2017-04-11-10-31-05/", owner="job-1")  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        path: PathLike,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        text = os.fspath(path)
        self.path = text if text == MEMORY else os.path.abspath(os.path.expanduser(text))
        self._clock = clock
        # One connection per manifest, shared by its threads under this lock; processes and
        # other manifests on the same file coordinate through SQLite's own locks.
        self._lock = threading.RLock()
        self._conn = self._connect(timeout)
        try:
            self.create()
        except BaseException:
            self._conn.close()  # not left to the garbage collector: the error holds a cycle
            raise

    def __repr__(self) -> str:
        return f"SQLiteRunManifest({self.path!r})"

    @property
    def uri(self) -> str | None:
        return None if self.path == MEMORY else self.path

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.path != MEMORY:
            if os.path.isdir(self.path):
                raise InvalidLocationError(
                    f"The manifest path {self.path} is a directory; give a file path such as "
                    f"{os.path.join(self.path, 'manifest.sqlite')}."
                )
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with self._errors("open the manifest"):
            conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                if self.path != MEMORY:
                    use_wal(conn, timeout)
            except BaseException:
                conn.close()
                raise
        return conn

    # -- table ---------------------------------------------------------------------------

    def create(self) -> None:
        with self._transaction("create the manifest table") as conn:
            conn.execute(SCHEMA)
            conn.execute(WATERMARK_SCHEMA)

    # -- reads ---------------------------------------------------------------------------

    def get(self, run_id: str) -> ManifestEntry | None:
        check_run_id(run_id)
        with self._errors("read the manifest"), self._lock:
            return read_entry(self._conn, run_id)

    def get_many(self, run_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        wanted = unique_run_ids(run_ids)
        found: dict[str, ManifestEntry] = {}
        with self._errors("read the manifest"), self._lock:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                for row in self._conn.execute(f"{SELECT} WHERE run_id IN ({marks})", chunk):
                    entry = entry_from_row(row)
                    found[entry.run_id] = entry
        return found

    def entries(self) -> Iterator[ManifestEntry]:
        with self._errors("read the manifest"), self._lock:
            rows = self._conn.execute(f"{SELECT} ORDER BY run_id").fetchall()
        return iter([entry_from_row(row) for row in rows])

    # -- writes --------------------------------------------------------------------------

    def add(self, run_id: str) -> None:
        check_run_id(run_id)
        with self._transaction("mark a run committed") as conn:
            now = self._clock()
            entry = read_entry(conn, run_id)
            if not left_as_committed("mark", run_id, entry, now):
                mark_committed(conn, run_id, entry, now)

    def claim(
        self,
        run_id: str,
        owner: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> bool:
        check_claim(run_id, owner, lease_seconds, max_attempts)
        with self._transaction("claim a run") as conn:
            now = self._clock()
            entry = read_entry(conn, run_id)
            if holds_live(entry, owner, now):
                upsert(conn, run_id, entry, lease_expires_at=now + lease_seconds, updated_at=now)
                return True
            if not can_claim(entry, now, max_attempts):
                return False
            upsert(
                conn,
                run_id,
                entry,
                status=RunStatus.PROCESSING.value,
                owner=owner,
                lease_expires_at=now + lease_seconds,
                attempts=(entry.attempts if entry else 0) + 1,
                started_at=now,
                updated_at=now,
            )
            return True

    def commit(
        self,
        run_id: str,
        owner: str,
        *,
        rows_in: int | None = None,
        rows_out: int | None = None,
        bad_rows: int | None = None,
        output_path: str | None = None,
    ) -> None:
        metrics = {
            "rows_in": rows_in,
            "rows_out": rows_out,
            "bad_rows": bad_rows,
            "output_path": output_path,
        }
        given = {name: value for name, value in metrics.items() if value is not None}
        with self._held("commit", run_id, owner, done=RunStatus.COMMITTED) as (conn, entry, now):
            if entry is not None:
                mark_committed(conn, run_id, entry, now, **given)

    def renew(self, run_id: str, owner: str, *, lease_seconds: float) -> None:
        check_claim(run_id, owner, lease_seconds, 1)
        with self._held("renew the lease of", run_id, owner) as (conn, entry, now):
            upsert(conn, run_id, entry, lease_expires_at=now + lease_seconds, updated_at=now)

    def fail(self, run_id: str, owner: str, error: str) -> None:
        with self._held("record the failure of", run_id, owner, done=RunStatus.FAILED) as (
            conn,
            entry,
            now,
        ):
            if entry is not None:
                mark_failed(conn, run_id, entry, error, now)

    def fail_abandoned(self, run_id: str, error: str, *, max_attempts: int) -> bool:
        check_run_id(run_id)
        with self._transaction("record the failure of an abandoned run") as conn:
            now = self._clock()
            entry = read_entry(conn, run_id)
            if entry is None or not is_abandoned(entry, now, max_attempts):
                return False
            mark_failed(conn, run_id, entry, error, now)
            return True

    def release(self, run_id: str, owner: str) -> None:
        with self._held("release", run_id, owner) as (conn, _, _now):
            conn.execute("DELETE FROM run_manifest WHERE run_id = ?", (run_id,))

    def skip(self, run_id: str, reason: str | None = None) -> None:
        check_run_id(run_id)
        with self._transaction("skip a run") as conn:
            now = self._clock()
            entry = read_entry(conn, run_id)
            if left_as_committed("skip", run_id, entry, now):
                return
            upsert(
                conn,
                run_id,
                entry,
                status=RunStatus.SKIPPED.value,
                error=clip_error(reason),
                updated_at=now,
                lease_expires_at=None,
            )

    def _unmark(self, run_id: str) -> None:
        with self._transaction("unmark a run") as conn:
            entry = read_entry(conn, run_id)
            if entry is not None and entry.lease_live(self._clock()):
                raise in_progress("unmark", run_id, entry)
            conn.execute("DELETE FROM run_manifest WHERE run_id = ?", (run_id,))

    def _edit_each(
        self, one_run: Callable[[str], None], run_ids: list[str]
    ) -> list[RunInProgressError | None]:
        outcomes: list[RunInProgressError | None] = []
        for start in range(0, len(run_ids), EDITS_PER_TRANSACTION):
            with self._transaction("edit runs"):
                group = run_ids[start : start + EDITS_PER_TRANSACTION]
                outcomes += [refusal_of(one_run, run_id) for run_id in group]
        return outcomes

    # -- watermarks (see spark_manifests._watermarks) ---------------------------------------

    supports_watermarks = True

    def _read_watermark(self, archive: str) -> Watermark:
        with self._errors("read the watermark"), self._lock:
            return read_watermark(self._conn, archive)

    def _write_watermark(self, new: Watermark) -> bool:
        with self._transaction("write the watermark") as conn:
            return write_watermark(conn, new, self._clock())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _held(
        self, verb: str, run_id: str, owner: str, *, done: RunStatus | None = None
    ) -> Iterator[tuple[sqlite3.Connection, ManifestEntry | None, float]]:
        """A write transaction on a run ``owner`` holds; OwnershipLostError if not held.

        The entry is ``None`` when ``owner`` already left the run in status ``done``
        (``settled_by``): there is nothing to write.
        """
        check_run_id(run_id)
        check_owner(owner)
        with self._transaction(f"{verb} a run") as conn:
            entry = read_entry(conn, run_id)
            if done is not None and settled_by(entry, owner, done):
                yield conn, None, self._clock()
                return
            if entry is None or not holds(entry, owner):
                raise ownership_lost(verb, run_id, owner, entry)
            yield conn, entry, self._clock()

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock before reading, so a
        read-then-write cannot interleave with another process's.

        Inside a transaction already open (``edit_many``), a savepoint: the inner write
        is undone alone if it fails.
        """
        with self._errors(action), self._lock:
            nested = self._conn.in_transaction
            self._conn.execute("SAVEPOINT one_write" if nested else "BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK TO one_write" if nested else "ROLLBACK")
                if nested:
                    self._conn.execute("RELEASE one_write")
                raise
            self._conn.execute("RELEASE one_write" if nested else "COMMIT")

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if "locked" in message or "busy" in message:
                raise RetryableError(
                    f"Could not {action} ({self.path}): the database stayed locked by another "
                    "process; try again."
                ) from exc
            raise SparkManifestsError(f"Could not {action} ({self.path}): {message}") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
                # The file is fine; this object was closed (e.g. by leaving its `with` block).
                raise SparkManifestsError(
                    f"Could not {action} ({self.path}): the manifest was closed; open it again "
                    "(SQLiteRunManifest(path), or open_manifest(uri))."
                ) from exc
            raise SparkManifestsError(
                f"Could not {action} ({self.path}): {str(exc).rstrip('.')}. "
                "Is it a SQLite manifest file?"
            ) from exc
