"""Parse the locations users give: ``s3://bucket/prefix/`` (also ``s3a://``, ``s3n://``),
``file:///path`` or a plain local path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Union
from urllib.parse import unquote, urlparse

from .exceptions import InvalidLocationError

PathLike = Union[str, "os.PathLike[str]"]

S3_SCHEMES = ("s3", "s3a", "s3n")
# S3 bucket naming rules, loosely: 3-63 characters, lower-case letters, digits, dots, hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_EXPECTED_FORMS = "s3://bucket/prefix/ (or s3a://, s3n://), file:///absolute/path or a local path"


@dataclass(frozen=True)
class Location:
    """Where something lives: an S3 prefix or a local directory.

    For S3, ``bucket`` is set and ``key`` is the bucket-relative key (no leading slash).
    For local paths, ``bucket`` is ``None`` and ``key`` is an absolute path.
    """

    scheme: str
    bucket: str | None
    key: str

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    @property
    def prefix(self) -> str:
        """The S3 key as a folder prefix: empty, or ending in ``/``."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    @property
    def uri(self) -> str:
        """The location as a URI Spark and users understand (local paths stay plain paths)."""
        if self.is_s3:
            return f"{self.scheme}://{self.bucket}/{self.key}"
        return self.key

    def join(self, *parts: str) -> Location:
        """A child location; ``parts`` are relative names joined with ``/``."""
        tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
        if self.is_s3:
            return Location(self.scheme, self.bucket, self.prefix + tail)
        return Location(self.scheme, None, os.path.join(self.key, *tail.split("/")))

    def __str__(self) -> str:
        return self.uri


def parse_location(value: PathLike | Location, *, what: str = "location") -> Location:
    """Parse ``value`` into a :class:`Location`.

    ``what`` names the input in error messages (``"archive"``, ``"state location"``...).

    >>> parse_location("s3://acme/enriched/archive/")
    Location(scheme='s3', bucket='acme', key='enriched/archive/')
    """
    if isinstance(value, Location):
        return value
    text = os.fspath(value)
    if not text or not text.strip():
        raise InvalidLocationError(f"The {what} is empty. Expected {_EXPECTED_FORMS}.")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Location("file", None, os.path.abspath(os.path.expanduser(text)))
    scheme = scheme.lower()
    if scheme == "file":
        path = unquote(urlparse(text).path)
        if not path:
            raise InvalidLocationError(
                f"The {what} {text!r} has no path. Expected {_EXPECTED_FORMS}."
            )
        return Location("file", None, os.path.abspath(path))
    if scheme in S3_SCHEMES:
        bucket, _, key = rest.partition("/")
        if not _BUCKET_RE.match(bucket):
            raise InvalidLocationError(
                f"The {what} {text!r} does not name a valid S3 bucket. Expected {_EXPECTED_FORMS}."
            )
        return Location(scheme, bucket, key.lstrip("/"))
    raise InvalidLocationError(
        f"The {what} {text!r} has the unsupported scheme {scheme!r}. Expected {_EXPECTED_FORMS}."
    )
