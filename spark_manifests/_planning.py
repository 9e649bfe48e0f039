"""Batch planning: which runs are pending, and how they group into Spark jobs.

``BatchPlanner`` lists the archive within the time window (a start: from its watermark
on, see ``spark_manifests._discovery``), asks the manifest which runs are pending, and
groups them into batches by count and input bytes, leaving runs in cold storage or still
settling for a later start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Callable

from ._discovery import Discovery, WatermarkDiscovery
from ._locations import Location
from .exceptions import InvalidLocationError
from .manifest import RunManifest, RunStatus
from .runs import RUN_FOLDER_RE, Run, RunListing, archive_key, inspect_runs, is_cold, list_runs
from .sinks import Sink

_logger = logging.getLogger(__name__)

# The newest settled runs whose output a source reads once, to spot a manifest that another
# job commits to (one BatchGetItem call).
_OUTPUTS_SAMPLED = 25

# Without a settle time, a run whose files are all older than this when listed is taken as
# complete: it is not listed again before its commit.
_RECHECKED_FOR_SECONDS = 24 * 3600

_GLOB_CHARACTERS = re.compile(r"[\\{}\[\]*?]")


class BatchPlanner:
    """The pending runs of an archive, in batches of at most ``max_runs`` runs and
    ``max_bytes`` input bytes; ``on_deferred`` is told of each run left for a later start.

    A start (``discover``) lists from the archive's watermark on, and a full listing
    every ``reconcile_seconds`` or with ``full_scan``; ``settle_watermark`` moves the
    watermark on after the start's batches.
    """

    def __init__(
        self,
        archive: Location,
        manifest: RunManifest,
        sink: Sink,
        *,
        max_runs: int,
        max_bytes: int | None,
        window: tuple[datetime | None, datetime | None, int | None],
        settle_seconds: float,
        max_attempts: int,
        on_deferred: Callable[[Run], None],
        reconcile_seconds: float,
        full_scan: bool = False,
        client: Any | None = None,
        session: Any | None = None,
    ) -> None:
        self.archive = archive
        self.manifest = manifest
        self.sink = sink
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self.since, self.until, self.limit = window
        self.settle_seconds = settle_seconds
        self.max_attempts = max_attempts
        self.on_deferred = on_deferred
        self._client = client
        self._session = session
        self._sharing_checked = False
        self._watermarks = WatermarkDiscovery(
            manifest,
            archive_key(archive),
            reconcile_seconds=reconcile_seconds,
            full_scan=full_scan,
            max_attempts=max_attempts,
        )
        self._discovery: Discovery | None = None

    def archive_runs(self, from_run: str | None = None) -> list[Run]:
        return list_runs(
            self.archive,
            since=self.since,
            until=self.until,
            client=self._client,
            session=self._session,
            from_run=from_run,
        )

    def discover(self) -> tuple[list[Run], bool]:
        """A start's runs: from the watermark on (read first), or every run of the window
        when reconciling; and whether the whole archive was listed.
        ``pending_among`` of these runs records them for ``settle_watermark``."""
        discovery = self._watermarks.begin(self.since)
        runs = self.archive_runs(self._watermarks.from_run(discovery))
        self._discovery = discovery
        return runs, discovery.full

    def settle_watermark(self) -> None:
        """Move the archive's watermark on past the runs this start settled."""
        discovery, self._discovery = self._discovery, None
        if discovery is not None:
            self._watermarks.settle(discovery)

    def pending(self) -> list[Run]:
        """The runs in the archive (within since/until, at most ``limit``) not yet processed.

        Lists the whole window: the answer is complete even for a run copied late below the
        watermark.
        """
        self._discovery = None
        runs = self.archive_runs()
        refuse_shared_labels(runs)
        return self.pending_among(runs)

    def pending_among(self, runs: Sequence[Run]) -> list[Run]:
        by_id = {run.id: run for run in runs}
        # Failed runs out of attempts are left out before the limit: a claim would refuse
        # them, and a limit they filled would stall the job on them for good.
        pending_ids = self.manifest.pending(list(by_id), max_attempts=self.max_attempts)
        if self._discovery is not None and not self._discovery.listed:
            self._watermarks.record(self._discovery, list(by_id), pending_ids)
        still_pending = set(pending_ids)
        settled = [by_id[run_id] for run_id in by_id if run_id not in still_pending]
        self._warn_if_committed_elsewhere(settled)
        pending = [by_id[run_id] for run_id in pending_ids]
        return pending[: self.limit] if self.limit is not None else pending

    def _warn_if_committed_elsewhere(self, settled: list[Run]) -> None:
        """Warn, once per source, when the newest settled runs were committed with their
        output elsewhere: the manifest also serves another job (another output), and this
        one never processes those runs."""
        if self._sharing_checked or not settled:
            return
        self._sharing_checked = True
        newest = {run.id: run for run in settled[-_OUTPUTS_SAMPLED:]}
        elsewhere: list[tuple[str, str]] = []
        for entry in self.manifest.get_many(list(newest)).values():
            ours = self.sink.output_path(newest[entry.run_id])
            theirs = entry.output_path if entry.status is RunStatus.COMMITTED else None
            if theirs and theirs.rstrip("/") != ours.rstrip("/"):
                elsewhere.append((theirs, ours))
        if elsewhere:
            theirs, ours = elsewhere[-1]
            _logger.warning(
                "%d of the newest runs of %s this job leaves out as committed have their "
                "output elsewhere (%s, where this job would write %s): a manifest serves one "
                "output, and this job never processes them. Give this job its own manifest "
                "(--manifest), or its old output if it moved.",
                len(elsewhere),
                self.archive.uri,
                theirs,
                ours,
            )

    def inspect(self, runs: Sequence[Run]) -> list[RunListing]:
        return inspect_runs(runs, client=self._client, session=self._session)

    def batches(self, pending: Sequence[Run]) -> Iterator[list[RunListing]]:
        """Consecutive runs grouped by ``max_runs`` and ``max_bytes``.

        Only the runs about to be processed are inspected (cold storage, sizes, age), a
        window at a time, so a long backlog costs no listing up front. Runs in cold storage
        or still settling are left for a later start.
        """
        batch: list[RunListing] = []
        batch_bytes = 0
        for start in range(0, len(pending), self.max_runs):
            for listing in self.inspect(pending[start : start + self.max_runs]):
                if is_cold(listing) or self._settling(listing):
                    self.on_deferred(listing.run)
                    continue
                too_big = self.max_bytes is not None and batch_bytes + listing.size > self.max_bytes
                if batch and too_big:
                    yield batch
                    batch, batch_bytes = [], 0
                batch.append(listing)
                batch_bytes += listing.size
                if len(batch) >= self.max_runs:
                    # Now, not after the next window is listed: its runs may change meanwhile.
                    yield batch
                    batch, batch_bytes = [], 0
        if batch:
            yield batch

    def _settling(self, listing: RunListing) -> bool:
        """Whether a run's newest file is too young to be sure the run is complete."""
        newest = listing.last_modified
        if not self.settle_seconds or newest is None:
            return False
        age = (datetime.now(timezone.utc) - newest).total_seconds()
        if age >= self.settle_seconds:
            return False
        _logger.info(
            "Leaving run %s for a later start: its newest file was written %.0fs ago, "
            "within the %ss settle time",
            listing.run.id,
            max(age, 0),
            self.settle_seconds,
        )
        return True

    def changed_since_listed(self, batch: Sequence[RunListing]) -> dict[str, str]:
        """The runs of a batch whose files changed since they were listed, and how.

        A run still being copied into the archive would otherwise be committed with only
        the files listed. A run whose files were all older than the settle time when listed
        (without one: a day) is complete by then, and is not listed again.
        """
        now = datetime.now(timezone.utc)
        settled_after = self.settle_seconds or _RECHECKED_FOR_SECONDS
        recent = [
            listing
            for listing in batch
            if listing.last_modified is None
            or (now - listing.last_modified).total_seconds() < settled_after
        ]
        changed = {}
        for before, after in zip(recent, self.inspect([listing.run for listing in recent])):
            if before.signature() != after.signature():
                changed[before.run.id] = (
                    f"{len(before.files)} files of {before.size:,} bytes when listed, "
                    f"{len(after.files)} of {after.size:,} now"
                )
        return changed


def refuse_a_run_folder(archive: Location) -> None:
    """Refuse an archive that is a run folder itself: it holds no runs, and the job would
    end with nothing done, as for an archive with no new runs."""
    folder = archive.key.rstrip("/").rsplit("/", 1)[-1]
    if RUN_FOLDER_RE.match(folder):
        parent = archive.uri.rstrip("/")[: -len(folder)]
        raise InvalidLocationError(
            f"The archive {archive.uri} is a run folder: give the folder that holds the run "
            f"folders ({parent})."
        )


def refuse_shared_labels(runs: Sequence[Run]) -> None:
    """Stop when two runs of the archive have the same time (its ``run=`` and ``run-``
    folders): both would write the output partition of that label, and the second would
    replace the first's events while both stay committed."""
    by_label: dict[str, list[Run]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run)
    for label, same in by_label.items():
        if len(same) > 1:
            folders = ", ".join(run.path for run in same)
            raise InvalidLocationError(
                f"Runs {folders} have the same time, so their output would share the "
                f"partition run={label}. Merge their files into one of the folders and "
                "remove the other, or move one out of the archive."
            )


def paths(batch: Sequence[RunListing]) -> list[str]:
    """The files of a batch as the reader gets them: Hadoop reads every path given to
    Spark as a glob, so a file named ``part[1]`` would match ``part1`` instead."""
    return [
        _GLOB_CHARACTERS.sub(r"\\\g<0>", file.path) for listing in batch for file in listing.files
    ]


def readable(listing: RunListing) -> bool:
    """Whether ``ManifestedRunSource.read`` can load a run; says why not."""
    if listing.problem is not None:
        _logger.warning("Not reading run %s: %s", listing.run.id, listing.problem)
    return listing.problem is None and not is_cold(listing)
