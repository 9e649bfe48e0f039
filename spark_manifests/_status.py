"""The status table of an archive's runs: one row per run with its manifest status, rows and
times, for ``status`` and ``spark-manifests runs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from .manifest import RunManifest
from .runs import Run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The columns of ``ManifestedRunSource.status``, in order, with their Spark types.
STATUS_COLUMNS = {
    "run": "string",
    "run_id": "string",
    "status": "string",
    "attempts": "int",
    "owner": "string",
    "rows_in": "bigint",
    "rows_out": "bigint",
    "bad_rows": "bigint",
    "started_at": "timestamp",
    "committed_at": "timestamp",
    "error": "string",
}


def status_rows(runs: Sequence[Run], manifest: RunManifest) -> list[dict[str, Any]]:
    """One row per run: its label, id and manifest status (``PENDING`` if never seen)."""
    entries = manifest.get_many([run.id for run in runs])
    return [_status_row(run, entries.get(run.id)) for run in runs]


def _status_row(run: Run, entry: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run": run.label,
        "run_id": run.id,
        "status": entry.status.value if entry else "PENDING",
    }
    for name in list(STATUS_COLUMNS)[len(row) :]:
        row[name] = getattr(entry, name, None) if entry else None
    return row


def status_table(
    rows: list[dict[str, Any]], spark: Callable[[], SparkSession], *, as_spark: bool = False
) -> Any:
    """``rows`` as a pandas DataFrame when pandas is installed, else (or with ``as_spark``) as
    a Spark DataFrame, with the columns of ``STATUS_COLUMNS`` even when empty."""
    if not as_spark:
        try:
            import pandas
        except ImportError:
            pass
        else:
            return pandas.DataFrame(rows, columns=list(STATUS_COLUMNS))
    # Typed up front: inferred from the rows, a column that is None in all of them
    # (no run failed yet: error) has no type, and Spark refuses the table.
    schema = ", ".join(f"{name} {kind}" for name, kind in STATUS_COLUMNS.items())
    return spark().createDataFrame([tuple(row.values()) for row in rows], schema)
