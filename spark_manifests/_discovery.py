"""Watermark discovery: a start lists and reads only the runs from its archive's watermark on.

The manifest keeps, per archive, a watermark W: every run ordered before it is settled (see
``spark_manifests._watermarks``). A start reads W first, lists the archive from W on and
reads the status of those runs alone; once its runs are settled it moves W forward by a
compare-and-set from the W it read. A lost race writes nothing: the next start reads W again.

Now and then a start lists the whole archive instead (a reconciliation): when the archive has
no watermark, when the last reconciliation is ``reconcile_seconds`` old, or on demand. It
finds a run copied late below W, and lowers W to it before processing it, so that no later
start skips it, even if this one stops before it is settled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ._run_folders import run_position, utc
from ._watermarks import next_watermark
from .manifest import RunManifest, Watermark

_logger = logging.getLogger(__name__)

#: How often a start lists the whole archive unless told otherwise: once a day.
DEFAULT_RECONCILE_SECONDS = 24 * 3600


@dataclass
class Discovery:
    """What one start listed, from which watermark, and which of it was pending."""

    #: The watermark read before the listing and the statuses; ``None``: none kept.
    watermark: Watermark | None
    #: Whether the whole archive was listed (a reconciliation).
    full: bool
    #: Whether the listing holds every run from its start on (no ``since`` cut into it).
    complete: bool
    #: Run ids listed, and those of them pending when the statuses were read (before the
    #: ``limit``), in run order.
    listed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    #: Whether this start lowered the watermark (to a late run): the statuses it read
    #: justify no advance from the watermark it read.
    lowered: bool = False


class WatermarkDiscovery:
    """Where the starts of ``archive`` list from, and moving its watermark on after them."""

    def __init__(
        self,
        manifest: RunManifest,
        archive: str,
        *,
        reconcile_seconds: float,
        full_scan: bool,
        max_attempts: int,
    ) -> None:
        self.manifest = manifest
        self.archive = archive
        self.reconcile_seconds = reconcile_seconds
        self.full_scan = full_scan
        self.max_attempts = max_attempts

    def begin(self, since: datetime | None) -> Discovery:
        """Read the watermark and decide how much of the archive this start lists."""
        if not self.manifest.supports_watermarks:
            return Discovery(None, full=True, complete=False)
        watermark = self.manifest.watermark(self.archive)
        full = self._reconciling(watermark)
        start = None if full else watermark.run_id
        low = utc(since)
        complete = low is None or (start is not None and low <= run_position(start)[0])
        if full:
            _logger.info("Listing the whole of %s (reconciliation)", self.archive or "/")
        else:
            _logger.debug("Listing %s from its watermark %s", self.archive or "/", start)
        return Discovery(watermark, full=full, complete=complete)

    def from_run(self, discovery: Discovery) -> str | None:
        """The run the listing starts at (``None``: the whole archive)."""
        if discovery.full or discovery.watermark is None:
            return None
        return discovery.watermark.run_id

    def record(self, discovery: Discovery, listed: list[str], pending: list[str]) -> None:
        """Keep what the start listed and found pending; a late pending run below the
        watermark (only a reconciliation lists there) lowers it now."""
        discovery.listed, discovery.pending = listed, pending
        watermark = discovery.watermark
        if watermark is None or watermark.run_id is None or not pending:
            return
        below = run_position(watermark.run_id)
        late = [run_id for run_id in pending if run_position(run_id) < below]
        if late:
            _logger.warning(
                "%d runs of %s appeared below its watermark after it passed them (copied "
                "late?), the first %s: lowering the watermark to process them",
                len(late),
                self.archive or "/",
                min(late, key=run_position),
            )
            self.manifest.lower_watermarks(late)
            discovery.lowered = True

    def _reconciling(self, watermark: Watermark) -> bool:
        if self.full_scan or watermark.run_id is None or watermark.reconciled_at is None:
            return True
        age = (self.manifest._now_utc() - watermark.reconciled_at).total_seconds()
        return age >= self.reconcile_seconds

    def settle(self, discovery: Discovery) -> None:
        """Move the watermark to the first listed run still pending now (or the last run
        listed), once the start's runs are settled.

        Only the runs pending when listed are read again: the others were settled then, and
        an ``unmark`` of any of them since changed the watermark's version, which fails the
        compare-and-set. A start that lowered the watermark (to a late run) leaves it there:
        the next start lists from that run and moves it on.
        """
        watermark = discovery.watermark
        if watermark is None or discovery.lowered or not discovery.complete:
            return
        if not discovery.listed:
            return
        still = self.manifest.pending(discovery.pending, max_attempts=self.max_attempts)
        target = next_watermark(discovery.listed, still)
        if target is None or (
            # An ``until`` before the watermark: nothing listed says more than it does.
            watermark.run_id is not None and run_position(target) < run_position(watermark.run_id)
        ):
            return
        if target == watermark.run_id and not discovery.full:
            return  # nothing new settled: no write
        if not self.manifest.advance_watermark(watermark, target, reconciled=discovery.full):
            _logger.debug(
                "The watermark of %s changed since this start read it (another worker, an "
                "unmark): left for the next start",
                self.archive,
            )
