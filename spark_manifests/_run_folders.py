"""Run folders: their names, the runs and files they hold, as the listings find them.

The vocabulary ``spark_manifests.runs`` and its listings share (S3 and local).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from .exceptions import InvalidRunIdError, RunInputError

_logger = logging.getLogger(__name__)


RUN_PREFIX = "run"
# ASCII digits only, and \Z: $ would also match before a final newline.
_LABEL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}"
#: A run's label, the ``run`` column's value: ``2017-04-11-10-31-05``.
LABEL_RE = re.compile(f"^{_LABEL}\\Z")
RUN_FOLDER_RE = re.compile(f"^run[=-]({_LABEL})\\Z")
#: How run folder names start; a listing from a given run lists each form apart, because
#: S3 sorts every ``run-`` folder before every ``run=`` folder whatever their times.
RUN_FOLDER_STARTS = ("run-", "run=")
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

    Examples
    --------
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


def run_position(run_id: str) -> tuple[datetime, str]:
    """Where a run sorts in its archive, from its id: by time, then by id (as ``Run`` sorts).

    Raises InvalidRunIdError if the id does not end in a run folder.
    """
    return parse_run_id(run_id), run_id


def refuse_nested_run(run_path: str, folders: Iterable[str]) -> None:
    """Refuse a run folder inside a run: its files' rows would carry the inner run's label,
    so writing them would replace that run's output."""
    for folder in folders:
        if RUN_FOLDER_RE.match(folder):
            raise RunInputError(
                f"Run {run_path} holds another run folder, {folder}/: its events would be "
                f"filed under that run and replace its output. Move {folder}/ out of the "
                "run (into the archive, if it is a run of its own), then process it again."
            )


def run_from_name(name: str, path: str, s3_key: str | None) -> Run | None:
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


def is_data_path(relative: str) -> bool:
    """Whether a path inside a run folder names a data file (no marker or hidden part)."""
    return bool(relative) and all(is_data_name(part) for part in relative.split("/"))


def is_data_name(name: str) -> bool:
    """False for Hadoop/Spark markers (_SUCCESS, _temporary), hidden files and S3 folder markers."""
    return bool(name) and name[0] not in "._" and not name.endswith("_$folder$")


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
