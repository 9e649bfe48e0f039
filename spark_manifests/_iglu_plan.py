"""Which typed columns a read gets: the versions of each model met, merged; breaking
versions in recovery columns; schemas no repository gave. Driver-side, no Spark.

For each ``contexts_*``/``unstruct_event_*`` column the discovery scan found, every version of
its model that the repositories list (or, for repositories that cannot list, the versions
met) is fetched and merged in version order, as the Lake Loader does. A version met in the
data that breaks the merge (a field changes type) gets its own column,
``<column>_recovered_<version>_<hash>``: the loaders' form; the hash is a CRC-32 of the
version's column type here (the Lake Loader's is a JVM hash code), so a breaking version
always lands in the same recovery column.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._enriched_fields import CONTEXTS, UNSTRUCT
from ._iglu import parse_iglu_uri, version_key
from ._iglu_types import STRUCT, Node, ddl, merge, node_of
from .exceptions import SchemaResolutionError
from .iglu import IgluResolver

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityColumn:
    """One typed column: its name, kind (contexts or unstruct), type, and for each schema
    URI it holds (met in the data) the top-level JSON keys that version requires."""

    name: str
    kind: str
    node: Node
    required: Mapping[str, tuple[str, ...]]

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(sorted(self.required))


@dataclass(frozen=True)
class TypedPlan:
    """The typed columns of a read, and the URIs met that no repository gave (-> why)."""

    columns: tuple[EntityColumn, ...]
    unresolved: Mapping[str, str]


def plan_columns(
    resolver: IgluResolver,
    contexts_columns: Mapping[str, Sequence[str]],
    unstruct_columns: Mapping[str, Sequence[str]],
) -> TypedPlan:
    """The typed columns for the columns (name -> URIs met) of a discovery scan."""
    columns: list[EntityColumn] = []
    unresolved: dict[str, str] = {}
    for kind, groups in ((CONTEXTS, contexts_columns), (UNSTRUCT, unstruct_columns)):
        for name, uris in groups.items():
            columns += _plan_model(resolver, name, kind, set(uris), unresolved)
    return TypedPlan(tuple(columns), unresolved)


def _plan_model(
    resolver: IgluResolver, name: str, kind: str, met: set[str], unresolved: dict[str, str]
) -> list[EntityColumn]:
    first = parse_iglu_uri(min(met))
    assert first is not None
    prefix = f"iglu:{first.vendor}/{first.name}/{first.format}/"
    for uri in sorted(u for u in met if not u.startswith(prefix)):
        # com.acme/a_b and com_acme/aB both make the column name of com.acme/a_b
        unresolved[uri] = f"schema {uri} has the column name {name} of {prefix}*; not typed"
    met = {uri for uri in met if uri.startswith(prefix)}
    listed = resolver.model_versions(first.vendor, first.name, first.model)
    versions = set(listed) | {uri[len(prefix) :] for uri in met}
    merged: Node | None = None
    main: dict[str, tuple[str, ...]] = {}
    recoveries: list[EntityColumn] = []
    for version in sorted(versions, key=version_key):
        uri = prefix + version
        try:
            node = node_of(resolver.schema(uri))
        except SchemaResolutionError as exc:
            if uri in met:
                unresolved[uri] = str(exc)
            continue
        widened = node if merged is None else merge(merged, node)
        if widened is not None:
            merged = widened
            if uri in met:
                main[uri] = required_keys(node)
        elif uri in met:
            label = version.replace("-", "_")
            recovery = f"{name}_recovered_{label}_{_type_hash(node)}"
            _logger.warning("Iglu schema %s breaks its model: its entities go to %s", uri, recovery)
            recoveries.append(EntityColumn(recovery, kind, node, {uri: required_keys(node)}))
    if merged is None or not main:
        return recoveries
    return [EntityColumn(name, kind, merged, main), *recoveries]


def required_keys(node: Node) -> tuple[str, ...]:
    """The top-level JSON keys a version requires a non-null value for."""
    if node.kind != STRUCT:
        return ()
    return tuple(field.key for field in node.fields if field.required)


def _type_hash(node: Node) -> int:
    return zlib.crc32(ddl(node, json_keys=False).encode("utf-8")) & 0x7FFFFFFF
