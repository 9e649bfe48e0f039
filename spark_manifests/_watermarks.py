"""Per-archive watermarks in the run manifest: where a start's discovery may begin.

The watermark of an archive is a run id W such that every run of the archive ordered before
W (by time, then id, as ``Run`` sorts) is settled: committed,
legacy, skipped, or failed out of attempts. W itself may be unsettled. A start lists only the
runs from W on (``list_runs(archive, from_run=W)``) and reads the status of those alone;
runs that appear late below W are found by a full listing now and then (a reconciliation).

The record lives in the manifest, beside the runs, so every worker of a job and the
``manifest`` commands see the same one; on DynamoDB it is an item whose ``RunId`` starts with
``WATERMARK_PREFIX``, a key no run folder can have, so the Snowplow SDK's
``contains(run_id)`` (a GetItem of a run folder's key) and ``list_runids`` (an S3 listing)
never meet it, and ``entries`` hides it.

Every write is a compare-and-set on the record's ``version``, which each write raises by one:

- a worker advances W only from the version it read *before* it read the statuses that
  justify the new W (``ArchiveWatermarks.advance_watermark``);
- ``unmark`` lowers W to the run it forgets, before forgetting it and again after, and
  raises the version even when W is already lower, so an advance computed from statuses
  read before the run was forgotten fails its compare-and-set instead of stepping over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ._run_folders import run_position
from .exceptions import InvalidRunIdError, RetryableError

_logger = logging.getLogger(__name__)

#: The key prefix of watermark records on DynamoDB: ``spark_manifests#watermark#<archive>``.
WATERMARK_PREFIX = "spark_manifests#watermark#"
#: Compare-and-set attempts of one lowering before it gives up (RetryableError).
MAX_LOWERING_ATTEMPTS = 20


@dataclass(frozen=True)
class Watermark:
    """An archive's watermark as read from the manifest.

    Attributes
    ----------
    archive : str
        The archive key (``archive_of`` of any of its run ids).
    run_id : str or None
        Every run ordered before it is settled; ``None``: nothing is known (list everything).
    version : int
        Raised by one on every write; 0 when the manifest holds no record.
    reconciled_at : datetime or None
        When a full listing of the archive last advanced the watermark.
    """

    archive: str
    run_id: str | None = None
    version: int = 0
    reconciled_at: datetime | None = None


def archive_of(run_id: str) -> str:
    """The archive key of a run id: its parent folder, ending in ``/``.

    For S3 that is the archive's bucket-relative prefix (empty at the bucket's root); for a
    local archive its absolute path. ``spark_manifests.runs.archive_key`` gives the same
    key from the archive's location.

    Examples
    --------
    >>> archive_of("enriched/archive/run=2017-04-11-10-31-05/")
    'enriched/archive/'
    """
    parent, slash, _ = run_id.rstrip("/").rpartition("/")
    return parent + slash


def watermark_item_id(archive: str) -> str:
    """The key of an archive's watermark record on DynamoDB."""
    return WATERMARK_PREFIX + archive


def is_watermark_item_id(key: str) -> bool:
    return key.startswith(WATERMARK_PREFIX)


def next_watermark(listed_run_ids: Sequence[str], pending_run_ids: Iterable[str]) -> str | None:
    """The watermark a listing from the current one justifies: its first run still pending,
    or its last run when none is (``None`` for an empty listing).

    ``listed_run_ids`` must be every run of the archive from the current watermark on, as
    listed, and ``pending_run_ids`` the ones of them still pending
    (``manifest.pending(listed, max_attempts=...)``), read after the watermark was read.

    Examples
    --------
    >>> next_watermark(["a/run=2017-01-01-00-00-00/", "a/run=2017-01-02-00-00-00/"], [])
    'a/run=2017-01-02-00-00-00/'
    """
    ordered = sorted(listed_run_ids, key=run_position)
    pending = set(pending_run_ids)
    for run_id in ordered:
        if run_id in pending:
            return run_id
    return ordered[-1] if ordered else None


class ArchiveWatermarks:
    """The watermark operations of a run manifest, on two backend hooks:
    ``_read_watermark`` and ``_write_watermark`` (a compare-and-set)."""

    #: Whether the backend keeps watermarks; without, :meth:`lower_watermarks` does nothing.
    supports_watermarks = False
    #: The backend's clock (epoch seconds); backends set their own.
    _clock: Callable[[], float] = staticmethod(time.time)

    def watermark(self, archive: str) -> Watermark:
        """The archive's watermark (``run_id`` ``None`` and version 0 if it has none).

        Read it *before* the statuses that will justify advancing it.

        Examples
        --------
        >>> manifest.watermark("enriched/archive/").run_id  # doctest: +SKIP
        'enriched/archive/run=2017-04-11-10-31-05/'
        """
        self._refuse_unsupported()
        return self._read_watermark(archive)

    def advance_watermark(
        self, expected: Watermark, run_id: str, *, reconciled: bool = False
    ) -> bool:
        """Move the watermark forward to ``run_id`` if it is still ``expected``; ``True`` if
        written. ``False`` when another worker or an ``unmark`` wrote it since: the next
        start reads it again. With ``reconciled``, records that a full listing justified it.

        Raises ValueError if ``run_id`` is before ``expected.run_id`` (only ``unmark`` lowers).
        """
        self._refuse_unsupported()
        position = run_position(run_id)
        if expected.run_id is not None and position < run_position(expected.run_id):
            raise ValueError(
                f"A watermark only moves forward: {run_id!r} is before {expected.run_id!r}."
            )
        if archive_of(run_id) != expected.archive:
            raise ValueError(f"Run {run_id!r} is not in the archive {expected.archive!r}.")
        written = self._write_watermark(
            Watermark(
                expected.archive,
                run_id,
                expected.version + 1,
                self._now_utc() if reconciled else expected.reconciled_at,
            )
        )
        _logger.debug("Watermark of %s to %s: %s", expected.archive, run_id, written)
        return written

    def lower_watermarks(self, run_ids: Iterable[str]) -> None:
        """Make every run of ``run_ids`` at or after its archive's watermark (``unmark`` does
        it before and after forgetting them): the next start lists them again. Raises each
        archive's version even where the watermark is already lower (see the module
        docstring). Run ids that are not run folders belong to no listing and are left alone.
        """
        if not self.supports_watermarks:
            return
        lowest: dict[str, str] = {}
        for run_id in run_ids:
            try:
                position = run_position(run_id)
            except InvalidRunIdError:
                continue
            archive = archive_of(run_id)
            if archive not in lowest or position < run_position(lowest[archive]):
                lowest[archive] = run_id
        for archive, run_id in lowest.items():
            self._lower_to(archive, run_id)

    def _lower_to(self, archive: str, run_id: str) -> None:
        for _ in range(MAX_LOWERING_ATTEMPTS):
            current = self._read_watermark(archive)
            lowered = current.run_id
            if lowered is not None and run_position(run_id) < run_position(lowered):
                lowered = run_id
            # Written even when unchanged (or absent: a record saying "list everything"),
            # so that an advance computed before this unmark fails its compare-and-set.
            if self._write_watermark(
                Watermark(archive, lowered, current.version + 1, current.reconciled_at)
            ):
                _logger.info("Watermark of %s now %s", archive, lowered or "(none: full listing)")
                return
        raise RetryableError(
            f"Could not lower the watermark of {archive!r} for {run_id!r}: other workers kept "
            "changing it; try again."
        )

    def _refuse_unsupported(self) -> None:
        if not self.supports_watermarks:
            raise NotImplementedError(f"{type(self).__name__} keeps no watermarks")

    def _now_utc(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    def _read_watermark(self, archive: str) -> Watermark:
        """The record (consistent read), or ``Watermark(archive)`` if there is none."""
        raise NotImplementedError

    def _write_watermark(self, new: Watermark) -> bool:
        """Write ``new`` if the record's version is ``new.version - 1`` (no record for 0);
        ``False`` if it is not."""
        raise NotImplementedError
