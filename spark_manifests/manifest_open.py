"""Opening a run manifest from a URI: ``dynamodb://TABLE`` or a SQLite file.

The one module that knows both backends, so that ``spark_manifests.manifest`` (the
contract) imports none of them.

Examples
--------
>>> open_manifest("sqlite:///runs.sqlite")  # doctest: +SKIP
SQLiteRunManifest('/home/me/runs.sqlite')
"""

from __future__ import annotations

import os
import re
from typing import Any

from ._aws import make_client
from ._locations import PathLike, parse_location, refuse_scheme_typo
from .exceptions import InvalidLocationError
from .manifest import RunManifest
from .manifest_dynamodb import RunManifests
from .manifest_sqlite import SQLiteRunManifest

__all__ = ["open_manifest", "refuse_unlikely_new_manifest", "sqlite_path"]

# DynamoDB table names: 3-255 characters of letters, digits, '_', '-' and '.'.
_TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_EXPECTED_URIS = (
    "dynamodb://TABLE, sqlite:///relative/path, sqlite:////absolute/path, file:///absolute/path "
    "or a local file path"
)


def open_manifest(
    uri: PathLike, *, client: Any | None = None, session: Any | None = None
) -> RunManifest:
    """Open a manifest from a URI.

    ``dynamodb://TABLE`` opens ``RunManifests`` (region and endpoint
    from the usual AWS settings, such as ``AWS_REGION`` and ``AWS_ENDPOINT_URL``, or from
    ``client``/``session``); a plain path, ``file:///path``, or ``sqlite:///relative/path``
    and ``sqlite:////absolute/path`` (as SQLAlchemy writes them) open
    ``SQLiteRunManifest``; ``:memory:`` is a private in-memory one.

    Examples
    --------
    >>> open_manifest("dynamodb://acme-runs")  # doctest: +SKIP
    RunManifests('acme-runs')
    """
    text = os.fspath(uri).strip()
    path = sqlite_path(text)
    if path is None:
        return _open_dynamodb(
            text.partition("://")[2].strip("/"), text, client=client, session=session
        )
    return _open_sqlite(path)


def sqlite_path(uri: PathLike) -> str | None:
    """The SQLite file a manifest URI names (see ``open_manifest``); ``None`` for DynamoDB.

    Examples
    --------
    >>> sqlite_path("sqlite:///runs.sqlite"), sqlite_path("dynamodb://acme-runs")
    ('runs.sqlite', None)
    """
    text = os.fspath(uri).strip()
    if text[:5].lower() == "file:":  # file:///path, or file:/path as Spark prints paths
        return parse_location(text, what="manifest", expected=_EXPECTED_URIS).key
    scheme, sep, rest = text.partition("://")
    if not sep:
        refuse_scheme_typo(text, "manifest", _EXPECTED_URIS)
        return text
    scheme = scheme.lower()
    if scheme == "dynamodb":
        return None
    if scheme == "sqlite":
        # As SQLAlchemy reads them: sqlite:///relative/path, sqlite:////absolute/path.
        return rest[1:] if rest.startswith("/") else rest
    raise InvalidLocationError(
        f"The manifest {text!r} has the unsupported scheme {scheme!r}. Expected {_EXPECTED_URIS}."
    )


#: Names a new SQLite manifest may have when given as a plain path.
_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def refuse_unlikely_new_manifest(uri: str, *, folder_must_exist: bool = True) -> None:
    """Refuse a SQLite manifest that does not exist yet where the name is most likely
    mistyped: a new, empty manifest would have every run processed again.

    That is a plain path without a SQLite file name (``acme-runs``: a DynamoDB table
    without its ``dynamodb://``), and, with ``folder_must_exist``, a file in a folder that
    does not exist (a typo, or a volume not mounted).
    """
    path = sqlite_path(uri)
    if path is None or path == ":memory:" or os.path.exists(os.path.expanduser(path)):
        return
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if folder_must_exist and not os.path.isdir(folder):
        raise InvalidLocationError(
            f"The folder of the manifest file {path} does not exist: check the path (a new, "
            "empty manifest would have every run processed again), or create the folder."
        )
    plain = "://" not in uri and not uri.lower().startswith("file:")
    if plain and not path.lower().endswith(_SQLITE_SUFFIXES):
        raise InvalidLocationError(
            f"No manifest at {os.path.abspath(path)}. For a DynamoDB table, write "
            f"dynamodb://{os.path.basename(path)}; for a new SQLite manifest, give a file name "
            f"ending in {', '.join(_SQLITE_SUFFIXES)} (or write sqlite:///{path})."
        )


def _open_dynamodb(table: str, uri: str, *, client: Any | None, session: Any | None) -> RunManifest:
    if not _TABLE_NAME_RE.match(table):
        raise InvalidLocationError(
            f"The manifest {uri!r} does not name a valid DynamoDB table (3-255 letters, digits, "
            f"'_', '-' or '.'). Expected {_EXPECTED_URIS}."
        )
    # A client made here is closed with the manifest; a client passed in stays the caller's.
    return RunManifests(
        make_client("dynamodb", client=client, session=session), table, owns_client=client is None
    )


def _open_sqlite(path: str) -> RunManifest:
    if not path:
        raise InvalidLocationError(f"The manifest path is empty. Expected {_EXPECTED_URIS}.")
    return SQLiteRunManifest(path)
