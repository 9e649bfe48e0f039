"""Iglu schema URIs: validation, the Snowplow SDK's shredded column names, and sorting the
URIs a discovery scan found into context entities and unstructured events.

Pure Python (no Spark), so the rules are easy to test on their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# The Snowplow Analytics SDK 0.2.3's pattern (json_shredder.SCHEMA_URI): a URI that does not
# match it makes the SDK reject the event, and so does this package.
IGLU_URI_PATTERN = (
    "^iglu:"
    "([a-zA-Z0-9-_.]+)/"  # vendor
    "([a-zA-Z0-9-_]+)/"  # name
    "([a-zA-Z0-9-_]+)/"  # format
    "([1-9][0-9]*"  # model (cannot start with 0)
    "(?:-(?:0|[1-9][0-9]*)){2})$"  # revision and addition
)
_IGLU_URI = re.compile(IGLU_URI_PATTERN)
#: The same pattern for Java (Spark's RLIKE): UNIX_LINES makes ``$`` match before a final
#: ``\n`` only, as in Python, not before a final ``\r`` or U+2028 too.
IGLU_URI_PATTERN_JAVA = "(?d)" + IGLU_URI_PATTERN
_CAMEL_BOUNDARY = re.compile(r"([^A-Z_])([A-Z])")

CONTEXTS_PREFIX = "contexts"
UNSTRUCT_PREFIX = "unstruct_event"

# The self-describing wrappers Snowplow puts around the entities of the contexts,
# derived_contexts and unstruct_event fields.
_WRAPPER_VENDOR = "com.snowplowanalytics.snowplow"
_CONTEXTS_WRAPPER = "contexts"
_UNSTRUCT_WRAPPER = "unstruct_event"


class IgluUri(NamedTuple):
    vendor: str
    name: str
    format: str
    version: str

    @property
    def model(self) -> str:
        return self.version.split("-")[0]


def parse_iglu_uri(uri: str) -> IgluUri | None:
    """The parts of an Iglu URI, or ``None`` if it is not one the Snowplow SDK accepts.

    Examples
    --------
    >>> parse_iglu_uri("iglu:com.acme/AddToBasket/jsonschema/2-0-1").model
    '2'
    >>> parse_iglu_uri("iglu:com.acme/product/jsonschema/1.0.0") is None
    True
    """
    match = _IGLU_URI.match(uri)
    return IgluUri(*match.groups()) if match else None


def version_key(version: str) -> tuple[int, ...]:
    """A SchemaVer (``1-0-10``) as a sort key: model, revision, addition as numbers.

    Examples
    --------
    >>> sorted(["1-0-10", "1-0-9"], key=version_key)
    ['1-0-9', '1-0-10']
    """
    return tuple(int(piece) for piece in version.split("-"))


def shredded_column_name(prefix: str, uri: str) -> str:
    """The column name the Snowplow SDK gives an entity: ``<prefix>_<vendor>_<name>_<model>``.

    Vendor dots become underscores, a CamelCase name becomes snake_case, all lower-case;
    revisions of one model share the column.

    Examples
    --------
    >>> shredded_column_name("contexts", "iglu:org.w3/PerformanceTiming/jsonschema/1-0-0")
    'contexts_org_w3_performance_timing_1'
    """
    parts = parse_iglu_uri(uri)
    if parts is None:
        raise ValueError(f"Not an Iglu schema URI: {uri!r}")
    vendor = parts.vendor.replace(".", "_").lower()
    name = _CAMEL_BOUNDARY.sub(r"\1_\2", parts.name).lower()
    return f"{prefix}_{vendor}_{name}_{parts.model}"


def _wrapper_kind(uri: str) -> str | None:
    parts = parse_iglu_uri(uri)
    if parts is None or parts.vendor != _WRAPPER_VENDOR:
        return None
    if parts.name == _CONTEXTS_WRAPPER:
        return CONTEXTS_PREFIX
    if parts.name == _UNSTRUCT_WRAPPER:
        return UNSTRUCT_PREFIX
    return None


class Discovered(NamedTuple):
    """Entity schema URIs by kind, and the URI sequences that could not be sorted."""

    contexts: frozenset[str]
    unstruct: frozenset[str]
    unsorted: tuple[tuple[str, ...], ...]


def classify_uri_sequences(sequences: Iterable[Sequence[str]]) -> Discovered:
    """Sort the schema URIs of each line, in the order they appear, by the wrapper before them.

    A discovery scan lists every ``"schema":"iglu:..."`` of a line in order. In Snowplow's
    layout each JSON field starts with its wrapper's schema, so an entity URI belongs to the
    last wrapper seen: ``contexts`` (also used by derived_contexts) or ``unstruct_event``
    (exactly one entity). A sequence that breaks this (an entity before any wrapper, an
    unstruct wrapper without exactly one entity: another key order, nested self-describing
    data, a broken line) or holds a URI written with JSON escapes is returned in
    ``unsorted``, for the caller to sort another way.

    Examples
    --------
    >>> found = classify_uri_sequences([[
    ...     "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    ...     "iglu:com.acme/product/jsonschema/1-0-0",
    ...     "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
    ...     "iglu:com.acme/click/jsonschema/1-0-0"]])
    >>> sorted(found.contexts), sorted(found.unstruct), found.unsorted
    (['iglu:com.acme/product/jsonschema/1-0-0'], ['iglu:com.acme/click/jsonschema/1-0-0'], ())
    """
    contexts: set[str] = set()
    unstruct: set[str] = set()
    unsorted: list[tuple[str, ...]] = []
    for sequence in sequences:
        sorted_uris = _sort_sequence(sequence)
        if sorted_uris is None:
            unsorted.append(tuple(sequence))
        else:
            contexts.update(sorted_uris[0])
            unstruct.update(sorted_uris[1])
    return Discovered(frozenset(contexts), frozenset(unstruct), tuple(unsorted))


def _sort_sequence(sequence: Sequence[str]) -> tuple[list[str], list[str]] | None:
    contexts: list[str] = []
    unstruct: list[str] = []
    kind: str | None = None
    for uri in sequence:
        if "\\" in uri:  # a JSON escape: the parsed URI differs from the text scanned
            return None
        wrapper = _wrapper_kind(uri)
        if wrapper is not None:
            if kind == UNSTRUCT_PREFIX and len(unstruct) != 1:
                return None
            kind = wrapper
        elif kind == CONTEXTS_PREFIX:
            contexts.append(uri)
        elif kind == UNSTRUCT_PREFIX and not unstruct:
            unstruct.append(uri)
        else:  # before any wrapper, or a second entity in one unstructured event
            return None
    if kind == UNSTRUCT_PREFIX and len(unstruct) != 1:
        return None
    return contexts, unstruct


def group_by_column(prefix: str, uris: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Valid URIs grouped by their shredded column name, columns sorted; invalid URIs dropped.

    Examples
    --------
    >>> group_by_column("contexts", ["iglu:a.b/c/jsonschema/1-0-1", "iglu:a.b/c/jsonschema/1-0-0"])
    {'contexts_a_b_c_1': ('iglu:a.b/c/jsonschema/1-0-0', 'iglu:a.b/c/jsonschema/1-0-1')}
    """
    columns: dict[str, list[str]] = {}
    for uri in sorted(set(uris)):
        if parse_iglu_uri(uri) is not None:
            columns.setdefault(shredded_column_name(prefix, uri), []).append(uri)
    return {name: tuple(columns[name]) for name in sorted(columns)}
