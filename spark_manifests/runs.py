"""Runs of an archive: parsing run folder names, listing S3 and local archives, cold storage.

A run is one folder of an archive, named ``run=YYYY-mm-DD-hh-MM-SS`` (what Snowplow writes) or
``run-YYYY-mm-DD-hh-MM-SS`` (what Snowplow's documentation prints). Its manifest key, ``Run.id``,
is for S3 the bucket-relative key of the folder with a trailing slash — exactly what the
Snowplow Analytics SDK stores — and for a local archive the folder's absolute path with a
trailing slash.

>>> parse_run_id("enriched/archive/run=2017-04-11-10-31-05/")
datetime.datetime(2017, 4, 11, 10, 31, 5, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ._aws import aws_errors, make_client
from ._locations import Location, PathLike, parse_location
from .exceptions import (
    ArchiveNotFoundError,
    InvalidLocationError,
    InvalidRunIdError,
    RunInputError,
)

_logger = logging.getLogger(__name__)

__all__ = [
    "COLD_STORAGE_CLASSES",
    "Run",
    "RunFile",
    "RunListing",
    "inspect_runs",
    "list_run_files",
    "list_runids",
    "list_runs",
    "parse_run_id",
    "without_cold_runs",
]

RUN_PREFIX = "run"
# ASCII digits only, and \Z: $ would also match before a final newline.
_LABEL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}"
#: A run's label, the ``run`` column's value: ``2017-04-11-10-31-05``.
LABEL_RE = re.compile(f"^{_LABEL}\\Z")
RUN_FOLDER_RE = re.compile(f"^run[=-]({_LABEL})\\Z")
LABEL_FORMAT = "%Y-%m-%d-%H-%M-%S"
ACCEPTED_FORMS = "run=YYYY-mm-DD-hh-MM-SS or run-YYYY-mm-DD-hh-MM-SS, e.g. run=2017-04-11-10-31-05"
#: Storage classes whose objects must be restored before they can be read.
COLD_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@functools.total_ordering
@dataclass(frozen=True)
class Run:
    """One run folder of an archive; runs sort by time, then by id.

    Attributes
    ----------
    id
        The manifest key (see the module docstring).
    timestamp
        When the run was made, UTC.
    path
        The folder's full location, ending in ``/``.
    name
        The folder name, ``run=...`` or ``run-...``.
    """

    id: str
    timestamp: datetime
    path: str
    name: str

    @property
    def label(self) -> str:
        """``YYYY-mm-DD-hh-MM-SS``: the value of the ``run`` column and output partition."""
        return self.timestamp.strftime(LABEL_FORMAT)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Run):
            return NotImplemented
        return (self.timestamp, self.id) < (other.timestamp, other.id)


@dataclass(frozen=True)
class RunFile:
    """A data file of a run; ``restored`` is known only for cold objects, ``modified`` (UTC)
    when the listing gives it."""

    path: str
    size: int
    storage_class: str | None = None
    restored: bool | None = None
    modified: datetime | None = None

    @property
    def cold(self) -> bool:
        return self.storage_class in COLD_STORAGE_CLASSES and not self.restored


@dataclass(frozen=True)
class RunListing:
    """A run with its data files as listed, or why they cannot be read as they stand.

    ``problem`` is set (and ``files`` empty) for a run that has no data files, holds another
    run folder, or has a file or folder that cannot be read.
    """

    run: Run
    files: list[RunFile]
    problem: RunInputError | None = None

    @property
    def cold_files(self) -> list[RunFile]:
        """The files in cold storage and not restored: one makes the run unreadable."""
        return [file for file in self.files if file.cold]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def last_modified(self) -> datetime | None:
        """When the newest file was written, if the listing says."""
        times = [file.modified for file in self.files if file.modified is not None]
        return max(times) if times else None

    def signature(self) -> frozenset[tuple[str, int, datetime | None]]:
        """What a second listing must find again for the run to be unchanged."""
        return frozenset((file.path, file.size, file.modified) for file in self.files)


def parse_run_id(text: str) -> datetime:
    """The UTC time of a run, from its folder name or a key or path ending in one.

    Raises
    ------
    InvalidRunIdError
        Not a run folder name, or an impossible date (``run=2017-02-30-...``).

    >>> parse_run_id("run-2017-04-11-10-31-05")
    datetime.datetime(2017, 4, 11, 10, 31, 5, tzinfo=datetime.timezone.utc)
    """
    name = str(text).rstrip("/").rsplit("/", 1)[-1]
    match = RUN_FOLDER_RE.match(name)
    if not match:
        raise InvalidRunIdError(f"{text!r} is not a run folder: expected {ACCEPTED_FORMS}.")
    try:
        return datetime.strptime(match.group(1), LABEL_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidRunIdError(
            f"{text!r} names an impossible date: expected {ACCEPTED_FORMS}."
        ) from None


def list_runs(
    archive: PathLike | Location,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    client: Any | None = None,
    session: Any | None = None,
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

    >>> [run.name for run in list_runs("s3://acme/enriched/archive/")]  # doctest: +SKIP
    ['run=2017-04-11-10-31-05', 'run=2017-04-11-11-31-05']
    """
    check_window(since, until, limit)
    location = parse_location(archive, what="archive")
    if location.is_s3:
        found = _runs_in_s3(location, make_client("s3", client=client, session=session))
    else:
        found = _runs_in_directory(location)
    runs = sorted(run for run in found if in_window(run.timestamp, since, until))
    return runs[:limit] if limit is not None else runs


def in_window(timestamp: datetime, since: datetime | None, until: datetime | None) -> bool:
    """Whether a run made at ``timestamp`` falls in the window (both ends included; naive
    times are UTC)."""
    low, high = _utc(since), _utc(until)
    return (low is None or timestamp >= low) and (high is None or timestamp <= high)


def check_window(since: datetime | None, until: datetime | None, limit: int | None) -> None:
    """Refuse a window that can hold no run by mistake: a negative limit, until before since."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    low, high = _utc(since), _utc(until)
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

    >>> list_runids(boto3.client("s3"), "s3://acme/enriched/archive")  # doctest: +SKIP
    ['enriched/archive/run=2017-04-11-10-31-05/']
    """
    location = parse_location(full_path, what="archive")
    if not location.is_s3:
        raise InvalidLocationError(
            f"list_runids takes an S3 path (s3://bucket/prefix/), got {full_path!r}; "
            "use list_runs for local archives."
        )
    listings = [
        RunListing(run, files) for run, files in _runs_with_files_in_s3(s3_client, location)
    ]
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

    >>> [f.path for f in list_run_files(run)]  # doctest: +SKIP
    ['s3://acme/enriched/archive/run=2017-04-11-10-31-05/part-00000.gz']
    """
    location = parse_location(run.path, what="run")
    if not location.is_s3:
        return sorted(_files_in_directory(location.key), key=lambda f: f.path)
    s3 = make_client("s3", client=client, session=session)
    listed = [
        (relative, file)
        for relative, file in _objects_in_s3(s3, location)
        if _is_data_path(relative)
    ]
    for relative, _ in listed:
        _refuse_nested_run(run.path, relative.split("/")[:-1])
    return _settle_restore_status(s3, [file for _, file in listed])


def inspect_runs(
    runs: Iterable[Run], *, client: Any | None = None, session: Any | None = None
) -> list[RunListing]:
    """Each run with its data files, or the problem that keeps it from being read.

    A run with no data files, one holding another run folder, or one with an unreadable
    file gets a ``problem`` instead of failing the whole listing. Cold files are kept (see
    :attr:`RunListing.cold_files`).

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


def _refuse_nested_run(run_path: str, folders: Iterable[str]) -> None:
    """Refuse a run folder inside a run: its files' rows would carry the inner run's label,
    so writing them would replace that run's output."""
    for folder in folders:
        if RUN_FOLDER_RE.match(folder):
            raise RunInputError(
                f"Run {run_path} holds another run folder, {folder}/: its events would be "
                f"filed under that run and replace its output. Move {folder}/ out of the "
                "run (into the archive, if it is a run of its own), then process it again."
            )


# -- local archives ----------------------------------------------------------------------------


def _runs_in_directory(location: Location) -> Iterator[Run]:
    root = location.key
    if not os.path.isdir(root):
        raise ArchiveNotFoundError(
            f"The archive {root} does not exist or is not a directory: check the path."
        )
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir():
                run = _run_from_name(entry.name, os.path.join(root, entry.name) + "/", None)
                if run is not None:
                    yield run


def _files_in_directory(folder: str) -> Iterator[RunFile]:
    """The data files under a local run folder, following links to folders (once each)."""
    seen = {os.path.realpath(folder)}

    def refuse(error: OSError) -> None:
        raise RunInputError(
            f"Cannot list {error.filename} in run {folder}: {error.strerror}. "
            "Make it readable, then process the run again."
        )

    for current, folders, names in os.walk(folder, onerror=refuse, followlinks=True):
        kept = [name for name in folders if _is_data_name(name)]
        _refuse_nested_run(folder, kept)
        folders[:] = [name for name in kept if _first_visit(os.path.join(current, name), seen)]
        for name in names:
            if _is_data_name(name):
                yield _local_file(os.path.join(current, name), folder)


def _first_visit(path: str, seen: set[str]) -> bool:
    """Whether a folder is seen for the first time: a link back up must not loop."""
    real = os.path.realpath(path)
    if real in seen:
        return False
    seen.add(real)
    return True


def _local_file(path: str, run_folder: str) -> RunFile:
    try:
        status = os.stat(path)
    except OSError as error:
        raise RunInputError(
            f"Cannot read {path} in run {run_folder}: {error.strerror} (a broken link, or a "
            "file removed while the run was listed?). Fix or remove it, then process the "
            "run again."
        ) from error
    return RunFile(
        path, status.st_size, modified=datetime.fromtimestamp(status.st_mtime, timezone.utc)
    )


# -- S3 archives -------------------------------------------------------------------------------


def _runs_in_s3(location: Location, s3: Any) -> Iterator[Run]:
    paginator = s3.get_paginator("list_objects_v2")
    with aws_errors("list the archive", location.uri):
        # Both folder forms start with "run": other folders of the archive cost no page.
        for page in paginator.paginate(
            Bucket=location.bucket, Prefix=location.prefix + RUN_PREFIX, Delimiter="/"
        ):
            for prefix in page.get("CommonPrefixes", ()):
                key = prefix["Prefix"]
                name = key.rstrip("/").rsplit("/", 1)[-1]
                run = _run_from_name(name, f"{location.scheme}://{location.bucket}/{key}", key)
                if run is not None:
                    yield run


def _runs_with_files_in_s3(s3: Any, location: Location) -> list[tuple[Run, list[RunFile]]]:
    """Every run of an archive with its data files, from one listing of the run folders."""
    archive = Location(location.scheme, location.bucket, location.prefix)
    found: dict[str, tuple[Run | None, list[RunFile]]] = {}
    for relative, file in _objects_in_s3(s3, archive, RUN_PREFIX):
        name, slash, inside = relative.partition("/")
        if not slash:
            continue  # an object beside the run folders, not in one
        if name not in found:
            key = archive.prefix + name + "/"
            path = f"{archive.scheme}://{archive.bucket}/{key}"
            found[name] = (_run_from_name(name, path, key), [])
        run, files = found[name]
        if run is not None and _is_data_path(inside):
            files.append(file)
    return sorted(
        ((run, files) for run, files in found.values() if run is not None),
        key=lambda pair: pair[0],
    )


def _objects_in_s3(
    s3: Any, location: Location, name_start: str = ""
) -> Iterator[tuple[str, RunFile]]:
    """(key relative to the folder, file) for every object under ``location``'s folder."""
    params: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.prefix + name_start}
    if _lists_restore_status(s3):
        params["OptionalObjectAttributes"] = ["RestoreStatus"]
    paginator = s3.get_paginator("list_objects_v2")
    with aws_errors("list the run files", location.uri):
        for page in paginator.paginate(**params):
            for item in page.get("Contents", ()):
                key = item["Key"]
                yield key[len(location.prefix) :], _file_from_listing(location, item)


def _file_from_listing(location: Location, item: dict[str, Any]) -> RunFile:
    storage_class = item.get("StorageClass")
    restored = None
    if storage_class in COLD_STORAGE_CLASSES and "RestoreStatus" in item:
        # S3 reports RestoreStatus only for objects with a restore requested.
        restored = not item["RestoreStatus"].get("IsRestoreInProgress", False)
    return RunFile(
        f"{location.scheme}://{location.bucket}/{item['Key']}",
        int(item["Size"]),
        storage_class,
        restored,
        _utc(item.get("LastModified")),
    )


def _settle_restore_status(s3: Any, files: list[RunFile]) -> list[RunFile]:
    """Ask HeadObject about cold files whose restore status the listing did not give.

    S3 leaves RestoreStatus out for cold objects never restored, and S3-compatible stores
    (moto, MinIO) may leave it out always. One unrestored object makes a run cold, so the
    checks stop there: a run costs at most one HeadObject more than its restored objects.
    """
    settled: list[RunFile] = []
    for index, file in enumerate(files):
        if file.storage_class in COLD_STORAGE_CLASSES and file.restored is None:
            where = parse_location(file.path, what="run file")
            file = replace(file, restored=_is_restored(s3, str(where.bucket), where.key))
            if not file.restored:
                return [*settled, file, *files[index + 1 :]]
        settled.append(file)
    return settled


def _is_restored(s3: Any, bucket: str, key: str) -> bool:
    """Whether a cold object has a finished restore (``Restore: ongoing-request="false"``)."""
    with aws_errors("check the restore status", f"s3://{bucket}/{key}"):
        restore = s3.head_object(Bucket=bucket, Key=key).get("Restore") or ""
    return 'ongoing-request="false"' in restore


def _lists_restore_status(s3: Any) -> bool:
    """Whether this botocore knows ListObjectsV2's OptionalObjectAttributes (botocore >= 1.33)."""
    try:
        shape = s3.meta.service_model.operation_model("ListObjectsV2").input_shape
    except Exception:  # a stub or foreign client: do without
        return False
    return "OptionalObjectAttributes" in shape.members


# -- shared ------------------------------------------------------------------------------------


def _run_from_name(name: str, path: str, s3_key: str | None) -> Run | None:
    """A Run for a folder name, or None (logged) when the folder is not a run."""
    if not RUN_FOLDER_RE.match(name):
        _logger.debug("Ignoring %s: not a run folder", path)
        return None
    try:
        timestamp = parse_run_id(name)
    except InvalidRunIdError as exc:
        _logger.warning("Ignoring %s: %s", path, exc)
        return None
    return Run(id=s3_key if s3_key is not None else path, timestamp=timestamp, path=path, name=name)


def _is_data_path(relative: str) -> bool:
    """Whether a path inside a run folder names a data file (no marker or hidden part)."""
    return bool(relative) and all(_is_data_name(part) for part in relative.split("/"))


def _is_data_name(name: str) -> bool:
    """False for Hadoop/Spark markers (_SUCCESS, _temporary), hidden files and S3 folder markers."""
    return bool(name) and name[0] not in "._" and not name.endswith("_$folder$")


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
