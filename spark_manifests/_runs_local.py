"""Listing a local archive: its run folders, and each run's data files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone

from ._locations import Location
from ._run_folders import (
    RUN_FOLDER_STARTS,
    Run,
    RunFile,
    is_data_name,
    refuse_nested_run,
    run_from_name,
)
from .exceptions import ArchiveNotFoundError, RunInputError


def runs_in_directory(location: Location, from_label: str | None = None) -> Iterator[Run]:
    """The run folders of a local archive; with ``from_label``, folders named for an earlier
    time are skipped by their name alone (labels sort as their times do)."""
    root = location.key
    if not os.path.isdir(root):
        raise ArchiveNotFoundError(
            f"The archive {root} does not exist or is not a directory: check the path."
        )
    with os.scandir(root) as entries:
        for entry in entries:
            if from_label is not None and _named_before(entry.name, from_label):
                continue
            if entry.is_dir():
                run = run_from_name(entry.name, os.path.join(root, entry.name) + "/", None)
                if run is not None:
                    yield run


def files_in_directory(folder: str) -> Iterator[RunFile]:
    """The data files under a local run folder, following links to folders (once each)."""
    seen = {os.path.realpath(folder)}

    def refuse(error: OSError) -> None:
        raise RunInputError(
            f"Cannot list {error.filename} in run {folder}: {error.strerror}. "
            "Make it readable, then process the run again."
        )

    for current, folders, names in os.walk(folder, onerror=refuse, followlinks=True):
        kept = [name for name in folders if is_data_name(name)]
        refuse_nested_run(folder, kept)
        folders[:] = [name for name in kept if _first_visit(os.path.join(current, name), seen)]
        for name in names:
            if is_data_name(name):
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


def _named_before(name: str, label: str) -> bool:
    return name.startswith(RUN_FOLDER_STARTS) and name[len("run=") :] < label
