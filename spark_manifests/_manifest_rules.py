"""The rules both manifest backends follow, and the errors they raise, in one place.

A backend checks its arguments here, decides claims with ``can_claim`` (DynamoDB states
the same rule as a condition expression), and words a refusal with ``ownership_lost``
or ``in_progress``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from .exceptions import OwnershipLostError, RunInProgressError, SparkManifestsError
from .manifest import DONE, ManifestEntry, RunStatus, check_lease_seconds, check_run_id

_logger = logging.getLogger(__name__)


def check_owner(owner: object) -> str:
    """The owner if it is a non-empty string: an empty one could not be told apart."""
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"A claim owner must be a non-empty string, not {owner!r}.")
    return owner


def check_claim(run_id: str, owner: str, lease_seconds: float, max_attempts: int) -> None:
    """The arguments of ``claim``: a lease that has run out when taken protects nothing."""
    check_run_id(run_id)
    check_owner(owner)
    check_lease_seconds(lease_seconds)
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts!r}.")


def parse_status(run_id: str, status: str | None) -> RunStatus:
    """The status a backend stored; none at all means the Snowplow SDK wrote the run."""
    if status is None:
        return RunStatus.LEGACY
    try:
        return RunStatus(status)
    except ValueError:
        raise SparkManifestsError(
            f"The manifest entry {run_id!r} has the unknown status {status!r}; was it written "
            "by a newer version of spark_manifests?"
        ) from None


def can_claim(entry: ManifestEntry | None, now: float, max_attempts: int) -> bool:
    """The claim rule both backends follow (DynamoDB states it as a condition expression).

    A run can be claimed when it is unknown; or processing under an expired lease, or
    failed — each with attempts left. Takeovers count: a run whose jobs keep dying while
    processing it stops after ``max_attempts`` instead of killing every job that picks it up.
    A run ``owner`` holds under a live lease is not claimed again but renewed
    (``holds_live``), with no attempt counted.
    """
    if entry is None:
        return True
    if entry.attempts >= max_attempts:
        return False
    if entry.status is RunStatus.PROCESSING:
        return not entry.lease_live(now)
    return entry.status is RunStatus.FAILED


def holds_live(entry: ManifestEntry | None, owner: str, now: float) -> bool:
    """Whether ``owner`` holds the run under a live lease: a claim of it renews the lease.

    A claim repeated by its owner, or resent by botocore after a timeout that hid its
    success, must neither count another attempt nor be refused for want of one.
    """
    return holds(entry, owner) and entry is not None and entry.lease_live(now)


def is_abandoned(entry: ManifestEntry | None, now: float, max_attempts: int) -> bool:
    """Whether every attempt a run was allowed ended with its job dying while holding it:
    processing under an expired lease, out of attempts. No claim will take it again."""
    return (
        entry is not None
        and entry.status is RunStatus.PROCESSING
        and not entry.lease_live(now)
        and entry.attempts >= max_attempts
    )


def left_as_committed(verb: str, run_id: str, entry: ManifestEntry | None, now: float) -> bool:
    """Whether an operator's ``mark`` or ``skip`` leaves the run as it is: ``True`` for a
    committed run. A run held under a live lease raises RunInProgressError: marked, a job
    still processing it would commit it twice, or see its failure turned into a commit."""
    if entry is not None and entry.status in DONE:
        _logger.debug("%s is committed already: not changed by %s", run_id, verb)
        return True
    if entry is not None and entry.lease_live(now):
        raise in_progress(verb, run_id, entry)
    return False


def utc_from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def describe_holder(entry: ManifestEntry | None) -> str:
    """A phrase for error messages: who holds the run now, or what became of it."""
    if entry is None:
        return "it is not in the manifest (released or unmarked)"
    if entry.status is RunStatus.PROCESSING:
        expiry = entry.lease_expires_at.isoformat() if entry.lease_expires_at else "never"
        return f"it is held by {entry.owner!r} (lease until {expiry})"
    return f"its status is {entry.status.value}"


def holds(entry: ManifestEntry | None, owner: str) -> bool:
    """Whether ``owner`` holds the run: the condition of ``commit``, ``fail`` and ``release``."""
    return entry is not None and entry.status is RunStatus.PROCESSING and entry.owner == owner


def settled_by(entry: ManifestEntry | None, owner: str, status: RunStatus) -> bool:
    """Whether ``owner`` already left the run in ``status``: a commit or failure repeated,
    or resent by botocore after a timeout that hid its success, counts as done."""
    return entry is not None and (entry.status, entry.owner) == (status, owner)


def ownership_lost(
    verb: str, run_id: str, owner: str, entry: ManifestEntry | None
) -> OwnershipLostError:
    return OwnershipLostError(
        f"Could not {verb} run {run_id!r} as {owner!r}: {describe_holder(entry)}. "
        "Nothing was written."
    )


def in_progress(verb: str, run_id: str, entry: ManifestEntry | None) -> RunInProgressError:
    return RunInProgressError(
        f"Cannot {verb} run {run_id!r}: {describe_holder(entry)}. Wait for that job to "
        "finish or for its lease to expire."
    )
