"""Iglu repositories: where a schema's JSON comes from, on the driver.

Three kinds, all laid out as Iglu lays a static repository out,
``<root>/schemas/<vendor>/<name>/jsonschema/<version>``:

- a local folder (the resolver configuration's ``embedded`` connection, or a plain path);
- an S3 prefix (boto3; a client or session can be given);
- an HTTP(S) URL: a static site, or an Iglu Server (``.../api``), sent the ``apikey`` header
  when one is configured. An Iglu Server also lists the versions of a model
  (``GET <uri>/schemas/<vendor>/<name>/jsonschema/<model>``); a static site answers that
  with an error, and only the versions met in the data are used.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ._aws import make_client
from ._iglu import IGLU_URI_PATTERN, parse_iglu_uri
from ._locations import parse_location

_logger = logging.getLogger(__name__)

LOCAL = "local"
S3 = "s3"
HTTP = "http"

# Iglu's Scala client looks at embedded repositories before HTTP ones of the same standing.
_CLASS_PRIORITY = {LOCAL: 1, S3: 1, HTTP: 100}
_HTTP_TIMEOUT_SECONDS = 10.0


class SchemaNotFound(Exception):
    """The repository answered: it does not hold the schema."""


class RepositoryUnreachable(Exception):
    """The repository could not be asked (connection refused, timeout, 5xx, access denied)."""


@dataclass(frozen=True)
class Repository:
    """One Iglu repository of a resolver: where it is, its priority and vendor prefixes.

    ``kind`` is ``"local"``, ``"s3"`` or ``"http"``; ``location`` the folder, S3 prefix or
    URL that holds ``schemas/``.
    """

    name: str
    kind: str
    location: str
    priority: int = 0
    vendor_prefixes: tuple[str, ...] = ()
    apikey: str | None = field(default=None, repr=False)

    def serves(self, vendor: str) -> bool:
        """True when one of the vendor prefixes matches ``vendor``."""
        return any(vendor.startswith(prefix) for prefix in self.vendor_prefixes)

    def order_for(self, vendor: str) -> tuple[int, int, int]:
        """Sort key: vendor-prefix matches first, then embedded before HTTP, then priority."""
        return (0 if self.serves(vendor) else 1, _CLASS_PRIORITY[self.kind], self.priority)

    def describe(self) -> str:
        return self.location if self.name == self.location else f"{self.name} ({self.location})"


def repository_from_location(text: str, *, name: str | None = None) -> Repository:
    """A repository from a short form: a local folder, an ``s3://`` prefix or a URL."""
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return Repository(name or text, HTTP, text.rstrip("/"))
    location = parse_location(text, what="Iglu repository")
    kind = S3 if location.is_s3 else LOCAL
    return Repository(name or location.uri, kind, location.uri)


class Fetcher:
    """Reads schemas and model listings from repositories; boto3 clients made once."""

    def __init__(self, *, session: Any | None = None, s3_client: Any | None = None) -> None:
        self._session = session
        self._s3_client = s3_client

    def schema(self, repository: Repository, uri: str) -> dict[str, Any]:
        """The schema ``uri`` from ``repository``.

        Raises
        ------
        SchemaNotFound, RepositoryUnreachable
        """
        text = self._read(repository, _schema_path(uri))
        try:
            schema = json.loads(text, parse_float=_decimal)
        except ValueError as exc:
            raise SchemaNotFound(f"not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise SchemaNotFound("not a JSON object")
        return schema

    def versions(self, repository: Repository, vendor: str, name: str, model: str) -> list[str]:
        """The versions (``1-0-2``) of one model the repository lists; ``[]`` when it lists
        none or cannot list (a static HTTP site)."""
        try:
            if repository.kind == HTTP:
                return self._http_versions(repository, vendor, name, model)
            return self._stored_versions(repository, vendor, name, model)
        except (SchemaNotFound, RepositoryUnreachable) as exc:
            _logger.debug(
                "No listing of %s/%s/%s from %s: %s", vendor, name, model, repository, exc
            )
            return []

    # -- reading ----------------------------------------------------------------------------

    def _read(self, repository: Repository, path: str) -> str:
        if repository.kind == HTTP:
            return self._http_get(repository, path)
        if repository.kind == S3:
            return self._s3_get(repository, path)
        full = os.path.join(repository.location, *path.split("/"))
        try:
            with open(full, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError as exc:
            raise SchemaNotFound("no such file") from exc
        except OSError as exc:
            raise RepositoryUnreachable(str(exc)) from exc

    def _http_get(self, repository: Repository, path: str) -> str:
        request = urllib.request.Request(f"{repository.location}/{path}")
        if repository.apikey:
            request.add_header("apikey", repository.apikey)
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_SECONDS) as answer:
                return str(answer.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 404):
                raise SchemaNotFound(f"HTTP {exc.code}") from exc
            raise RepositoryUnreachable(f"HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RepositoryUnreachable(str(getattr(exc, "reason", exc))) from exc

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = make_client("s3", session=self._session)
        return self._s3_client

    def _s3_get(self, repository: Repository, path: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        location = parse_location(repository.location, what="Iglu repository")
        try:
            answer = self._s3().get_object(Bucket=location.bucket, Key=location.prefix + path)
            return str(answer["Body"].read().decode("utf-8"))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise SchemaNotFound("no such key") from exc
            raise RepositoryUnreachable(code or str(exc)) from exc
        except BotoCoreError as exc:
            raise RepositoryUnreachable(str(exc)) from exc

    # -- listing ----------------------------------------------------------------------------

    def _http_versions(
        self, repository: Repository, vendor: str, name: str, model: str
    ) -> list[str]:
        text = self._http_get(repository, f"schemas/{vendor}/{name}/jsonschema/{model}")
        try:
            listed = json.loads(text)
        except ValueError:
            return []
        if not isinstance(listed, list):  # a static site serving something else
            return []
        versions = []
        for uri in listed:
            parts = parse_iglu_uri(uri) if isinstance(uri, str) else None
            if parts is not None and (parts.vendor, parts.name) == (vendor, name):
                versions.append(parts.version)
        return versions

    def _stored_versions(
        self, repository: Repository, vendor: str, name: str, model: str
    ) -> list[str]:
        folder = f"schemas/{vendor}/{name}/jsonschema/"
        if repository.kind == S3:
            names = self._s3_names(repository, folder)
        else:
            try:
                names = os.listdir(os.path.join(repository.location, *folder.split("/")))
            except OSError:
                return []
        return [n for n in names if _is_version_of(n, model)]

    def _s3_names(self, repository: Repository, folder: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        location = parse_location(repository.location, what="Iglu repository")
        prefix = location.prefix + folder
        names: list[str] = []
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=location.bucket, Prefix=prefix):
                names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryUnreachable(str(exc)) from exc
        return names


def _schema_path(uri: str) -> str:
    parts = parse_iglu_uri(uri)
    if parts is None:
        raise SchemaNotFound(f"not an Iglu URI (expected {IGLU_URI_PATTERN})")
    return f"schemas/{parts.vendor}/{parts.name}/{parts.format}/{parts.version}"


def _is_version_of(version: str, model: str) -> bool:
    pieces = version.split("-")
    return len(pieces) == 3 and pieces[0] == model and all(p.isdigit() for p in pieces)


def _decimal(text: str) -> Any:
    from decimal import Decimal

    return Decimal(text)
