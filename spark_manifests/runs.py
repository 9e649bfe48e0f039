"""Runs of an archive: parsing run folder names, listing S3 and local archives, cold storage.

A run is one folder of an archive, named ``run=YYYY-mm-DD-hh-MM-SS`` (what Snowplow writes) or
``run-YYYY-mm-DD-hh-MM-SS`` (what Snowplow's documentation prints). Its manifest key, ``Run.id``,
is for S3 the bucket-relative key of the folder with a trailing slash — exactly what the
Snowplow Analytics SDK stores — and for a local archive the folder's absolute path with a
trailing slash.

Examples
--------
>>> parse_run_id("enriched/archive/run=2017-04-11-10-31-05/")
datetime.datetime(2017, 4, 11, 10, 31, 5, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ._aws import make_client
from ._locations import Location, PathLike, parse_location

# The run folders' names and records are defined beside the listings and are this module's
# public names, as before (the driver and the command line import them from here).
from ._run_folders import (
    COLD_STORAGE_CLASSES,
    LABEL_FORMAT,
    LABEL_RE,
    RUN_FOLDER_RE,
    Run,
    RunFile,
    RunListing,
    is_data_path,
    parse_run_id,
    refuse_nested_run,
    run_position,
    utc,
)
from ._runs_local import files_in_directory, runs_in_directory
from ._runs_s3 import objects_in_s3, runs_in_s3, runs_with_files_in_s3, settle_restore_status
from .exceptions import InvalidLocationError, RunInputError

_logger = logging.getLogger(__name__)

__all__ = [
    "COLD_STORAGE_CLASSES",
    "LABEL_FORMAT",
    "LABEL_RE",
    "RUN_FOLDER_RE",
    "Run",
    "RunFile",
    "RunListing",
    "archive_key",
    "inspect_runs",
    "list_run_files",
    "list_runids",
    "list_runs",
    "parse_run_id",
    "without_cold_runs",
]


def list_runs(
    archive: PathLike | Location,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    client: Any | None = None,
    session: Any | None = None,
    from_run: str | None = None,
) -> list[Run]:
    """The runs of an archive, oldest first.

    Parameters
    ----------
    archive
        ``s3://bucket/prefix/`` (``s3a://``, ``s3n://``) or a local directory / ``file://`` path.
    since, until
        Keep runs made in this window (both ends included; naive times are UTC).
    limit
        Keep at most this many (the oldest).
    client, session
        boto3 S3 client or session for S3 archives.
    from_run
        Keep only this run (by its id) and the runs after it, as runs sort: a start that
        knows its archive's watermark lists from there. S3 then starts its listings at that
        run (``StartAfter``, one listing per folder form), so the cost grows with the runs
        after it, not with the whole history; a local archive skips the earlier folders by
        name.

    Examples
    --------
    >>> [run.name for run in list_runs("s3://acme/enriched/archive/")]  # doctest: +SKIP
    ['run=2017-04-11-10-31-05', 'run=2017-04-11-11-31-05']
    """
    check_window(since, until, limit)
    location = parse_location(archive, what="archive")
    start = None if from_run is None else run_position(from_run)
    label = None if start is None else start[0].strftime(LABEL_FORMAT)
    if location.is_s3:
        found = runs_in_s3(location, make_client("s3", client=client, session=session), label)
    else:
        found = runs_in_directory(location, label)
    runs = sorted(
        run
        for run in found
        if in_window(run.timestamp, since, until)
        and (start is None or (run.timestamp, run.id) >= start)
    )
    return runs[:limit] if limit is not None else runs


def archive_key(archive: PathLike | Location) -> str:
    """The key under which the manifest keeps an archive's watermark: the parent of its
    runs' ids (S3: the bucket-relative prefix; local: the absolute path, ending in ``/``).

    Examples
    --------
    >>> archive_key("s3://acme/enriched/archive")
    'enriched/archive/'
    """
    location = parse_location(archive, what="archive")
    return location.prefix if location.is_s3 else location.key.rstrip("/") + "/"


def in_window(timestamp: datetime, since: datetime | None, until: datetime | None) -> bool:
    """Whether a run made at ``timestamp`` falls in the window (both ends included; naive
    times are UTC)."""
    low, high = utc(since), utc(until)
    return (low is None or timestamp >= low) and (high is None or timestamp <= high)


def check_window(since: datetime | None, until: datetime | None, limit: int | None) -> None:
    """Refuse a window that can hold no run by mistake: a negative limit, until before since."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    low, high = utc(since), utc(until)
    if low is not None and high is not None and high < low:
        raise ValueError(
            f"until ({high:%Y-%m-%d %H:%M:%S}) is before since ({low:%Y-%m-%d %H:%M:%S})"
        )


def list_runids(s3_client: Any, full_path: str) -> list[str]:
    """Snowplow Analytics SDK ``list_runids``: the run ids (bucket-relative keys) under a path.

    Same signature and return values as the SDK's, so existing code ports by changing one
    import: bucket-relative keys of the run folders, ending in ``/``, oldest first, without
    the runs whose objects sit in cold storage. Unlike the SDK, ``run-`` folders are found
    too and DEEP_ARCHIVE counts as cold. The SDK asks S3 once per run for its storage class;
    this reads every run's objects in one listing of the run folders (1,000 objects a
    request). A cold object counts as restored only when that listing reports a finished
    restore (S3's ``RestoreStatus``); stores that never report it, such as moto, show restored
    objects as cold, which the SDK always does.

    Examples
    --------
    >>> list_runids(boto3.client("s3"), "s3://acme/enriched/archive")  # doctest: +SKIP
    ['enriched/archive/run=2017-04-11-10-31-05/']
    """
    location = parse_location(full_path, what="archive")
    if not location.is_s3:
        raise InvalidLocationError(
            f"list_runids takes an S3 path (s3://bucket/prefix/), got {full_path!r}; "
            "use list_runs for local archives."
        )
    listings = [RunListing(run, files) for run, files in runs_with_files_in_s3(s3_client, location)]
    return [listing.run.id for listing in listings if not is_cold(listing)]


def list_run_files(
    run: Run, *, client: Any | None = None, session: Any | None = None
) -> list[RunFile]:
    """The data files of a run (markers such as ``_SUCCESS``, hidden files and folders skipped).

    For S3, one listing per 1,000 objects, asking for each object's restore status; a cold
    object whose restore status S3 did not report is checked with a HeadObject, stopping at
    the first one not restored (one is enough to make the run cold).

    Raises
    ------
    RunInputError
        The run holds another run folder (its events would be filed under that run), or a
        folder or file of a local run cannot be read.

    Examples
    --------
    >>> [f.path for f in list_run_files(run)]  # doctest: +SKIP
    ['s3://acme/enriched/archive/run=2017-04-11-10-31-05/part-00000.gz']
    """
    location = parse_location(run.path, what="run")
    if not location.is_s3:
        return sorted(files_in_directory(location.key), key=lambda f: f.path)
    s3 = make_client("s3", client=client, session=session)
    listed = [
        (relative, file) for relative, file in objects_in_s3(s3, location) if is_data_path(relative)
    ]
    for relative, _ in listed:
        refuse_nested_run(run.path, relative.split("/")[:-1])
    return settle_restore_status(s3, [file for _, file in listed])


def inspect_runs(
    runs: Iterable[Run], *, client: Any | None = None, session: Any | None = None
) -> list[RunListing]:
    """Each run with its data files, or the problem that keeps it from being read.

    A run with no data files, one holding another run folder, or one with an unreadable
    file gets a ``problem`` instead of failing the whole listing. Cold files are kept (see
    ``RunListing.cold_files``).

    Examples
    --------
    >>> [listing.size for listing in inspect_runs(list_runs("archive/"))]  # doctest: +SKIP
    [5242880, 4718592]
    """
    runs = list(runs)
    s3 = _s3_client_for(runs, client, session)
    listings = []
    for run in runs:
        try:
            files = list_run_files(run, client=s3)
        except RunInputError as problem:
            listings.append(RunListing(run, [], problem))
            continue
        listings.append(RunListing(run, files, None if files else _no_data_files(run)))
    return listings


def without_cold_runs(
    runs: Iterable[Run], *, client: Any | None = None, session: Any | None = None
) -> list[tuple[Run, list[RunFile]]]:
    """The given runs with their files, less those whose objects are in cold storage.

    Only the runs given are inspected (one listing each), so a job checks just the runs it is
    about to process, never the whole archive. Each cold run is logged as a warning: restore
    its objects, or mark it skipped in the manifest.

    Examples
    --------
    >>> usable = without_cold_runs(list_runs("s3://acme/archive/")[:10])  # doctest: +SKIP
    """
    runs = list(runs)
    s3 = _s3_client_for(runs, client, session)
    listings = [RunListing(run, list_run_files(run, client=s3)) for run in runs]
    return [(listing.run, listing.files) for listing in listings if not is_cold(listing)]


def is_cold(listing: RunListing) -> bool:
    """Whether a run must be restored before it is read; logs a warning saying so."""
    cold = listing.cold_files
    if cold:
        _logger.warning(
            "Leaving run %s for a later start: %d of its %d objects are in cold storage "
            "(%s) and not restored. Restore them, or skip the run by its folder "
            "(`spark-manifests manifest skip s3://bucket/.../run=.../`).",
            listing.run.path,
            len(cold),
            len(listing.files),
            cold[0].storage_class,
        )
    return bool(cold)


def _s3_client_for(runs: list[Run], client: Any | None, session: Any | None) -> Any | None:
    if any(parse_location(run.path, what="run").is_s3 for run in runs):
        return make_client("s3", client=client, session=session)
    return None


def _no_data_files(run: Run) -> RunInputError:
    return RunInputError(
        f"Run {run.path} has no data files. If it is still being written, unmark it "
        "later (`spark-manifests manifest unmark`); if it is empty for good, skip it "
        "(`spark-manifests manifest skip`)."
    )
