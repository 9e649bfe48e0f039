"""One batch: claim -> load -> transform -> write -> commit, driven by retry decisions.

``BatchWriter`` takes a batch the planner made through its stages, saving a snapshot
after each (see ``spark_manifests._snapshots``) and calling ``fault_point`` at each
boundary (for crash tests). When the batch fails, ``spark_manifests.retry.decide`` says
what to do: stop the job, retry, split the batch, or fail its run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from ._claims import Claims
from ._counting import Loaded, RowCounting
from ._enriched_schemas import EntitySchemas
from ._faults import fault_point
from ._known_schemas import MAX_WIDENINGS, KnownSchemas, schemas_met, unknown_schemas
from ._ledger import OutcomeLedger, RunMetrics
from ._planning import BatchPlanner, paths
from ._preflight import SparkPreflight
from ._snapshots import JobSnapshots
from ._spark import set_job_description, spark_is_gone
from .plugins import ReaderAdapter, TransformAdapter, describe_runs, runs_checked
from .retry import FAIL_RUN, RAISE, RETRY, RetryPolicy, decide
from .runs import Run, RunListing
from .sinks import BatchCommitSink, Sink

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_logger = logging.getLogger(__name__)


class BatchWriter:
    """Processes the batches of one source with its units; see the module's docstring."""

    def __init__(
        self,
        *,
        job_name: str,
        preflight: SparkPreflight,
        planner: BatchPlanner,
        claims: Claims,
        snapshots: JobSnapshots,
        ledger: OutcomeLedger,
        reader: ReaderAdapter,
        transform: TransformAdapter,
        sink: Sink,
        retry: RetryPolicy,
    ) -> None:
        self.job_name = job_name
        self.preflight = preflight
        self.planner = planner
        self.claims = claims
        self.snapshots = snapshots
        self.ledger = ledger
        self.reader = reader
        self.transform = transform
        self.sink = sink
        self.retry = retry
        self.known_schemas = KnownSchemas(snapshots)

    def process(self, number: int, batch: list[RunListing]) -> None:
        """Claim the runs of batch ``number`` and take those claimed through their stages."""
        if any(listing.problem is None for listing in batch):
            self.preflight.start()  # not for a batch of runs that only fail without a read
        claimed = self.claims.claim_all(batch, number)
        refused = [listing.run for listing in batch if listing not in claimed]
        self.claims.settle_refused(refused, number)
        for listing in claimed:
            if listing.problem is not None:
                self.claims.fail(listing.run, listing.problem, number)
        claimed = [listing for listing in claimed if listing.problem is None]
        if claimed:
            runs = [listing.run for listing in claimed]
            self.snapshots.stage(runs, "claimed", number)
            fault_point("after_claim")
            renewal = f"{self.job_name} lease renewal"
            with self.claims.leases_renewed(runs, self.snapshots.renewed, name=renewal):
                self.write_with_retries(number, claimed)

    def write_with_retries(self, number: int, batch: list[RunListing]) -> None:
        """Write the batch, retried, split or failed as ``decide`` says; then commit."""
        runs = [listing.run for listing in batch]
        what = f"batch {number} ({describe_runs(runs)})"
        retry = 0
        while True:
            try:
                metrics, met = self._load_and_write(number, batch)
                break
            except Exception as exc:  # decided below: raised, retried, split, or recorded
                failure = exc
            decision = decide(
                failure,
                what=what,
                job_name=self.job_name,
                policy=self.retry,
                retry=retry,
                runs=len(batch),
                spark_gone=lambda: spark_is_gone(self.preflight.session),
            )
            if decision.action == RAISE:
                if decision.error is failure:
                    raise failure
                raise decision.error from failure
            if decision.action == RETRY:
                _logger.warning("%s; retrying in %.1fs", decision.error, decision.delay)
                time.sleep(decision.delay)
                retry += 1
                continue
            error = decision.error
            if decision.action == FAIL_RUN:
                self.claims.fail(runs[0], error, number)
                return
            # One bad run must not fail the others: find it by halving the batch (a few Spark
            # jobs, not one per run), or after a retryable error that outlasted its retries,
            # which may be any run's, by trying each alone.
            parts = [[item] for item in batch] if decision.each_alone else _halves(batch)
            _logger.warning("%s; trying its %d runs in %d parts", error, len(batch), len(parts))
            for part in parts:
                self.write_with_retries(number, part)
            return
        self._commit(number, batch, metrics, met)

    def _commit(
        self,
        number: int,
        batch: list[RunListing],
        metrics: Mapping[str, RunMetrics],
        met: EntitySchemas | None,
    ) -> None:
        runs = [listing.run for listing in batch]
        changed = self.planner.changed_since_listed(batch)
        for run in runs:
            if run.id in changed:
                self.claims.release_changed(run, changed[run.id], number)
            elif not self.claims.commit(run, metrics[run.id], number):
                self.ledger.skipped(run, number)
        if met is not None:
            self.known_schemas.remember(met)  # saved with the snapshot below
        fault_point("after_commit")
        self.snapshots.stage(runs, "committed", number)

    def _load_and_write(
        self, number: int, batch: list[RunListing]
    ) -> tuple[dict[str, RunMetrics], EntitySchemas | None]:
        """Load, transform and write the batch; its rows per run and the schemas it met.

        A read given the known schemas that met another one holds that schema's entities
        as bad rows: it is read and written again with the wider list, before any commit.
        """
        runs = [listing.run for listing in batch]
        spark = self.preflight.session
        set_job_description(spark, f"{self.job_name} batch {number}: {describe_runs(runs)}")
        schemas = self._known_schemas()
        try:
            for widening in range(MAX_WIDENINGS + 1):
                loaded = self.reader.load(spark, paths(batch), entity_schemas=schemas)
                # The last read keeps the lines of schemas it still lacks as bad rows.
                may_widen = schemas is not None and widening < MAX_WIDENINGS
                counting, unknown = self._write_loaded(number, runs, loaded, widening, may_widen)
                if not unknown:
                    break
                assert schemas is not None
                schemas = schemas | unknown
                _logger.info(
                    "Batch %d met schemas not known before (%s): writing it again with them",
                    number,
                    ", ".join(sorted(unknown.contexts | unknown.unstruct_event)),
                )
        finally:
            set_job_description(spark, None)
        metrics = counting.metrics()
        self._warn_unkept_bad_rows(number, metrics)
        self.snapshots.stage(runs, "written", number, metrics)
        fault_point("after_write")
        self.ledger.written(runs, number, sum(m.rows_out for m in metrics.values()))
        return metrics, schemas_met(loaded)

    def _known_schemas(self) -> EntitySchemas | None:
        """The schemas to give the reader (``None``: it scans the batch for them).

        Not with a transform: one that reads part of its input (a limit) would leave the
        lines and schemas observed by the write partial, while the scan counts every line.
        """
        if not self.reader.takes_entity_schemas or self.transform.given is not None:
            return None
        return self.known_schemas.get()

    def _write_loaded(
        self, number: int, runs: list[Run], loaded: Loaded, widening: int, may_widen: bool
    ) -> tuple[RowCounting, EntitySchemas]:
        """Write one read of the batch. When it ``may_widen``: the schemas it met but was
        not given (if any, its bad rows are not written: the batch is written again)."""
        counting = RowCounting(loaded, runs, keeps_bad_rows=self.sink.writes_bad_rows)
        events = counting.observe_events(loaded.events)
        if self.transform.given is not None:
            events = counting.observe_output(self.transform.apply(events, runs))
        if self.transform.given is not None or self.reader.is_custom:
            # The sink replaces the partitions the run column names: a value that is
            # not one of the batch's runs would replace another run's output.
            what = "transform" if self.transform.given is not None else "reader"
            events = runs_checked(events, runs, what)
        bad_rows = loaded.bad_rows
        if bad_rows is not None and self.reader.is_custom:
            bad_rows = runs_checked(bad_rows, runs, "reader")
        batch_id = self._new_batch_id() if self.sink.supports_batch_commits else None
        # Saved before the write: a resumed job asks the sink whether that batch landed,
        # and, when it may widen, whether it landed lines held back for a schema not given.
        self.snapshots.stage(runs, "loaded", number, batch_id=batch_id, may_widen=may_widen)
        if not widening:
            self.ledger.loaded(runs, number)
        fault_point("after_load")
        if batch_id is None:
            unknown = self._write(runs, events, counting, bad_rows, loaded, may_widen)
        else:
            self._write_batch(batch_id, runs, events, counting, bad_rows)
            unknown = unknown_schemas(loaded)  # waited for: the rows counted wait on it too
            unknown = unknown if may_widen else EntitySchemas()
        return counting, unknown

    def _write(
        self,
        runs: Sequence[Run],
        events: DataFrame,
        counting: RowCounting,
        bad_rows: DataFrame | None,
        loaded: Loaded,
        may_widen: bool,
    ) -> EntitySchemas:
        """Write the events, then the bad rows unless the read met schemas it was not given
        and ``may_widen``: then those schemas, for the batch to be written again."""
        self.sink.write(events, runs)
        fault_point("mid_write")
        # Waited for before the rows are counted: the lines read are observed with them.
        unknown = unknown_schemas(loaded)
        if unknown and may_widen:
            return unknown
        if counting.may_have_bad_rows():
            assert bad_rows is not None
            self.sink.write_bad_rows(counting.observe_bad_rows(bad_rows), runs)
        return EntitySchemas()

    def _new_batch_id(self) -> str:
        return f"{self.job_name}/{uuid.uuid4().hex}"

    def _write_batch(
        self,
        batch_id: str,
        runs: Sequence[Run],
        events: DataFrame,
        counting: RowCounting,
        bad_rows: DataFrame | None,
    ) -> None:
        """Write through a sink that records the batch, under ``batch_id``, in its commit."""
        kept = None
        if counting.keeps_bad_rows and bad_rows is not None:
            kept = counting.observe_bad_rows(bad_rows)
        sink = cast(BatchCommitSink, self.sink)
        sink.write_batch(events, kept, runs, batch_id=batch_id)
        fault_point("mid_write")

    def _warn_unkept_bad_rows(self, number: int, metrics: Mapping[str, RunMetrics]) -> None:
        unkept = 0 if self.sink.writes_bad_rows else sum(m.bad_rows for m in metrics.values())
        if unkept:
            _logger.warning(
                "Batch %d: %d bad lines were not kept, because %s does not write bad rows "
                "(declare writes_bad_rows = True and define write_bad_rows to keep them). "
                "They are counted in the manifest's BadRows.",
                number,
                unkept,
                type(self.sink).__name__,
            )


def _halves(batch: list[RunListing]) -> list[list[RunListing]]:
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]
