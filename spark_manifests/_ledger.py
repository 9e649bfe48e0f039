"""The outcome ledger: what a job did to each run, counted in its summary and told to handlers.

Every verdict on a run (claimed, committed, failed, skipped, deferred) goes through one
``OutcomeLedger``, which keeps the ``JobSummary`` counters and fires the matching
event, so that no stage threads the summary through its calls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._events import EventHandlers, Progress, RunEvent
from .exceptions import JobFailedError
from .manifest import clip_error

if TYPE_CHECKING:
    from .runs import Run

_logger = logging.getLogger(__name__)

#: Each failure message in a job's summary is cut to this many characters.
MAX_SUMMARY_ERROR_CHARS = 1000


@dataclass
class JobSummary:
    """What one call of ``ManifestedRunSource.run`` did."""

    job_name: str
    owner: str
    runs_committed: int = 0
    runs_failed: int = 0
    runs_skipped: int = 0
    runs_deferred: int = 0
    runs_resumed: int = 0
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.runs_failed == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def settled(self) -> int:
        """Runs given a verdict: committed, failed, skipped or deferred."""
        return self.runs_committed + self.runs_failed + self.runs_skipped + self.runs_deferred


@dataclass
class RunMetrics:
    """The rows of one run: read (good and bad), written, bad."""

    rows_in: int = 0
    rows_out: int = 0
    bad_rows: int = 0


def run_ids(runs: Sequence[Run]) -> tuple[str, ...]:
    return tuple(run.id for run in runs)


class OutcomeLedger:
    """The summary of the job now running, and the handlers told about each outcome."""

    def __init__(self, job_name: str, *, fail_fast: bool = False) -> None:
        self.job_name = job_name
        self.fail_fast = fail_fast
        self.handlers = EventHandlers()
        self.summary = JobSummary(job_name, "")
        self.progress = Progress(0, 0, "not started")

    def start(self, owner: str) -> JobSummary:
        """A fresh summary for a run of the job as ``owner``."""
        self.summary = JobSummary(self.job_name, owner)
        return self.summary

    def report(self, done: int, total: int, message: str) -> None:
        self.progress = Progress(done, total, message)
        self.handlers.fire("progress", self.progress)

    def claimed(self, run: Run, batch: int | None) -> None:
        self.handlers.fire("run_claimed", RunEvent("run_claimed", (run.id,), batch))

    def loaded(self, runs: Sequence[Run], batch: int) -> None:
        self.handlers.fire("batch_loaded", RunEvent("batch_loaded", run_ids(runs), batch))

    def written(self, runs: Sequence[Run], batch: int, rows_out: int) -> None:
        event = RunEvent("batch_written", run_ids(runs), batch, {"rows_out": rows_out})
        self.handlers.fire("batch_written", event)

    def committed(self, run: Run, metrics: RunMetrics, batch: int | None) -> None:
        summary = self.summary
        summary.runs_committed += 1
        summary.rows_in += metrics.rows_in
        summary.rows_out += metrics.rows_out
        summary.bad_rows += metrics.bad_rows
        event = RunEvent("run_committed", (run.id,), batch, asdict(metrics))
        self.handlers.fire("run_committed", event)

    def resumed(self) -> None:
        self.summary.runs_resumed += 1

    def skipped(self, run: Run, batch: int | None) -> None:
        self.summary.runs_skipped += 1
        self.handlers.fire("run_skipped", RunEvent("run_skipped", (run.id,), batch))

    def deferred(self, run: Run, batch: int | None = None) -> None:
        self.summary.runs_deferred += 1
        self.handlers.fire("run_deferred", RunEvent("run_deferred", (run.id,), batch))

    def failed(
        self, run: Run, message: str, batch: int | None, *, cause: BaseException | None = None
    ) -> None:
        """Count a failed run; with ``fail_fast``, stop the job."""
        self.summary.runs_failed += 1
        # The manifest keeps the whole error; the summary (and completed state) a readable
        # part, so a mass failure does not make a state file of megabytes.
        self.summary.failures[run.id] = clip_error(message, MAX_SUMMARY_ERROR_CHARS) or ""
        event = RunEvent("run_failed", (run.id,), batch, {"error": message})
        self.handlers.fire("run_failed", event)
        if self.fail_fast:
            raise JobFailedError(
                f"Run {run.id} failed and fail_fast is set: {message}", run_id=run.id
            ) from cause

    def log_done(self) -> None:
        summary = self.summary
        _logger.info(
            "Job %s done: %d runs committed, %d failed, %d skipped, %d deferred, %d rows in, "
            "%d out, %d bad, %.1fs",
            self.job_name,
            summary.runs_committed,
            summary.runs_failed,
            summary.runs_skipped,
            summary.runs_deferred,
            summary.rows_in,
            summary.rows_out,
            summary.bad_rows,
            summary.seconds,
        )
