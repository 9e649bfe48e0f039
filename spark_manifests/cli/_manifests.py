"""The manifest a command names (``--manifest``), and the times of the runs kept in it."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

from ..exceptions import SparkManifestsError
from ..runs import parse_run_id
from ..source import default_home


def open_manifest_of(
    args: argparse.Namespace, *, must_exist: bool = False, creating: bool = False
) -> Any:
    """The manifest of ``--manifest`` (default: the embedded one). With ``must_exist``, a
    SQLite file that is not there is an error rather than a new, empty manifest; only when
    ``creating`` may its folder be missing."""
    from ..manifest_open import open_manifest, refuse_unlikely_new_manifest, sqlite_path

    given = bool(args.manifest)
    args.manifest = args.manifest or os.path.join(default_home(), "manifest.sqlite")
    path = sqlite_path(args.manifest)
    if must_exist and path is not None and path != ":memory:" and not os.path.isfile(path):
        raise ValueError(
            f"No manifest at {os.path.abspath(path)}: no job has used it yet. Check --manifest "
            "(a relative path, or the default .spark-manifests/, is relative to the current "
            "directory)."
        )
    if given:  # `manifest create` makes the folder it names; others would leave a stray file
        refuse_unlikely_new_manifest(args.manifest, folder_must_exist=not creating)
    return open_manifest(args.manifest)


def run_time(run_id: str) -> datetime | None:
    """When the run was made, or ``None`` for an id that names no run folder."""
    try:
        return parse_run_id(run_id)
    except SparkManifestsError:
        return None
