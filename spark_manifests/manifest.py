"""The run manifest: which runs of an archive are done, and who is processing which.

A manifest maps a run id (see ``spark_manifests.runs``) to an entry with a status:

- ``PROCESSING``: claimed by ``owner`` until ``lease_expires_at``;
- ``COMMITTED``: processed; ``contains`` is true;
- ``FAILED``: the last attempt failed, or its jobs abandoned it (``error`` says why);
  claimable again while ``attempts`` is below the caller's ``max_attempts``;
- ``SKIPPED``: set aside by an operator (``error`` holds the reason); never pending;
- ``LEGACY``: an item the Snowplow Analytics SDK wrote (only a run id): processed.

A run the manifest has never seen is *pending*. Two backends implement one contract:
``RunManifests`` on DynamoDB (the SDK's table layout) and
``SQLiteRunManifest``, the embedded default;
``open_manifest`` (``spark_manifests.manifest_open``) opens either
from a URI. This module is the contract only: it imports no backend.

Examples
--------
>>> with open_manifest("manifest.sqlite") as manifest:  # doctest: +SKIP
...     for run_id in manifest.pending(run.id for run in runs):
...         if manifest.claim(run_id, owner="job-1"):
...             process(run_id)
...             manifest.commit(run_id, owner="job-1", rows_in=1000, rows_out=998)
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import TracebackType
from typing import TypeVar

from ._watermarks import ArchiveWatermarks
from ._watermarks import Watermark as Watermark
from .exceptions import (
    InvalidRunIdError,
    RunInProgressError,
)

_logger = logging.getLogger(__name__)

__all__ = ["ManifestEntry", "RunManifest", "RunStatus", "Watermark"]

_T = TypeVar("_T")

#: Failure messages and skip reasons are cut to this many characters (DynamoDB items are
#: limited to 400 KB, and a Spark stack trace can be longer).
MAX_ERROR_CHARS = 8000
DEFAULT_LEASE_SECONDS = 3600
MAX_LEASE_SECONDS = 365 * 24 * 3600
DEFAULT_MAX_ATTEMPTS = 3


class RunStatus(str, Enum):
    """The status of a run in the manifest."""

    PROCESSING = "PROCESSING"
    COMMITTED = "COMMITTED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    #: Written by the Snowplow Analytics SDK (no status): processed. Never written here.
    LEGACY = "LEGACY"


#: Statuses for which ``contains`` is true.
DONE = frozenset({RunStatus.COMMITTED, RunStatus.LEGACY})
#: Statuses that take a run out of ``pending``.
SETTLED = DONE | {RunStatus.SKIPPED}


@dataclass(frozen=True)
class ManifestEntry:
    """What the manifest knows about one run; times are timezone-aware UTC or ``None``."""

    run_id: str
    status: RunStatus
    owner: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    started_at: datetime | None = None
    committed_at: datetime | None = None
    updated_at: datetime | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    bad_rows: int | None = None
    output_path: str | None = None
    error: str | None = None

    def lease_live(self, now: float) -> bool:
        """Whether the run is held under a lease that has not expired at ``now`` (epoch s)."""
        return (
            self.status is RunStatus.PROCESSING
            and self.lease_expires_at is not None
            and self.lease_expires_at.timestamp() > now
        )


def check_run_id(run_id: object) -> str:
    """The run id if it is a non-empty string; both backends key runs by it.

    Any non-empty string is accepted (an S3 key, a local path): the manifest does not parse
    run ids, it only stores them.
    """
    if not isinstance(run_id, str) or not run_id:
        raise InvalidRunIdError(
            f"A run id must be a non-empty string such as "
            f"'enriched/archive/run=2017-04-11-10-31-05/', not {run_id!r}."
        )
    return run_id


def unique_run_ids(run_ids: Iterable[str]) -> list[str]:
    """The run ids checked, duplicates dropped, in the order given."""
    if isinstance(run_ids, (str, bytes)):
        # A bare string would be read as one-character run ids.
        raise TypeError(f"Expected an iterable of run ids, not the single string {run_ids!r}.")
    return list(dict.fromkeys(check_run_id(run_id) for run_id in run_ids))


def check_lease_seconds(lease_seconds: float) -> None:
    """Refuse a lease of 0 or less (it protects nothing), or over a year, infinite or NaN:
    its expiry must be a time the manifest can store and read back."""
    if not 0 < lease_seconds <= MAX_LEASE_SECONDS:
        raise ValueError(
            f"lease_seconds must be more than 0 and at most {MAX_LEASE_SECONDS} (a year), "
            f"not {lease_seconds!r}."
        )


def _is_pending(entry: ManifestEntry | None, max_attempts: int | None) -> bool:
    if entry is None:
        return True
    if entry.status in SETTLED:
        return False
    out_of_attempts = max_attempts is not None and entry.attempts >= max_attempts
    return not (entry.status is RunStatus.FAILED and out_of_attempts)


def _warn_out_of_attempts(entries: list[ManifestEntry], shown: int = 5) -> None:
    if not entries:
        return
    _logger.warning(
        "%d failed runs have no attempts left and are not processed again: %s%s. Unmark "
        "them to process them again (`spark-manifests manifest unmark`), or skip them.",
        len(entries),
        "; ".join(f"{entry.run_id} ({clip_error(entry.error, 300)})" for entry in entries[:shown]),
        "" if len(entries) <= shown else f"; and {len(entries) - shown} more",
    )


def clip_error(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 15] + " ...[truncated]"


def refusal_of(one_run: Callable[[str], None], run_id: str) -> RunInProgressError | None:
    """Edit one run; the refusal if a live job holds it, else ``None``."""
    try:
        one_run(run_id)
    except RunInProgressError as refusal:
        return refusal
    return None


class RunManifest(ArchiveWatermarks, abc.ABC):
    """The manifest contract; ``RunManifests`` (DynamoDB) and
    ``SQLiteRunManifest`` implement it with the same semantics.

    Run ids are strings; any iterable of them is accepted where several are taken.
    The ``clock`` a backend is built with (``time.time`` by default) decides lease expiry
    and the times recorded, so tests can move time forward.
    """

    @abc.abstractmethod
    def create(self) -> None:
        """Create the manifest's table if it does not exist yet (idempotent)."""

    @abc.abstractmethod
    def add(self, run_id: str) -> None:
        """Mark a run committed (the Snowplow SDK's ``add``); a committed run keeps its record.

        Raises RunInProgressError for a run held under a live lease: the job holding it
        commits or fails it itself.
        """

    @abc.abstractmethod
    def get(self, run_id: str) -> ManifestEntry | None:
        """The entry of one run, or ``None`` if the manifest has never seen it."""

    @abc.abstractmethod
    def get_many(self, run_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """The entries of the runs the manifest knows, by run id, read in batches."""

    @abc.abstractmethod
    def claim(
        self,
        run_id: str,
        owner: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> bool:
        """Take a run for ``owner`` for ``lease_seconds``; ``True`` if ``owner`` now holds it.

        Succeeds for a run never seen; a run processing under an expired lease (taken over);
        a failed run with fewer than ``max_attempts`` attempts: each of these counts one
        attempt. A run ``owner`` holds under a live lease has its lease renewed and counts
        no attempt (a repeated or resent claim). Returns
        ``False`` for committed, legacy and skipped runs, runs another owner holds under a
        live lease, and failed runs out of attempts. Atomic: of concurrent claims on one
        run, exactly one wins.
        """

    @abc.abstractmethod
    def commit(
        self,
        run_id: str,
        owner: str,
        *,
        rows_in: int | None = None,
        rows_out: int | None = None,
        bad_rows: int | None = None,
        output_path: str | None = None,
    ) -> None:
        """Mark a run ``owner`` holds committed, with its metrics.

        Raises
        ------
        OwnershipLostError
            The run is not processing under ``owner`` (taken over, released, unmarked).
            Nothing was written.
        """

    def renew(self, run_id: str, owner: str, *, lease_seconds: float) -> None:
        """Extend the lease of a run ``owner`` holds to ``lease_seconds`` from now, without
        counting an attempt: a job renews its claims while a long batch runs.

        Raises OwnershipLostError, writing nothing, if ``owner`` does not hold the run.
        Backends written before this method raise NotImplementedError (claims then last one
        lease).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot renew leases")

    @abc.abstractmethod
    def fail(self, run_id: str, owner: str, error: str) -> None:
        """Mark a run ``owner`` holds failed, with the ``error`` text.

        Raises OwnershipLostError, writing nothing, if ``owner`` does not hold the run.
        """

    @abc.abstractmethod
    def fail_abandoned(self, run_id: str, error: str, *, max_attempts: int) -> bool:
        """Mark failed, with the ``error`` text, a run its jobs abandoned ``max_attempts``
        times (processing under an expired lease, out of attempts); ``True`` if this call
        marked it.

        A claim refuses such a run, but it would stay ``PROCESSING`` under a dead owner: this
        makes it a visible failure, which ``unmark`` or ``skip`` then settle. Atomic: of
        concurrent calls, one marks it.
        """

    @abc.abstractmethod
    def release(self, run_id: str, owner: str) -> None:
        """Give back a run ``owner`` holds without a verdict: it is pending again at once.

        The entry is removed (its attempt is not counted against it). Raises
        OwnershipLostError if ``owner`` does not hold the run.
        """

    @abc.abstractmethod
    def skip(self, run_id: str, reason: str | None = None) -> None:
        """Set a run aside so no job processes it; ``unmark`` undoes it.

        A committed run stays committed. Raises RunInProgressError for a run held under a
        live lease: wait for it, or let the lease expire.
        """

    def unmark(self, run_id: str) -> None:
        """Forget a run, so the next job processes it again.

        The watermark of its archive is lowered to it (see
        ``lower_watermarks``), so the next
        start lists it again without waiting for a reconciliation.

        Raises RunInProgressError for a run held under a live lease (it would be processed
        twice at once).
        """
        check_run_id(run_id)
        self._forgetting([run_id], lambda: self._unmark(run_id))

    def _forgetting(self, run_ids: list[str], forget: Callable[[], _T]) -> _T:
        """``forget()`` the runs between two lowerings of their archives' watermarks.

        Before: a crash while forgetting leaves no forgotten run above the watermark. After:
        a start that read the first lowering, then a run's status before it was forgotten,
        would advance past the run; the second lowering fails its compare-and-set, or lowers
        the watermark it wrote again. Two writes per archive, not per run.
        """
        self.lower_watermarks(run_ids)
        try:
            return forget()
        finally:
            self.lower_watermarks(run_ids)

    @abc.abstractmethod
    def _unmark(self, run_id: str) -> None:
        """``unmark`` once the watermark is lowered: forget the run unless held."""

    @abc.abstractmethod
    def entries(self) -> Iterator[ManifestEntry]:
        """Every entry of the manifest (in no particular order)."""

    @property
    def uri(self) -> str | None:
        """Where the manifest lives, as ``open_manifest`` takes it
        (``dynamodb://TABLE``, a SQLite file's path); ``None`` for one that has no lasting
        place (in memory)."""
        return None

    def close(self) -> None:
        """Release what the manifest holds open (connections)."""

    def contains(self, run_id: str) -> bool:
        """Whether a run is committed (or written by the Snowplow SDK): the SDK's ``contains``."""
        entry = self.get(run_id)
        return entry is not None and entry.status in DONE

    def pending(self, run_ids: Iterable[str], *, max_attempts: int | None = None) -> list[str]:
        """The given runs still to process, in the order given (duplicates dropped).

        Pending means never seen, processing, or failed: not committed, legacy or skipped.
        With ``max_attempts``, a failed run with that many attempts is not pending either
        (a claim would refuse it): one warning counts such runs, which wait for an
        ``unmark`` or a ``skip``. Read in batches (DynamoDB: BatchGetItem, 100 keys a
        call), not one read per run.

        Examples
        --------
        >>> manifest.pending(["a/run=2017-04-11-10-31-05/"])  # doctest: +SKIP
        ['a/run=2017-04-11-10-31-05/']
        """
        wanted = unique_run_ids(run_ids)
        known = self._pending_facts(wanted)
        pending = [run_id for run_id in wanted if _is_pending(known.get(run_id), None)]
        if max_attempts is None:
            return pending
        retryable = [run_id for run_id in pending if _is_pending(known.get(run_id), max_attempts)]
        _warn_out_of_attempts([known[run_id] for run_id in pending if run_id not in retryable])
        return retryable

    def _pending_facts(self, run_ids: list[str]) -> dict[str, ManifestEntry]:
        """The entries of the runs the manifest knows; a backend may read only their status
        and attempts, which is all ``pending`` needs."""
        return self.get_many(run_ids)

    def edit_many(
        self, edit: str, run_ids: Iterable[str], *, reason: str | None = None
    ) -> list[RunInProgressError]:
        """Mark (``"mark"``: ``add``), ``"unmark"`` or ``"skip"`` many runs, for bulk
        rewinds; the refusals of runs a live job holds, in the order given.

        A held run does not stop the others: each run is edited on its own, as by the
        one-run method. SQLite writes a few hundred runs per transaction and DynamoDB keeps
        several requests in flight, so thousands of runs take seconds.

        Examples
        --------
        >>> refused = manifest.edit_many("unmark", run_ids)  # doctest: +SKIP
        """
        if reason is not None and edit != "skip":
            raise ValueError(f"A reason goes with skip, not {edit!r}.")
        one_run = {
            "mark": self.add,
            "unmark": self._unmark,
            "skip": lambda run_id: self.skip(run_id, reason),
        }.get(edit)
        if one_run is None:
            raise ValueError(f"Unknown edit {edit!r}: expected mark, unmark or skip.")
        wanted = unique_run_ids(run_ids)
        for run_id in wanted:
            check_run_id(run_id)
        if edit == "unmark":
            outcomes = self._forgetting(wanted, lambda: self._edit_each(one_run, wanted))
        else:
            outcomes = self._edit_each(one_run, wanted)
        return [outcome for outcome in outcomes if outcome is not None]

    def _edit_each(
        self, one_run: Callable[[str], None], run_ids: list[str]
    ) -> list[RunInProgressError | None]:
        """``one_run`` applied to every run in turn; a backend may group or overlap them."""
        return [refusal_of(one_run, run_id) for run_id in run_ids]

    def __enter__(self) -> RunManifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
