"""What the commands print: the progress of a job, its summary, and tables of runs."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

# The command's logger (not this module's): its log lines keep the name they always had.
_logger = logging.getLogger(__package__)


class ProgressDisplay:
    """One redrawn status line on a terminal; plain log lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.interactive = stream.isatty()
        self.started = time.monotonic()
        self.rows = 0
        self.done = self.total = 0
        self._handlers = logging.getLogger().handlers if self.interactive else []
        for handler in self._handlers:
            handler.addFilter(self._clear_line)

    def _clear_line(self, record: logging.LogRecord) -> bool:
        """Rub out the progress line before a log line, which would otherwise follow it."""
        self.stream.write("\r\x1b[K")
        return True

    def progress(self, progress: Any) -> None:
        self.done, self.total = progress.done, progress.total
        if self.interactive:
            elapsed = time.monotonic() - self.started
            line = (
                f"runs {self.done}/{self.total}  rows {self.rows:,}  "
                f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}  {progress.message}"
            )
            self.stream.write("\r" + line[:120].ljust(120))
            self.stream.flush()
        else:
            _logger.info(
                "progress: %d/%d runs, %d rows: %s",
                progress.done,
                progress.total,
                self.rows,
                progress.message,
            )

    def committed(self, event: Any) -> None:
        self.rows += int(event.data.get("rows_out", 0))

    def finish(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear_line)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def print_summary(summary: Any) -> None:
    """The one line that sums up a job's run."""
    print(
        f"Job {summary.job_name}: {summary.runs_committed} runs committed, "
        f"{summary.runs_failed} failed, {summary.runs_skipped} skipped, "
        f"{summary.runs_deferred} deferred, {summary.runs_resumed} resumed; "
        f"rows in {summary.rows_in:,}, out {summary.rows_out:,}, bad {summary.bad_rows:,}; "
        f"{summary.seconds:.1f}s"
    )


def stdout_to_devnull() -> None:
    """Let later writes to a closed pipe go nowhere, and exit without a broken-pipe error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """The ``columns`` of ``rows``, aligned under a header; ``(no runs)`` when there are none."""
    # Only error texts are cut: a run id must stay whole to be copied into a command.
    cells = [[_cell(row.get(column), cut=column == "error") for column in columns] for row in rows]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip(), file=out)
    if not cells:
        print("(no runs)", file=out)


def _cell(value: Any, *, cut: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text if not cut or len(text) <= 60 else text[:57] + "..."
