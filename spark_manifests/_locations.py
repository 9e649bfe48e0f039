"""Parse the locations users give: ``s3://bucket/prefix/`` (also ``s3a://``, ``s3n://``),
``file:///path`` or a plain local path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Union
from urllib.parse import unquote

from .exceptions import InvalidLocationError

PathLike = Union[str, "os.PathLike[str]"]

S3_SCHEMES = ("s3", "s3a", "s3n")
# S3 bucket names, loosely: today's rules allow 3-63 lower-case letters, digits, dots and
# hyphens; buckets made in us-east-1 before March 2018 may also hold capitals and underscores.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{1,253}[A-Za-z0-9]$")
# Schemes this package reads: one written with a single slash or none ("s3:/bucket") is a typo,
# not a local folder named "s3:". (file:/path, as Spark prints paths, is a valid file URI.)
_URI_EXAMPLES = {
    **{scheme: f"{scheme}://bucket/prefix/" for scheme in S3_SCHEMES},
    "dynamodb": "dynamodb://TABLE",
    "sqlite": "sqlite:///path/to/manifest.sqlite",
}
# s3:/b, s3:b (a slash short) and s3//b (the colon left out).
_SCHEME_TYPO_RE = re.compile(rf"^({'|'.join(_URI_EXAMPLES)})(:/?(?!/)|//)", re.IGNORECASE)
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


def parse_location(
    value: PathLike | Location, *, what: str = "location", expected: str = _EXPECTED_FORMS
) -> Location:
    """Parse ``value`` into a ``Location``.

    ``what`` names the input in error messages (``"archive"``, ``"state location"``...), which
    end with ``expected``, the forms it may take.

    Examples
    --------
    >>> parse_location("s3://acme/enriched/archive/")
    Location(scheme='s3', bucket='acme', key='enriched/archive/')
    """
    if isinstance(value, Location):
        return value
    text = os.fspath(value)
    if not text or not text.strip():
        raise InvalidLocationError(f"The {what} is empty. Expected {expected}.")
    scheme, sep, rest = text.partition("://")
    if not sep:
        refuse_scheme_typo(text, what, expected)
        if text[:5].lower() == "file:":  # file:/path, as Spark and Hadoop print paths
            return Location("file", None, _file_uri_path(text, text[5:], what, expected))
        return Location("file", None, _absolute(os.path.expanduser(text)))
    scheme = scheme.lower()
    if scheme == "file":
        return Location("file", None, _file_uri_path(text, rest, what, expected))
    if scheme in S3_SCHEMES:
        bucket, _, key = rest.partition("/")
        if not _BUCKET_RE.match(bucket):
            raise InvalidLocationError(
                f"The {what} {text!r} does not name a valid S3 bucket. Expected {expected}."
            )
        return Location(scheme, bucket, key.lstrip("/"))
    raise InvalidLocationError(
        f"The {what} {text!r} has the unsupported scheme {scheme!r}. Expected {expected}."
    )


def refuse_scheme_typo(text: str, what: str, expected: str = _EXPECTED_FORMS) -> None:
    """Raise when a text without ``://`` starts with a scheme this package reads: it is a
    mistyped URI, and as a local path it would quietly name a new, empty folder or file."""
    typo = _SCHEME_TYPO_RE.match(text)
    if typo:
        scheme = typo.group(1).lower()
        raise InvalidLocationError(
            f"The {what} {text!r} is not a URI: write {scheme}:// as in "
            f"{_URI_EXAMPLES[scheme]} (a local path named so would start with ./). "
            f"Expected {expected}."
        )


def _file_uri_path(text: str, rest: str, what: str, expected: str) -> str:
    """The absolute path of a ``file://`` URI; a host other than localhost is refused (it
    would be dropped, and ``file://data/x`` read as ``/x``)."""
    host, slash, path = rest.partition("/")
    if host.lower() not in ("", "localhost") or not slash:
        raise InvalidLocationError(
            f"The {what} {text!r} is not a file:// URI of this machine: write "
            f"file:///absolute/path (three slashes), or a plain path. Expected {expected}."
        )
    return _absolute(unquote("/" + path))


def _absolute(path: str) -> str:
    """The absolute, normalised form of a local path, one spelling per folder: POSIX keeps a
    leading ``//`` (``//tmp/a`` is ``/tmp/a`` on Linux and macOS), which would make new run
    ids for runs the manifest knows."""
    absolute = os.path.abspath(path)
    return absolute[1:] if absolute.startswith("//") else absolute
