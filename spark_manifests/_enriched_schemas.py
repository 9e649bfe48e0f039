"""Which entity schemas a read shreds: found by a scan of the lines, or given and then
checked against what the read really met (a Spark ``Observation``, in the same pass).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

from . import _enriched_sql as sql
from ._enriched_fields import CONTEXTS, INDEX, UNSTRUCT
from ._iglu import Discovered, classify_uri_sequences, parse_iglu_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_logger = logging.getLogger(__name__)

# Above this many unsortable URI sequences, the exact scan reads every line rather than
# picking those lines out with a long IN list.
_MAX_UNSORTED_LISTED = 100

# The keys of EntitySchemas.as_dict(), also accepted from a mapping; derived_contexts
# entities share the contexts columns, so they share the contexts list.
_CONTEXTS_KEYS = ("contexts", "derived_contexts")
_UNSTRUCT_KEY = "unstruct_event"

# Every "schema": "iglu:..." of a line, in order. It starts with a literal, so Java's regex
# engine skips through the line (Boyer-Moore) instead of trying every position. A value
# starting with a JSON escape (\u0069glu:...) is taken too: holding a backslash, it makes
# its line's sequence one to sort by parsing the JSON.
_SCHEMA_URI_PATTERN = r'"schema"\s*:\s*"((?:iglu:|\\u)[^"\t]*)"'

# The metrics observed by a read given its entity schemas.
_MET_CONTEXTS = "met_contexts"
_MET_UNSTRUCT = "met_unstruct"
_MET_LINES = "lines"


@dataclass(frozen=True)
class EntitySchemas:
    """Iglu schema URIs by JSON kind: ``contexts`` (entities of ``contexts`` and
    ``derived_contexts``) and ``unstruct_event``.

    What ``read_enriched`` takes as ``entity_schemas`` and what
    ``schemas_met`` gives. Sets: ``|`` joins two,
    ``-`` keeps what the first has and the second has not; empty is false.

    Examples
    --------
    >>> given = EntitySchemas.from_dict({"contexts": ["iglu:com.acme/product/jsonschema/1-0-0"]})
    >>> click = frozenset({"iglu:com.acme/click/jsonschema/1-0-0"})
    >>> met = given | EntitySchemas(unstruct_event=click)
    >>> (met - given).as_dict()
    {'contexts': [], 'unstruct_event': ['iglu:com.acme/click/jsonschema/1-0-0']}
    >>> bool(given - met)
    False
    """

    contexts: frozenset[str] = frozenset()
    unstruct_event: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, schemas: Mapping[str, Iterable[str]]) -> EntitySchemas:
        """From ``{"contexts": [...], "derived_contexts": [...], "unstruct_event": [...]}``
        (any key may be left out), e.g. as saved in a job's JSON state.

        Raises ``ValueError`` on another key or a URI the Snowplow SDK would refuse.
        """
        unknown = set(schemas) - {*_CONTEXTS_KEYS, _UNSTRUCT_KEY}
        if unknown:
            raise ValueError(
                f"Unknown entity_schemas keys {sorted(unknown)}: use contexts, "
                "derived_contexts or unstruct_event."
            )
        contexts = {uri for key in _CONTEXTS_KEYS for uri in schemas.get(key, ())}
        found = cls(frozenset(contexts), frozenset(schemas.get(_UNSTRUCT_KEY, ())))
        invalid = sorted(uri for uri in found.contexts | found.unstruct_event if not _valid(uri))
        if invalid:
            raise ValueError(
                f"entity_schemas holds {invalid[:3]}, not Iglu URIs "
                "(iglu:vendor/name/format/1-0-0): give the URIs as they appear in the events."
            )
        return found

    def as_dict(self) -> dict[str, list[str]]:
        """``{"contexts": [...], "unstruct_event": [...]}``, sorted: JSON-ready."""
        return {"contexts": sorted(self.contexts), _UNSTRUCT_KEY: sorted(self.unstruct_event)}

    def __or__(self, other: EntitySchemas) -> EntitySchemas:
        return EntitySchemas(
            self.contexts | other.contexts, self.unstruct_event | other.unstruct_event
        )

    def __sub__(self, other: EntitySchemas) -> EntitySchemas:
        return EntitySchemas(
            self.contexts - other.contexts, self.unstruct_event - other.unstruct_event
        )

    def __bool__(self) -> bool:
        return bool(self.contexts or self.unstruct_event)


SchemasArgument = Union[EntitySchemas, Mapping[str, Iterable[str]]]


def as_entity_schemas(schemas: SchemasArgument) -> EntitySchemas:
    """``entity_schemas`` as given to the reader, checked."""
    if isinstance(schemas, EntitySchemas):
        return EntitySchemas.from_dict(schemas.as_dict())
    return EntitySchemas.from_dict(schemas)


def _valid(uri: str) -> bool:
    return parse_iglu_uri(uri) is not None


# -- the discovery scan (no schemas given) ------------------------------------------------


def _schema_sequence(line: str = "value") -> str:
    """SQL: the schema URIs of ``line``, in order."""
    return f"regexp_extract_all({line}, {sql.literal(_SCHEMA_URI_PATTERN)}, 1)"


def _exact_schema_pairs() -> str:
    """SQL over ``value``: (kind, uri) of every entity, from parsed JSON.

    Slower than ``_schema_sequence``, but right for any JSON layout.
    """
    entities = "struct<data: array<struct<schema: string>>>"
    event = "struct<data: struct<schema: string>>"

    def parsed(name: str, schema: str) -> str:
        text = sql.field_text(INDEX[name], sql.split_fields())
        return f"from_json({text}, '{schema}')"

    def contexts_pairs(name: str) -> str:
        return (
            f"transform(coalesce({parsed(name, entities)}.data, array()), "
            f"e -> named_struct('kind', '{CONTEXTS}', 'uri', e.schema))"
        )

    unstruct_pair = (
        f"array(named_struct('kind', '{UNSTRUCT}', "
        f"'uri', {parsed('unstruct_event', event)}.data.schema))"
    )
    return (
        f"explode(concat({contexts_pairs('contexts')}, {contexts_pairs('derived_contexts')}, "
        f"{unstruct_pair})) AS pair"
    )


def discover(text: DataFrame) -> tuple[EntitySchemas, dict[str | None, int]]:
    """The entity schema URIs in the JSON fields of ``text``, by kind, and its lines per run.

    One cheap scan: a regular expression lists the ``"schema":"iglu:..."`` values of each
    line in order, and the distinct sequences are sorted on the driver. Lines whose layout
    does not allow that (see ``spark_manifests._iglu.classify_uri_sequences``) are read
    again, with their JSON parsed. The scan counts the lines of each file on the way.
    """
    sequence = _schema_sequence()
    scanned = text.selectExpr("input_file_name() AS file", f"{sequence} AS uris")
    counted = scanned.groupBy("file", "uris").count().collect()
    sequences = {tuple(row.uris) for row in counted}
    lines_per_run: dict[str | None, int] = {}
    for row in counted:
        label = run_label(row.file)
        lines_per_run[label] = lines_per_run.get(label, 0) + row["count"]
    found = _classify(text, sequences)
    valid = EntitySchemas(
        frozenset(filter(_valid, found.contexts)), frozenset(filter(_valid, found.unstruct))
    )
    return valid, lines_per_run


def run_label(path: str) -> str | None:
    """The run label of a file's run folder, as ``spark_manifests._enriched_sql.run_label``."""
    found = re.match(sql.RUN_LABEL_PATTERN, path)
    return found.group(1) if found else None


def _classify(text: DataFrame, sequences: set[tuple[str, ...]]) -> Discovered:
    """The URIs of ``sequences`` by kind; the lines of unsortable ones are parsed for theirs."""
    from pyspark.sql import functions as F

    sequence = _schema_sequence()
    discovered = classify_uri_sequences(sequences)
    if not discovered.unsorted:
        return discovered
    _logger.info(
        "%d schema sequences are not in Snowplow's JSON layout; parsing those lines",
        len(discovered.unsorted),
    )
    lines = text
    if len(discovered.unsorted) <= _MAX_UNSORTED_LISTED:
        unsorted = [F.array(*[F.lit(uri) for uri in uris]) for uris in discovered.unsorted]
        lines = text.where(F.expr(sequence).isin(*unsorted))
    pairs = lines.selectExpr(_exact_schema_pairs()).selectExpr("pair.kind", "pair.uri")
    contexts, unstruct = set(discovered.contexts), set(discovered.unstruct)
    for kind, uri in pairs.where("uri IS NOT NULL").distinct().collect():
        (contexts if kind == CONTEXTS else unstruct).add(uri)
    return Discovered(frozenset(contexts), frozenset(unstruct), ())


# -- the observation (schemas given) ------------------------------------------------------


def _schemas_met_metrics() -> list[str]:
    """Aggregates over the typed layer: the entity schemas of each kind (JSON arrays), and
    the lines.

    The schemas are JSON text because Spark 3.5's ``Observation.get`` hands an array back
    as a JVM object, not a list.
    """
    unstruct = f"{sql.quote(sql.json_name('unstruct_event'))}.data.schema"
    met = f"to_json(array_distinct(flatten(collect_set({sql.ENTITY_SCHEMAS}))))"
    return [
        sql.alias(met, _MET_CONTEXTS),
        sql.alias(f"to_json(collect_set({unstruct}))", _MET_UNSTRUCT),
        sql.alias("count(1)", _MET_LINES),
    ]


@dataclass(frozen=True)
class ObservedRead:
    """What an observed read met, known once an action has read its events."""

    schemas: Callable[[], EntitySchemas]
    lines: Callable[[], int]


def observe(typed: DataFrame) -> tuple[DataFrame, ObservedRead]:
    """``typed`` (the reader's typed layer, every line) with the schemas of its entities
    and its lines observed while an action reads it: no pass of its own."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    observation = Observation(f"enriched_schemas_{uuid.uuid4().hex[:8]}")
    observed = typed.observe(observation, *[F.expr(m) for m in _schemas_met_metrics()])

    def metrics() -> Mapping[str, object]:
        return observation.get

    def schemas() -> EntitySchemas:
        found = metrics()
        contexts = json.loads(str(found[_MET_CONTEXTS] or "[]"))
        unstruct = json.loads(str(found[_MET_UNSTRUCT] or "[]"))
        # Invalid URIs make bad rows whatever the list: they are no schema to shred.
        return EntitySchemas(
            frozenset(uri for uri in contexts if uri is not None and _valid(uri)),
            frozenset(uri for uri in unstruct if uri is not None and _valid(uri)),
        )

    def lines() -> int:
        return int(metrics()[_MET_LINES])  # type: ignore[call-overload]

    return observed, ObservedRead(schemas, lines)
