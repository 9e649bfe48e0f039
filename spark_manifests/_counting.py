"""Row counting: the rows of a batch per run (in, out, bad), counted while it is written.

Spark ``Observation``s count the rows as the sink's own write runs, instead of a ``count()``
job of their own; when an observation never reports (a write through the RDD), the rows are
counted apart.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ._ledger import RunMetrics
from .sinks import RUN_COLUMN

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from .enriched import EnrichedRead
    from .runs import Run

_logger = logging.getLogger(__name__)


@dataclass
class Loaded:
    """What the reader gave for a batch."""

    events: DataFrame
    bad_rows: DataFrame | None
    lines_per_run: Mapping[str | None, int] | None = None
    #: The lines read, observed by the reader while the events are written: without
    #: ``lines_per_run``, enough to tell a batch has no bad rows (call after the write).
    lines_read: Callable[[], int] | None = None
    #: The default reader's ``EnrichedRead``, for the schemas it met (``None``: another
    #: reader).
    enriched: EnrichedRead | None = None


def _observe_per_run(
    frame: DataFrame, runs: Sequence[Run], name: str
) -> tuple[DataFrame, Callable[[], dict[str, int]]]:
    """Count rows per run while the write runs, instead of a separate count() job.

    Returns the observed frame and a function that reads the counts once an action ran.
    """
    from pyspark.sql import functions as F

    labels = sorted({run.label for run in runs})
    column = F.col(RUN_COLUMN)

    def counted_apart() -> dict[str, Any]:
        counts = _count_per_run(frame, runs)
        return {f"n{i}": counts.get(label, 0) for i, label in enumerate(labels)}

    observed, values = _observe(
        frame,
        name,
        counted_apart,
        *[F.count(F.when(column == label, 1)).alias(f"n{i}") for i, label in enumerate(labels)],
    )

    def counts() -> dict[str, int]:
        found = values()
        return {label: int(found.get(f"n{i}") or 0) for i, label in enumerate(labels)}

    return observed, counts


def _observe_total(frame: DataFrame, name: str) -> tuple[DataFrame, Callable[[], int]]:
    """Count all rows while the write runs; see ``_observe_per_run``."""
    from pyspark.sql import functions as F

    observed, values = _observe(
        frame, name, lambda: {"n": frame.count()}, F.count(F.lit(1)).alias("n")
    )
    return observed, lambda: int(values().get("n") or 0)


#: How long to wait for an observation once the sink returned, before counting apart.
OBSERVATION_WAIT_SECONDS = 10.0


def _observe(
    frame: DataFrame, name: str, counted_apart: Callable[[], dict[str, Any]], *aggregates: Column
) -> tuple[DataFrame, Callable[[], dict[str, Any]]]:
    """``frame`` observed, and a function that reads the observation, or when it never
    reports, the same values from ``counted_apart``."""
    from pyspark.sql import Observation

    observation = Observation(name)
    observed = frame.observe(observation, *aggregates)

    def values() -> dict[str, Any]:
        found = observed_after_write(
            lambda: dict(observation.get), observed, f"The rows ({name}) were not counted"
        )
        return found if found is not None else counted_apart()

    return observed, values


def observed_after_write(value: Callable[[], Any], observed: DataFrame, what: str) -> Any | None:
    """``value()``, read from an observation of ``observed`` once the sink wrote it; when
    it does not report, made to by a Spark job of its own (``None`` if even that fails).

    Observations report on DataFrame actions only: a sink that writes through the RDD
    (``foreachPartition``) leaves them waiting. A count over the observed frame makes them
    report (and ends the thread waiting for them: ``Observation.get`` has no timeout).
    """
    waiting = ValueWait(value)
    found = waiting.result(OBSERVATION_WAIT_SECONDS)
    if found is not None:
        return found
    _logger.warning(
        "%s while the sink wrote them (a write through foreachPartition, or Spark slow to "
        "report): counting them by a Spark job of their own",
        what,
    )
    observed.groupBy().count().collect()
    return waiting.result(OBSERVATION_WAIT_SECONDS)


class ValueWait:
    """A thread that waits for ``value()``, an observation's values (``Observation.get``
    blocks until an action made it report)."""

    def __init__(self, value: Callable[[], Any]) -> None:
        self._value = value
        self._found: list[Any] = []
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._read, name="observation", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._found.append(self._value())
        except BaseException as exc:  # handed to the caller's thread
            self._failed.append(exc)

    def result(self, wait_seconds: float) -> Any | None:
        """The value, or ``None`` if it is not there within ``wait_seconds``."""
        self._thread.join(wait_seconds)
        if self._thread.is_alive():
            return None
        if self._failed:
            raise self._failed[0]
        return self._found[0]


def _keeps_observation(frame: DataFrame, name: str) -> bool:
    """Whether the optimized plan of ``frame`` still holds the observation ``name``.

    The optimizer drops what lies under an operator it proves empty (``where("false")``,
    ``limit(0)``), observations included; those never report (Spark 3.5 waits for them for
    ever, Spark 4 fails).
    """
    jdf = getattr(frame, "_jdf", None)
    if jdf is None:  # Spark Connect: no plan to look at from here
        return True
    return f"CollectMetrics {name}," in jdf.queryExecution().optimizedPlan().toString()


def _count_per_run(frame: DataFrame, runs: Sequence[Run]) -> dict[str, int]:
    """Rows per run label, by a job of its own."""
    labels = {run.label for run in runs}
    counted = frame.groupBy(RUN_COLUMN).count().collect()
    return {row[RUN_COLUMN]: row["count"] for row in counted if row[RUN_COLUMN] in labels}


class RowCounting:
    """The rows of a batch per run (in, out, bad), counted while the batch is written.

    Counting per run costs one aggregate per run on every row, which with hundreds of runs
    in a batch is a good part of the job. When the reader counted the lines of each run
    (``lines_per_run``), one total is enough: if the events reaching the transform are as
    many as the lines read, no line was bad, the bad rows are not computed at all, and each
    run's events are its lines. Otherwise the bad rows are written and counted per run
    (they are few), and each run's events are its lines minus its bad rows; a transform that
    reads only part of its input (a limit) ends up there too, so it costs time, never counts.
    """

    def __init__(self, loaded: Loaded, runs: Sequence[Run], *, keeps_bad_rows: bool) -> None:
        self._runs = runs
        self._keeps_bad_rows = keeps_bad_rows and loaded.bad_rows is not None
        # Bad rows a sink does not keep are still counted: from the lines read, or else
        # by a job of their own.
        self._unkept_bad_rows = None if keeps_bad_rows else loaded.bad_rows
        self._lines = loaded.lines_per_run
        self._lines_read = loaded.lines_read
        # One total stands for the per-run counts only when the bad rows are counted too.
        self._total_is_enough = self._keeps_bad_rows and self._lines is not None
        self._events_total: Callable[[], int] | None = None
        self._events: Callable[[], dict[str, int]] | None = None
        self._output: Callable[[], dict[str, int]] | None = None
        self._bad: Callable[[], dict[str, int]] | None = None
        self._names = {kind: f"{kind}_{uuid.uuid4().hex[:8]}" for kind in ("in", "out", "bad")}
        self._input: DataFrame | None = None

    def observe_events(self, events: DataFrame) -> DataFrame:
        """``events`` as the reader gave them, counted."""
        self._input = events
        if not self._total_is_enough:
            events, self._events = _observe_per_run(events, self._runs, self._names["in"])
        else:
            events, self._events_total = _observe_total(events, self._names["in"])
        return events

    def observe_output(self, events: DataFrame) -> DataFrame:
        """``events`` after the transform, counted (without a transform, output is input).

        When the transform lets the optimizer drop the input count from the plan, the input
        is counted another way: from the bad rows, or by a job of its own.
        """
        events, self._output = _observe_per_run(events, self._runs, self._names["out"])
        if not _keeps_observation(events, self._names["in"]):
            _logger.info("The transform's plan skips its input; counting the input apart")
            self._events_total = None
            if self._events is not None:
                source, runs = self._input, self._runs
                assert source is not None
                self._events = lambda: _count_per_run(source, runs)
        return events

    @property
    def keeps_bad_rows(self) -> bool:
        """Whether the batch's bad rows are written (the sink keeps them, the reader gave them)."""
        return self._keeps_bad_rows

    def may_have_bad_rows(self) -> bool:
        """Whether the bad rows must be written; call after the events were written."""
        if not self._keeps_bad_rows:
            return False
        if self._lines is None and self._lines_read is not None and self._events is not None:
            # Lines observed by the write itself (no scan): as many events, no bad rows.
            lines, events = self._lines_read(), sum(self._events().values())
        elif self._lines is None or self._events_total is None:
            return True
        else:
            lines, events = sum(self._lines.values()), self._events_total()
        if events == lines:
            _logger.debug("%d lines, %d events: no bad rows to write", lines, events)
            return False
        return True

    def observe_bad_rows(self, bad_rows: DataFrame) -> DataFrame:
        """``bad_rows`` counted."""
        bad_rows, self._bad = _observe_per_run(bad_rows, self._runs, self._names["bad"])
        return bad_rows

    def metrics(self) -> dict[str, RunMetrics]:
        """Rows per run id; call once everything was written."""
        bad = self._bad() if self._bad is not None else {}
        if self._events is not None:
            events = self._events()
            if self._unkept_bad_rows is not None:
                bad = self._count_unkept_bad_rows(events)
        else:
            lines = self._lines or {}
            events = {
                run.label: lines.get(run.label, 0) - bad.get(run.label, 0) for run in self._runs
            }
        output = self._output() if self._output is not None else events
        return {
            run.id: RunMetrics(
                rows_in=events.get(run.label, 0) + bad.get(run.label, 0),
                rows_out=output.get(run.label, 0),
                bad_rows=bad.get(run.label, 0),
            )
            for run in self._runs
        }

    def _count_unkept_bad_rows(self, events: dict[str, int]) -> dict[str, int]:
        if self._lines is not None:
            lines = self._lines
            return {
                run.label: max(lines.get(run.label, 0) - events.get(run.label, 0), 0)
                for run in self._runs
            }
        if self._lines_read is not None and self._lines_read() == sum(events.values()):
            return {}  # as many events as lines observed read: no bad row to count
        assert self._unkept_bad_rows is not None
        return _count_per_run(self._unkept_bad_rows, self._runs)
