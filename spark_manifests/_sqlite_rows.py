"""Rows of the SQLite run manifest: the tables, and reading and writing one run's row."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ._manifest_rules import parse_status, utc_from_epoch
from .manifest import ManifestEntry, RunStatus, Watermark, clip_error

COLUMNS = (
    "run_id",
    "status",
    "owner",
    "lease_expires_at",
    "attempts",
    "started_at",
    "committed_at",
    "updated_at",
    "rows_in",
    "rows_out",
    "bad_rows",
    "output_path",
    "error",
)


SCHEMA = """
CREATE TABLE IF NOT EXISTS run_manifest (
    run_id TEXT PRIMARY KEY NOT NULL,
    status TEXT,
    owner TEXT,
    lease_expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    committed_at REAL,
    updated_at REAL,
    rows_in INTEGER,
    rows_out INTEGER,
    bad_rows INTEGER,
    output_path TEXT,
    error TEXT
) WITHOUT ROWID
"""


SELECT = f"SELECT {', '.join(COLUMNS)} FROM run_manifest"


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (readers never wait for the writer), waiting up to ``timeout``.

    Switching a new file to WAL needs its exclusive lock, and SQLite answers "database is
    locked" at once, without the busy timeout, when other connections opening the same new
    file hold a shared lock (it would be a deadlock to wait): several jobs starting together
    on a new manifest. WAL mode is kept in the file, so this loops only while it is new.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def read_entry(conn: sqlite3.Connection, run_id: str) -> ManifestEntry | None:
    row = conn.execute(f"{SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else entry_from_row(row)


def upsert(
    conn: sqlite3.Connection, run_id: str, entry: ManifestEntry | None, **values: Any
) -> None:
    """Insert the run's row, or update the given columns of the existing one."""
    if entry is None:
        values["run_id"] = run_id
        values.setdefault("attempts", 0)
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        conn.execute(f"INSERT INTO run_manifest ({names}) VALUES ({marks})", list(values.values()))
        return
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(
        f"UPDATE run_manifest SET {assignments} WHERE run_id = ?", [*values.values(), run_id]
    )


def mark_committed(
    conn: sqlite3.Connection,
    run_id: str,
    entry: ManifestEntry | None,
    now: float,
    **metrics: Any,
) -> None:
    upsert(
        conn,
        run_id,
        entry,
        status=RunStatus.COMMITTED.value,
        committed_at=now,
        updated_at=now,
        lease_expires_at=None,
        error=None,
        **metrics,
    )


def mark_failed(
    conn: sqlite3.Connection, run_id: str, entry: ManifestEntry, error: str, now: float
) -> None:
    upsert(
        conn,
        run_id,
        entry,
        status=RunStatus.FAILED.value,
        error=clip_error(str(error)),
        updated_at=now,
        lease_expires_at=None,
    )


def entry_from_row(row: tuple[Any, ...]) -> ManifestEntry:
    record = dict(zip(COLUMNS, row))
    return ManifestEntry(
        run_id=record["run_id"],
        status=parse_status(record["run_id"], record["status"]),
        owner=record["owner"],
        lease_expires_at=utc_from_epoch(record["lease_expires_at"]),
        attempts=int(record["attempts"] or 0),
        started_at=utc_from_epoch(record["started_at"]),
        committed_at=utc_from_epoch(record["committed_at"]),
        updated_at=utc_from_epoch(record["updated_at"]),
        rows_in=record["rows_in"],
        rows_out=record["rows_out"],
        bad_rows=record["bad_rows"],
        output_path=record["output_path"],
        error=record["error"],
    )


# One row per archive: see spark_manifests._watermarks.
WATERMARK_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_watermark (
    archive TEXT PRIMARY KEY NOT NULL,
    run_id TEXT,
    version INTEGER NOT NULL,
    reconciled_at REAL,
    updated_at REAL
) WITHOUT ROWID
"""


def read_watermark(conn: sqlite3.Connection, archive: str) -> Watermark:
    row = conn.execute(
        "SELECT run_id, version, reconciled_at FROM run_watermark WHERE archive = ?", (archive,)
    ).fetchone()
    if row is None:
        return Watermark(archive)
    return Watermark(archive, row[0], int(row[1]), utc_from_epoch(row[2]))


def write_watermark(conn: sqlite3.Connection, new: Watermark, now: float) -> bool:
    """Write ``new`` if the stored version is the one before it; in the caller's transaction."""
    if read_watermark(conn, new.archive).version != new.version - 1:
        return False
    reconciled = None if new.reconciled_at is None else new.reconciled_at.timestamp()
    conn.execute(
        "INSERT OR REPLACE INTO run_watermark (archive, run_id, version, reconciled_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?)",
        (new.archive, new.run_id, new.version, reconciled, now),
    )
    return True
