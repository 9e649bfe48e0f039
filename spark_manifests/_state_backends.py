"""Where state documents are kept: a local directory or an S3 prefix.

Both backends offer the same small interface to ``spark_manifests.state``: read a named
object with its version token, write it only if its current version is the expected one,
delete it on the same condition, and list a folder. Names are ``/``-separated and relative
to the store's location (``"daily_running.json"``, ``"history/daily/....json"``).

A version token is an opaque string: the S3 ETag, or the SHA-256 of a local file's bytes.
``expect=None`` means "the object must not exist yet".
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from botocore.exceptions import ClientError

from ._aws import aws_errors, error_code, http_status, make_client
from ._locations import Location
from .exceptions import InvalidLocationError

try:  # POSIX only; elsewhere the version check still runs, without the lock around it.
    import fcntl
except ImportError:  # pragma: no cover - not reached on Linux or macOS
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)

#: Held (flock) while a local writer compares versions and replaces a file.
LOCK_NAME = ".state.lock"
_TEMP_SUFFIX = ".tmp"


class Blob(NamedTuple):
    """An object's bytes and its version token."""

    body: bytes
    version: str


class VersionConflict(Exception):
    """Internal: a conditional write or delete found another version than the expected one."""

    @classmethod
    def found(cls, version: str | None) -> VersionConflict:
        return cls("now it does not exist" if version is None else f"now it has version {version}")


class Backend(Protocol):
    def describe(self, name: str) -> str:
        """The full location of ``name`` for messages (a URI or a local path)."""

    def read(self, name: str) -> Blob | None:
        """The object, or ``None`` if it does not exist."""

    def write(self, name: str, body: bytes, *, expect: str | None) -> str:
        """Replace ``name`` with ``body`` if its version is ``expect``; the new version."""

    def delete(self, name: str, *, expect: str) -> None:
        """Delete ``name`` if its version is ``expect``."""

    def remove(self, name: str) -> None:
        """Delete ``name`` unconditionally; a missing object is fine."""

    def list(self, folder: str) -> list[str]:
        """Names of the ``.json`` objects directly in ``folder``."""


def open_backend(
    location: Location,
    *,
    client: Any | None = None,
    session: Any | None = None,
    sse: str | None = None,
    kms_key_id: str | None = None,
    expected_bucket_owner: str | None = None,
) -> Backend:
    if location.is_s3:
        return S3Backend(
            location,
            make_client("s3", client=client, session=session),
            sse=sse,
            kms_key_id=kms_key_id,
            expected_bucket_owner=expected_bucket_owner,
        )
    return LocalBackend(location.key)


# -- local directory ------------------------------------------------------------------------


def file_version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class LocalBackend:
    """Files in a directory, replaced atomically, versions compared under an flock."""

    def __init__(self, root: str) -> None:
        if os.path.exists(root) and not os.path.isdir(root):
            raise InvalidLocationError(
                f"The state location {root} is a file, not a directory: give a directory "
                "(or s3://bucket/prefix/) for the state files."
            )
        self.root = root

    def describe(self, name: str) -> str:
        return self._path(name)

    def read(self, name: str) -> Blob | None:
        try:
            with open(self._path(name), "rb") as handle:
                body = handle.read()
        except FileNotFoundError:
            return None
        return Blob(body, file_version(body))

    def write(self, name: str, body: bytes, *, expect: str | None) -> str:
        path = self._path(name)
        with self._locked():
            self._check(name, expect)
            _atomic_write(path, body)
        return file_version(body)

    def delete(self, name: str, *, expect: str) -> None:
        path = self._path(name)
        with self._locked():
            self._check(name, expect)
            os.unlink(path)
            _fsync_dir(os.path.dirname(path))

    def remove(self, name: str) -> None:
        path = self._path(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def list(self, folder: str) -> list[str]:
        try:
            entries = os.listdir(self._path(folder))
        except FileNotFoundError:
            return []
        return [
            _joined(folder, entry)
            for entry in entries
            if entry.endswith(".json") and not entry.startswith(".")
        ]

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def _check(self, name: str, expect: str | None) -> None:
        current = self.read(name)
        found = current.version if current is not None else None
        if found != expect:
            raise VersionConflict.found(found)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Every writer of this directory takes the same lock, so "compare the version, then
        # replace the file" cannot interleave with another process doing the same. The kernel
        # drops the lock when its holder dies, so a killed job never blocks the next one.
        _make_dirs(self.root)
        fd = os.open(os.path.join(self.root, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _atomic_write(path: str, body: bytes) -> None:
    """Write ``path`` so that a reader (or a crash) sees the old bytes or the new, never part."""
    folder, base = os.path.split(path)
    _make_dirs(folder)
    _remove_stale_temp_files(folder, base)
    fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=_TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The rename is durable only once the directory entry is on disk.
    _fsync_dir(folder)


def _remove_stale_temp_files(folder: str, base: str) -> None:
    # Called under the lock: no live writer owns a temp file of this name, so any left is
    # from a writer killed between creating it and the rename.
    prefix = f".{base}."
    for entry in os.listdir(folder):
        if entry.startswith(prefix) and entry.endswith(_TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def _make_dirs(folder: str) -> None:
    """Create ``folder`` and its missing parents, each durably."""
    if os.path.isdir(folder):
        return
    parent = os.path.dirname(folder)
    if parent and parent != folder:
        _make_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    _fsync_dir(parent)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


# -- S3 -------------------------------------------------------------------------------------


class S3Backend:
    """Objects under an S3 prefix; every write is a single conditional PUT."""

    def __init__(
        self,
        location: Location,
        client: Any,
        *,
        sse: str | None = None,
        kms_key_id: str | None = None,
        expected_bucket_owner: str | None = None,
    ) -> None:
        self.location = location
        self.client = client
        self._common: dict[str, str] = {"Bucket": str(location.bucket)}
        if expected_bucket_owner:
            self._common["ExpectedBucketOwner"] = expected_bucket_owner
        self._encryption: dict[str, str] = {}
        if sse:
            self._encryption["ServerSideEncryption"] = sse
        if kms_key_id:
            self._encryption["SSEKMSKeyId"] = kms_key_id

    def describe(self, name: str) -> str:
        return self.location.join(name).uri

    def read(self, name: str) -> Blob | None:
        with aws_errors("read job state", self.describe(name)):
            try:
                response = self.client.get_object(Key=self._key(name), **self._common)
            except ClientError as exc:
                # Only a missing key: a missing bucket (also a 404) must not look like "no state".
                if error_code(exc) == "NoSuchKey":
                    return None
                raise
            return Blob(response["Body"].read(), response["ETag"])

    def write(self, name: str, body: bytes, *, expect: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}
        with aws_errors("write job state", self.describe(name)), _conflicts():
            response = self.client.put_object(
                Key=self._key(name),
                Body=body,
                ContentType="application/json",
                **condition,
                **self._encryption,
                **self._common,
            )
        return str(response["ETag"])

    def delete(self, name: str, *, expect: str) -> None:
        with aws_errors("delete job state", self.describe(name)), _conflicts():
            self.client.delete_object(Key=self._key(name), IfMatch=expect, **self._common)

    def remove(self, name: str) -> None:
        with aws_errors("delete job state", self.describe(name)):
            self.client.delete_object(Key=self._key(name), **self._common)

    def list(self, folder: str) -> list[str]:
        prefix = self._key(_joined(folder, ""))
        names = []
        with aws_errors("list job state", self.describe(folder)):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Prefix=prefix, Delimiter="/", **self._common
            )
            for page in pages:
                for item in page.get("Contents", []):
                    entry = item["Key"][len(prefix) :]
                    if entry.endswith(".json"):
                        names.append(_joined(folder, entry))
        return names

    def _key(self, name: str) -> str:
        return self.location.prefix + name


@contextlib.contextmanager
def _conflicts() -> Iterator[None]:
    """Turn the answers of a lost S3 condition into ``VersionConflict``.

    S3 answers 412 when the version differs, 409 while another conditional write to the key
    is in flight, and 404 when the object an ``IfMatch`` names is gone.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchKey":
            raise VersionConflict.found(None) from exc
        if code == "ConditionalRequestConflict":
            raise VersionConflict("another conditional write to it was in flight") from exc
        if code == "PreconditionFailed" or http_status(exc) == 412:
            raise VersionConflict("now it has another version (S3: PreconditionFailed)") from exc
        raise


def _joined(folder: str, entry: str) -> str:
    """``folder/entry``; just ``entry`` in the top folder (``""``)."""
    folder = folder.strip("/")
    return f"{folder}/{entry}" if folder else entry
