"""Iglu schemas for typed entity columns: the resolver and the forms it is configured in.

Give ``spark_manifests.enriched.read_enriched`` an ``iglu=`` and the ``contexts_*`` and
``unstruct_event_*`` columns are typed from the events' Iglu schemas, as Snowplow's loaders
type them (see ``docs/iglu.md``). ``iglu`` takes any of:

- an ``IgluResolver``;
- the path of Snowplow's resolver configuration file
  (``iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-x``), or its parsed
  document (a ``dict``): repositories with priorities, vendor prefixes and ``http``
  (optional ``apikey``) or ``embedded`` (a folder or ``s3://`` prefix) connections;
- a list of static repositories, each a local folder, an ``s3://`` prefix or an
  ``http(s)://`` URL, holding ``schemas/<vendor>/<name>/jsonschema/<version>``; the first
  is asked first.

Schemas are fetched on the driver only, once per resolver (keep one per job): answers,
misses and listings are cached.

Examples
--------
>>> resolver = IgluResolver.coerce(["tests/iglu", "https://iglucentral.com"])
>>> [repository.kind for repository in resolver.repositories]
['local', 'http']
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Union

from ._iglu import parse_iglu_uri, version_key
from ._iglu_fetch import (
    HTTP,
    Fetcher,
    Repository,
    RepositoryUnreachable,
    SchemaNotFound,
    repository_from_location,
)
from .exceptions import IgluConfigError, InvalidLocationError, SchemaResolutionError

__all__ = ["IgluLike", "IgluResolver", "Repository", "SchemaResolutionError"]

_logger = logging.getLogger(__name__)

_RESOLVER_CONFIG = "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-"

#: What ``iglu=`` accepts: a resolver, a resolver-config path or document, or repositories.
IgluLike = Union["IgluResolver", str, "os.PathLike[str]", Mapping[str, Any], Sequence[str]]


class IgluResolver:
    """Resolves Iglu schema URIs against an ordered list of repositories, with a cache.

    Order, as Iglu's own client: repositories whose vendor prefixes match the schema's
    vendor first, then local and S3 ("embedded") before HTTP, then by ``priority`` (lower
    first), then in the order given.

    Parameters
    ----------
    repositories
        The repositories.
    session, s3_client
        boto3 session or S3 client for ``s3://`` repositories.

    Examples
    --------
    >>> resolver = IgluResolver([Repository("mine", "local", "/srv/iglu")])
    >>> resolver.schema("iglu:com.acme/product/jsonschema/1-0-0")  # doctest: +SKIP
    """

    def __init__(
        self,
        repositories: Sequence[Repository],
        *,
        session: Any | None = None,
        s3_client: Any | None = None,
    ) -> None:
        if not repositories:
            raise IgluConfigError("No Iglu repositories given: pass at least one.")
        self.repositories: tuple[Repository, ...] = tuple(repositories)
        self._fetcher = Fetcher(session=session, s3_client=s3_client)
        self._schemas: dict[str, dict[str, Any] | SchemaResolutionError] = {}
        self._versions: dict[tuple[str, str, str], list[str]] = {}

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def coerce(cls, iglu: IgluLike, **aws: Any) -> IgluResolver:
        """A resolver from any form ``iglu=`` accepts (see the module notes)."""
        if isinstance(iglu, IgluResolver):
            return iglu
        if isinstance(iglu, Mapping):
            return cls.from_config(iglu, **aws)
        if isinstance(iglu, (str, os.PathLike)):
            return cls.from_config(iglu, **aws)
        return cls.from_repositories(iglu, **aws)

    @classmethod
    def from_repositories(cls, locations: Sequence[str], **aws: Any) -> IgluResolver:
        """Static repositories, asked in the order given.

        Examples
        --------
        >>> IgluResolver.from_repositories(["s3://acme/iglu/"]).repositories[0].kind
        's3'
        """
        if isinstance(locations, (str, bytes)) or not locations:
            raise IgluConfigError(
                "Iglu repositories must be a non-empty list of folders, s3:// prefixes or "
                "http(s):// URLs."
            )
        try:
            repositories = [
                replace(repository_from_location(str(os.fspath(location))), priority=n)
                for n, location in enumerate(locations)
            ]
        except InvalidLocationError as exc:
            raise IgluConfigError(str(exc)) from exc
        return cls(repositories, **aws)

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any], **aws: Any
    ) -> IgluResolver:
        """A resolver from Snowplow's resolver configuration (a file path or its document).

        Examples
        --------
        >>> IgluResolver.from_config({
        ...     "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        ...     "data": {"cacheSize": 500, "repositories": [{
        ...         "name": "Iglu Central", "priority": 0, "vendorPrefixes": [],
        ...         "connection": {"http": {"uri": "https://iglucentral.com"}}}]}
        ... }).repositories[0].name
        'Iglu Central'
        """
        source = "the resolver configuration"
        if not isinstance(config, Mapping):
            source = os.fspath(config)
            config = _load_config_file(source)
        schema = config.get("schema")
        data = config.get("data")
        if not (isinstance(schema, str) and schema.startswith(_RESOLVER_CONFIG)):
            raise IgluConfigError(
                f'{source} is not an Iglu resolver configuration: its "schema" must be '
                f"{_RESOLVER_CONFIG}x (found {schema!r})."
            )
        entries = data.get("repositories") if isinstance(data, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise IgluConfigError(f"{source} lists no repositories under data.repositories.")
        return cls([_configured_repository(entry, source) for entry in entries], **aws)

    # -- resolving --------------------------------------------------------------------------

    def ordered_for(self, vendor: str) -> list[Repository]:
        """The repositories in the order they are asked for a schema of ``vendor``."""
        ranked = sorted(enumerate(self.repositories), key=lambda p: (*p[1].order_for(vendor), p[0]))
        return [repository for _, repository in ranked]

    def schema(self, uri: str) -> dict[str, Any]:
        """The JSON schema of ``uri`` (numbers with a fraction as ``Decimal``).

        Raises
        ------
        SchemaResolutionError
            No repository holds it or none could be reached; the message lists each
            repository tried and its answer.
        """
        if uri not in self._schemas:
            self._schemas[uri] = self._resolve(uri)
        found = self._schemas[uri]
        if isinstance(found, SchemaResolutionError):
            raise found
        return found

    def model_versions(self, vendor: str, name: str, model: str) -> list[str]:
        """Every version of one model the repositories list (Iglu Server, folders, S3)."""
        key = (vendor, name, model)
        if key not in self._versions:
            listed: set[str] = set()
            for repository in self.ordered_for(vendor):
                listed.update(self._fetcher.versions(repository, vendor, name, model))
            self._versions[key] = sorted(listed, key=version_key)
        return list(self._versions[key])

    def _resolve(self, uri: str) -> dict[str, Any] | SchemaResolutionError:
        parts = parse_iglu_uri(uri)
        if parts is None:
            return SchemaResolutionError(f"{uri!r} is not an Iglu schema URI")
        tried = []
        for repository in self.ordered_for(parts.vendor):
            try:
                schema = self._fetcher.schema(repository, uri)
            except SchemaNotFound as exc:
                tried.append(f"{repository.describe()}: not found ({exc})")
            except RepositoryUnreachable as exc:
                tried.append(f"{repository.describe()}: unreachable ({exc})")
            else:
                _logger.info("Iglu schema %s from %s", uri, repository.describe())
                return schema
        _logger.warning("Iglu schema %s not resolved; tried %s", uri, "; ".join(tried))
        return SchemaResolutionError(f"schema {uri} not resolved; tried {'; '.join(tried)}")


def _load_config_file(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except OSError as exc:
        raise IgluConfigError(f"Cannot read the Iglu resolver configuration {path}: {exc}") from exc
    except ValueError as exc:
        raise IgluConfigError(f"The Iglu resolver configuration {path} is not JSON: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise IgluConfigError(f"The Iglu resolver configuration {path} is not a JSON object.")
    return loaded


def _configured_repository(entry: Any, source: str) -> Repository:
    """One ``repositories`` entry of a resolver configuration."""
    connection = entry.get("connection") if isinstance(entry, Mapping) else None
    name = str(entry.get("name", "")) if isinstance(entry, Mapping) else ""
    if not isinstance(connection, Mapping):
        raise IgluConfigError(f"Repository {name!r} in {source} has no connection.")
    priority = int(entry.get("priority", 0) or 0)
    prefixes = tuple(str(p) for p in entry.get("vendorPrefixes") or ())
    http, embedded = connection.get("http"), connection.get("embedded")
    if isinstance(http, Mapping) and http.get("uri"):
        uri = str(http["uri"]).rstrip("/")
        apikey = http.get("apikey")
        return Repository(name or uri, HTTP, uri, priority, prefixes, apikey or None)
    if isinstance(embedded, Mapping) and embedded.get("path"):
        try:
            found = repository_from_location(str(embedded["path"]), name=name or None)
        except InvalidLocationError as exc:
            raise IgluConfigError(f"Repository {name!r} in {source}: {exc}") from exc
        return Repository(found.name, found.kind, found.location, priority, prefixes)
    raise IgluConfigError(
        f"Repository {name!r} in {source} needs an http (uri) or embedded (path) connection."
    )
