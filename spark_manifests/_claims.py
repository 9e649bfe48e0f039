"""Claims: the runs a job holds in the manifest, from the claim to the verdict.

``Claims`` claims runs, keeps their leases renewed by a thread while a batch runs, and
gives each a verdict in the manifest (commit, fail, release), telling the
``OutcomeLedger`` of each.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Callable

from ._ledger import OutcomeLedger, RunMetrics
from .exceptions import OwnershipLostError, SparkManifestsError
from .manifest import RunManifest, RunStatus
from .runs import Run, RunListing
from .sinks import Sink

_logger = logging.getLogger(__name__)


class Claims:
    """The claims of one source on the manifest's runs, as ``owner()`` for ``lease_seconds``."""

    def __init__(
        self,
        manifest: RunManifest,
        sink: Sink,
        ledger: OutcomeLedger,
        *,
        owner: Callable[[], str],
        lease_seconds: int,
        max_attempts: int,
    ) -> None:
        self.manifest = manifest
        self.sink = sink
        self.ledger = ledger
        self._owner = owner
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.held: set[str] = set()

    @property
    def owner(self) -> str:
        return self._owner()

    def claim(self, run: Run, *, batch: int | None) -> bool:
        if not self.manifest.claim(
            run.id,
            self.owner,
            lease_seconds=self.lease_seconds,
            max_attempts=self.max_attempts,
        ):
            _logger.info(
                "Skipping %s: committed, skipped, out of attempts, or held by another job", run.id
            )
            return False
        self.held.add(run.id)
        self.ledger.claimed(run, batch)
        return True

    def claim_all(self, batch: list[RunListing], number: int) -> list[RunListing]:
        """The runs of ``batch`` this job could claim. Claiming thousands of runs can take
        a good part of a lease: the first claims are renewed meanwhile, every third of it."""
        claimed: list[RunListing] = []
        renewed_at = time.monotonic()
        for listing in batch:
            if self.claim(listing.run, batch=number):
                claimed.append(listing)
            if time.monotonic() - renewed_at >= self.lease_seconds / 3:
                self.renew([listing.run for listing in claimed])
                renewed_at = time.monotonic()
        return claimed

    def commit(self, run: Run, metrics: RunMetrics, batch: int | None) -> bool:
        """Commit a run this job holds; ``False`` when another job took it over meanwhile."""
        try:
            self.manifest.commit(
                run.id,
                self.owner,
                rows_in=metrics.rows_in,
                rows_out=metrics.rows_out,
                bad_rows=metrics.bad_rows,
                output_path=self.sink.output_path(run),
            )
        except OwnershipLostError:
            # Another job took the run over after our lease ran out; it writes the same
            # partition, so the output stays one copy.
            _logger.warning("Lost %s to another job before committing it", run.id)
            self.held.discard(run.id)
            return False
        self.held.discard(run.id)
        self.ledger.committed(run, metrics, batch)
        return True

    def release(self, run_id: str) -> None:
        """Give back a run this source holds, uncommitted: it is pending again at once."""
        try:
            self.manifest.release(run_id, self.owner)
            _logger.info("Released %s", run_id)
        except OwnershipLostError:
            _logger.warning("Could not release %s: another owner holds it now", run_id)
        self.held.discard(run_id)

    def release_all(self) -> None:
        for run_id in sorted(self.held):
            self.release(run_id)

    def release_changed(self, run: Run, how: str, batch: int) -> None:
        """Give back a run whose files changed while it was processed, uncommitted."""
        _logger.warning(
            "Run %s changed while it was processed (%s): not committed. It is processed "
            "again, as it then stands, by the next start. If runs are still being copied "
            "when jobs start, give them time to settle (settle_seconds, --settle).",
            run.id,
            how,
        )
        self.release(run.id)
        self.ledger.deferred(run, batch)

    def settle_refused(self, runs: Sequence[Run], batch: int) -> None:
        """Count the runs a claim refused, saying which are out of attempts; a run its jobs
        kept dying on is recorded failed rather than left processing for ever."""
        if not runs:
            return
        entries = self.manifest.get_many([run.id for run in runs])
        for run in runs:
            entry = entries.get(run.id)
            if entry is not None and entry.attempts >= self.max_attempts:
                if entry.status is RunStatus.PROCESSING and self._fail_abandoned(
                    run, entry.attempts, batch
                ):
                    continue
                if entry.status is RunStatus.FAILED:
                    _logger.warning(
                        "Run %s failed %d times and has no attempts left (last error: %s); "
                        "unmark it to process it again, or skip it",
                        run.id,
                        entry.attempts,
                        entry.error,
                    )
            self.ledger.skipped(run, batch)

    def _fail_abandoned(self, run: Run, attempts: int, batch: int) -> bool:
        message = (
            f"Abandoned: the {attempts} jobs that took run {run.id} stopped while processing "
            "it (killed, out of memory, lost driver?) and it has no attempts left. Find the "
            "cause in their logs, then unmark it to process it again "
            "(`spark-manifests manifest unmark`) or skip it."
        )
        # The manifest checks the lease itself: a live one means the run is not abandoned.
        if not self.manifest.fail_abandoned(run.id, message, max_attempts=self.max_attempts):
            return False
        _logger.error("Run %s failed: %s", run.id, message)
        self.ledger.failed(run, message, batch)
        return True

    def fail(self, run: Run, error: SparkManifestsError, batch: int) -> None:
        message = str(error)
        self.held.discard(run.id)
        try:
            self.manifest.fail(run.id, self.owner, message)
        except OwnershipLostError:
            # Another job holds the run now and gives it its own verdict.
            _logger.warning("Lost %s to another job before recording its failure", run.id)
            self.ledger.skipped(run, batch)
            return
        _logger.error("Run %s failed: %s", run.id, message)
        self.ledger.failed(run, message, batch, cause=error)

    @contextlib.contextmanager
    def leases_renewed(
        self, runs: Sequence[Run], also: Callable[[], None], *, name: str
    ) -> Iterator[None]:
        """Renew the claims of ``runs``, and call ``also`` (the job saves its state), every
        third of a lease while the block runs: a batch that outlasts a lease is not taken
        over by the next job, and the state keeps saying the job is at work."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self.lease_seconds / 3):
                self.renew(runs)
                also()

        renewal = threading.Thread(target=renew_until_stopped, name=name, daemon=True)
        renewal.start()
        try:
            yield
        finally:
            stop.set()
            renewal.join()

    def renew(self, runs: Sequence[Run]) -> None:
        for run in runs:
            if run.id not in self.held:  # committed or failed meanwhile
                continue
            try:
                self.manifest.renew(run.id, self.owner, lease_seconds=self.lease_seconds)
            except NotImplementedError:
                break  # a manifest that cannot renew: its claims last one lease
            except SparkManifestsError as exc:  # taken over, or AWS trouble: the commit tells
                _logger.warning("Could not renew the lease of %s: %s", run.id, exc)
