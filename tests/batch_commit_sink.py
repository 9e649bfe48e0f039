"""A small BatchCommitSink for tests: Parquet output, and its "table commits" in a JSON file.

Each write_batch writes the runs' partitions, then appends the batch id to ``commits.json``
beside the output (written aside, then renamed into place): a batch id is in the file once
its write landed whole, as a table format's commit log would hold it. Its ``batch_rows``
counts the output as it is, without a table format's time travel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from spark_manifests._spark import running_session
from spark_manifests.sinks import BatchCommitSink, ParquetSink, RunRows, count_batch_rows


class JsonCommitsSink(ParquetSink, BatchCommitSink):
    """ParquetSink whose batches are recorded in ``<output>/commits.json``."""

    def __init__(self, output: str, **options: Any) -> None:
        super().__init__(output, **options)
        self.commits_file = os.path.join(self.location.key, "commits.json")

    def write_batch(
        self, events: Any, bad_rows: Any, runs: Sequence[Any], *, batch_id: str
    ) -> None:
        self.write(events, runs)
        if bad_rows is not None:
            self.write_bad_rows(bad_rows, runs)
        commits = self.commits()
        commits.append({"batch_id": batch_id, "runs": [run.label for run in runs]})
        aside = self.commits_file + ".tmp"
        with open(aside, "w") as file:
            json.dump(commits, file)
        os.replace(aside, self.commits_file)

    def batch_committed(self, batch_id: str) -> bool:
        return any(commit["batch_id"] == batch_id for commit in self.commits())

    def batch_rows(self, batch_id: str, runs: Sequence[Any]) -> dict[str, RunRows] | None:
        """Counted in the output as it is now (Parquet keeps no older version to read)."""
        spark = running_session()
        if not self.batch_committed(batch_id) or spark is None:
            return None
        frames = {}
        for table in ("events", "bad_rows"):
            folder = os.path.join(self.location.key, table)
            if os.path.isdir(folder):
                frames[table] = spark.read.option("mergeSchema", "true").parquet(folder)
        return count_batch_rows(frames["events"], frames.get("bad_rows"), runs)

    def commits(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.commits_file):
            return []
        with open(self.commits_file) as file:
            return list(json.load(file))
