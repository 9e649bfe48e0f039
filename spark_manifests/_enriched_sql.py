"""The Spark SQL behind ``spark_manifests.enriched.read_enriched``.

Everything here is SQL text for ``selectExpr``: Catalyst expressions only, no Python on the
executors. A value that may be malformed goes through a guard and ``try_cast``, so it gives
``NULL`` (and a bad row), never an error, with or without ANSI mode.

The plan, bottom up::

    text files    value
    fields        _fields: the line split at tabs, once
    typed         _fields, typed fields (empty -> NULL), the JSON fields as text and parsed,
                  the entities of both contexts fields, _source_file = input_file_name()
    filter        the line is good  /  it is not
    output        events columns    /  bad-row columns

With ``iglu=`` (``spark_manifests._iglu_read``), a narrow entity layer between the fields
and the typed layer parses the JSON fields and finds each typed column's entity, and the
typed layer parses the typed entities too.

Plans this wide (over 100 columns) run without whole-stage code generation, so each
projection copies every row: the layers are as few as possible. ``from_json`` is evaluated
outside the generated code, so its input must be a column of the layer below, or it would
split the line again by itself: hence the array of fields under the typed layer (it also
gives back the raw values and the line for the bad rows). Within a layer, Spark computes a
repeated expression once per row (common subexpression elimination), so the parsed JSON
is written out where it is needed rather than referenced by name. ``input_file_name()`` is
non-deterministic, which keeps Spark from pushing the filter below the typed layer (and
from parsing the JSON and casting the values a second time there). Only while the plan
reads it: a ``count()`` or a ``select`` of a few columns drops it, and the filter went down
to the text scan, with the split written out in it at each use (300 splits a line, 5,000
with ``iglu=``). So the filter reads it too (``held_above``).

Each read of a field from an array column makes an object and reads the array's header, and
generated code reads the column afresh in each of its split methods; so the typed layer and
the filter each copy the array once per line (``FIELDS_ONCE``, one subexpression) and read
every field from that copy; only ``from_json``, evaluated interpreted, reads its input from
the array column itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

from ._enriched_fields import (
    BOOL,
    CONTEXTS,
    DOUBLE,
    FIELD_COUNT,
    FIELDS,
    INDEX,
    INT,
    STRING,
    TSTAMP,
    UNSTRUCT,
)
from ._iglu import IGLU_URI_PATTERN_JAVA

FIELDS_ARRAY = "_fields"
SOURCE_FILE = "_source_file"
ENTITIES = "_entities"
ENTITY_SCHEMAS = "_entity_schemas"
ENTITY_SCHEMAS_FROM_END = "_entity_schemas_from_end"
RUN = "run"
GEO_LOCATION = "geo_location"

# The run folder of a file: the last "run=" or "run-" folder on its path.
RUN_LABEL_PATTERN = r"^.*/run[=-]([0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2})/"

# A field name no JSON key is expected to use: from_json puts unparsable input there.
CORRUPT = "_sm_corrupt_json"
CONTEXTS_JSON_SCHEMA = (
    f"struct<data: array<struct<schema: string, data: string>>, {CORRUPT}: string>"
)
UNSTRUCT_JSON_SCHEMA = f"struct<data: struct<schema: string, data: string>, {CORRUPT}: string>"
# Strict JSON, as Python's json module (the SDK's) reads it: no single-quoted strings.
JSON_OPTIONS = f"map('columnNameOfCorruptRecord', '{CORRUPT}', 'allowSingleQuotes', 'false')"

_TYPE_WORDS = {INT: "integer", DOUBLE: "double", BOOL: "boolean", TSTAMP: "datetime"}
_SHOWN_CHARACTERS = 100

#: Entity schema URIs accepted per JSON kind (contexts, unstruct); None: any valid Iglu URI.
Accepted = Mapping[str, Optional[Sequence[str]]]

#: Why a valid URI missing from the accepted ones was refused, by where the list came from.
NOT_DISCOVERED = "was not found by the schema discovery scan"
NOT_GIVEN = "is not in the entity_schemas given to the reader"
#: The column of a bad row that says why its line was refused (``BAD_ROW_OUTPUT``).
MESSAGE = "message"


def quote(name: str) -> str:
    """A column name for SQL text."""
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def alias(expression: str, name: str) -> str:
    return f"{expression} AS {quote(name)}"


def json_name(name: str) -> str:
    return f"_json_{name}"


# -- fields and types -------------------------------------------------------------------


def split_fields(line: str = "value") -> str:
    """SQL: the fields of ``line``, every one kept (a trailing empty field too)."""
    return f"split({line}, '\\t', -1)"


# One copy of the array per row, shared as a common subexpression (see the module docstring).
FIELDS_ONCE = f"slice({FIELDS_ARRAY}, 1, {FIELD_COUNT})"


def field_raw(position: int, fields: str = FIELDS_ARRAY) -> str:
    """SQL: field ``position`` (0-based) of an array of fields, as read; ``NULL`` if missing."""
    # get() gives NULL past the end of a short line (element_at would fail under ANSI).
    return f"get({fields}, {position})"


def field_text(position: int, fields: str = FIELDS_ARRAY) -> str:
    """SQL: field ``position`` (0-based) of an array of fields; ``NULL`` when empty or missing."""
    # Not nullif() nor BETWEEN: Spark 4 rewrites those into extra projections, each one
    # more copy of every row.
    field = field_raw(position, fields)
    return f"if({field} = '', NULL, {field})"


def field_count() -> str:
    """SQL over the typed layer: the number of fields of the line."""
    return f"size({FIELDS_ARRAY})"


def typed_value(raw: str, kind: str) -> str:
    """SQL: the typed value of a raw string; ``NULL`` when it does not parse."""
    if kind == INT:
        return f"try_cast({raw} AS int)"
    if kind == DOUBLE:
        return f"try_cast({raw} AS double)"
    if kind == BOOL:
        return f"CASE {raw} WHEN '1' THEN true WHEN '0' THEN false END"
    if kind == TSTAMP:
        # 'Z' makes the value UTC whatever the session time zone, and timestamp_ltz an
        # instant whatever spark.sql.timestampType says. The shape check keeps out values
        # the cast would read as something else (a bare time of day means today, 1:2:3 is
        # 01:02:03, a final N would make "NZ", New Zealand's time), years of five or more
        # digits, which make even try_cast throw, and year 0, which Python cannot hold.
        last = f"substr(rtrim({raw}), -1)"
        return (
            f"CASE WHEN substr({raw}, 5, 1) = '-' AND substr({raw}, 11, 1) = ' ' "
            f"AND substr({raw}, 14, 1) = ':' AND substr({raw}, 17, 1) = ':' "
            f"AND octet_length({raw}) >= 19 AND octet_length({raw}) <= 29 "
            f"AND {last} >= '0' AND {last} <= '9' AND substr({raw}, 1, 4) != '0000' "
            f"THEN try_cast(concat({raw}, 'Z') AS timestamp_ltz) END"
        )
    raise ValueError(f"No typed value for kind {kind!r}")


def field_columns() -> list[str]:
    """The fields layer over ``value``: the line split once, as an array."""
    return [alias(split_fields(), FIELDS_ARRAY)]


def _parsed_json(name: str, kind: str) -> str:
    schema = CONTEXTS_JSON_SCHEMA if kind == CONTEXTS else UNSTRUCT_JSON_SCHEMA
    return f"from_json({field_text(INDEX[name])}, '{schema}', {JSON_OPTIONS})"


_NO_ENTITIES = "CAST(array() AS array<struct<schema: string, data: string>>)"


def _entity_columns(by_name: bool = False) -> list[str]:
    """The JSON fields parsed and the context entities: SQL over the fields layer, or
    (``by_name``) their names, over a layer that holds them."""
    parsed = {
        json_name(name): _parsed_json(name, kind)
        for name, kind in FIELDS
        if kind in (CONTEXTS, UNSTRUCT)
    }
    columns = {
        **parsed,
        ENTITIES: entities_over_fields(),
        ENTITY_SCHEMAS: entity_schemas_over_fields(),
        ENTITY_SCHEMAS_FROM_END: entity_schemas_from_end_over_fields(),
    }
    return [quote(name) if by_name else alias(text, name) for name, text in columns.items()]


def entity_columns(extra: Sequence[str] = ()) -> list[str]:
    """The entity layer over the fields layer, under a typed layer that parses entities
    again (``iglu=``): the array of fields, the JSON fields parsed, the entities.

    ``extra``: more columns, in SQL over the fields layer (``entity_schemas_over_fields``).
    """
    return [FIELDS_ARRAY, *_entity_columns(), *extra]


def typed_columns(extra: Sequence[str] = (), over_entities: bool = False) -> list[str]:
    """The typed layer over the fields layer, or over the entity layer (``over_entities``),
    whose parsed JSON and entities it passes on. Spark drops the columns a plan does not
    use.

    ``extra``: more columns, in SQL over the layer below (``entity_schemas_over_fields``
    over the fields layer).
    """
    columns = [FIELDS_ARRAY, alias("input_file_name()", SOURCE_FILE)]
    for position, (name, kind) in enumerate(FIELDS):
        text = field_text(position, FIELDS_ONCE)
        typed = text if kind in (STRING, CONTEXTS, UNSTRUCT) else typed_value(text, kind)
        columns.append(alias(typed, name))
    return [*columns, *_entity_columns(by_name=over_entities), *extra]


def entities_over_fields() -> str:
    """SQL over the fields layer: the entities of contexts, then of derived_contexts."""
    return (
        f"concat(coalesce({_parsed_json('contexts', CONTEXTS)}.data, {_NO_ENTITIES}), "
        f"coalesce({_parsed_json('derived_contexts', CONTEXTS)}.data, {_NO_ENTITIES}))"
    )


def entity_schemas_over_fields() -> str:
    """SQL over the fields layer: the schemas of ``entities_over_fields``. Written out
    rather than referenced by name, the JSON is still parsed once per line (common
    subexpression elimination)."""
    return f"{entities_over_fields()}.schema"


def entity_schemas_from_end_over_fields() -> str:
    """SQL over the fields layer: ``entity_schemas_over_fields`` in reverse order. One
    text for every column that uses it, so Spark reverses once per line."""
    return f"reverse({entity_schemas_over_fields()})"


# -- validity -----------------------------------------------------------------------------


def _schema_accepted(schema: str, uris: Sequence[str] | None) -> str:
    """SQL: the entity schema is one of ``uris`` (``None``: any valid Iglu URI)."""
    if uris is None:
        return f"coalesce({schema} RLIKE {literal(IGLU_URI_PATTERN_JAVA)}, false)"
    if not uris:
        return "false"
    return f"coalesce({schema} IN ({', '.join(literal(u) for u in uris)}), false)"


def _wellformed(name: str) -> str:
    # from_json stops after the first JSON value: text after it must be caught here
    # (trailing spaces are fine in JSON).
    return f"{quote(json_name(name))}.{CORRUPT} IS NULL AND rtrim({quote(name)}) LIKE '%}}'"


def field_ok(name: str, kind: str, accepted: Accepted) -> str:
    """SQL: the field is empty, or parses as its kind."""
    parsed = quote(json_name(name))
    if kind == CONTEXTS:
        valid = (
            f"{_wellformed(name)} AND {parsed}.data IS NOT NULL "
            f"AND forall({parsed}.data, e -> e.data IS NOT NULL "
            f"AND {_schema_accepted('e.schema', accepted[CONTEXTS])})"
        )
    elif kind == UNSTRUCT:
        valid = (
            f"{_wellformed(name)} AND {parsed}.data.data IS NOT NULL "
            f"AND {_schema_accepted(f'{parsed}.data.schema', accepted[UNSTRUCT])}"
        )
    else:
        return f"({field_raw(INDEX[name], FIELDS_ONCE)} = '' OR {quote(name)} IS NOT NULL)"
    return f"({quote(name)} IS NULL OR ({valid}))"


def held_above(ok: str) -> str:
    """``ok``, made to read the layer's ``_source_file``, which holds the filter on ``ok``
    above that layer (see the module docstring). The added check always holds and is never
    ``NULL``; unlike ``IS NOT NULL`` of a column that cannot be null, no optimizer rule
    folds it away."""
    return f"({ok}) AND octet_length({SOURCE_FILE}) >= 0"


def line_ok(accepted: Accepted) -> str:
    """SQL: the line is a good event. Never ``NULL``."""
    checks = [f"{field_count()} = {FIELD_COUNT}"]
    checks += [field_ok(name, kind, accepted) for name, kind in FIELDS if kind != STRING]
    return f"coalesce({' AND '.join(checks)}, false)"


# -- bad rows -------------------------------------------------------------------------------


def shown(value: str) -> str:
    """SQL: ``value`` cut to a readable length for a message."""
    return (
        f"CASE WHEN char_length({value}) > {_SHOWN_CHARACTERS} "
        f"THEN concat(substr({value}, 1, {_SHOWN_CHARACTERS}), '…') ELSE {value} END"
    )


def _schema_refused(schema: str, uris: Sequence[str] | None, unlisted: str) -> str:
    """SQL: why an entity schema was refused (evaluated on bad rows only)."""
    opening = literal("entity schema '")
    not_valid = literal("' is not a valid Iglu URI")
    not_found = literal(f"' {unlisted}")
    invalid = f"concat({opening}, coalesce({schema}, 'NULL'), {not_valid})"
    if uris is None:
        return invalid
    undiscovered = f"concat({opening}, {schema}, {not_found})"
    return (
        f"CASE WHEN coalesce({schema} RLIKE {literal(IGLU_URI_PATTERN_JAVA)}, false) "
        f"THEN {undiscovered} ELSE {invalid} END"
    )


def _json_problem(name: str, kind: str, accepted: Accepted, unlisted: str) -> str:
    """SQL: what is wrong with a refused JSON field (evaluated on bad rows only)."""
    parsed = quote(json_name(name))
    if kind == CONTEXTS:
        uris = accepted[CONTEXTS]
        refused = f"get(filter({parsed}.data, e -> NOT {_schema_accepted('e.schema', uris)}), 0)"
        return (
            f"CASE WHEN NOT ({_wellformed(name)}) THEN 'JSON: not valid JSON' "
            f"WHEN {parsed}.data IS NULL THEN 'contexts: no array of entities under \"data\"' "
            f"WHEN exists({parsed}.data, e -> e.data IS NULL) "
            "THEN 'contexts: an entity has no \"data\"' "
            f"ELSE concat('contexts: ', {_schema_refused(f'{refused}.schema', uris, unlisted)}) END"
        )
    uris = accepted[UNSTRUCT]
    refused = _schema_refused(f"{parsed}.data.schema", uris, unlisted)
    return (
        f"CASE WHEN NOT ({_wellformed(name)}) THEN 'JSON: not valid JSON' "
        f"WHEN {parsed}.data.data IS NULL "
        'THEN \'unstruct_event: no self-describing event with "data" under "data"\' '
        f"ELSE concat('unstruct_event: ', {refused}) END"
    )


def _field_checks(accepted: Accepted, unlisted: str) -> str:
    """SQL: for each typed field, in order, whether it is fine and what it should parse into."""
    checks = []
    for name, kind in FIELDS:
        if kind == STRING:
            continue
        if kind in (CONTEXTS, UNSTRUCT):
            into = _json_problem(name, kind, accepted, unlisted)
        else:
            into = literal(_TYPE_WORDS[kind])
        checks.append(f"named_struct('ok', {field_ok(name, kind, accepted)}, 'into', {into})")
    return f"array({', '.join(checks)})"


def _field_errors(accepted: Accepted, unlisted: str) -> str:
    """SQL: an ``InvalidValue`` error per field that does not parse, worded as Snowplow's
    loader_parsing_error.

    One lambda builds every message: written out per field, the bad-row plan (narrow
    enough for whole-stage code generation) outgrows the JVM's 64 KB method limit.
    """
    checked = [(name, INDEX[name]) for name, kind in FIELDS if kind != STRING]
    names = f"array({', '.join(literal(name) for name, _ in checked)})"
    positions = f"array({', '.join(str(position) for _, position in checked)})"
    value = f"get({FIELDS_ARRAY}, get({positions}, i))"
    key = f"get({names}, i)"
    # Quotes inside literals as \' : Spark 3.5 reads '' as two adjacent literals.
    before, middle, after = (
        literal("Cannot parse key '"),
        literal("' with value '"),
        literal("' into "),
    )
    message = f"concat({before}, {key}, {middle}, {shown(value)}, {after}, check.into)"
    error = (
        f"named_struct('type', 'InvalidValue', 'key', {key}, 'value', {value}, "
        f"'message', {message})"
    )
    return (
        f"array_compact(transform({_field_checks(accepted, unlisted)}, "
        f"(check, i) -> CASE WHEN NOT check.ok THEN {error} END))"
    )


def line_text() -> str:
    """SQL over the typed layer: the line as read."""
    return f"array_join({FIELDS_ARRAY}, '\\t')"


def bad_row_columns(accepted: Accepted, unlisted: str = NOT_DISCOVERED) -> list[str]:
    """Bad-row columns over the typed layer: source file, line, failure type, errors.

    ``unlisted`` says why a valid schema URI that is not accepted was refused.
    """
    count_error = (
        "array(named_struct('type', 'FieldNumberMismatch', 'key', CAST(NULL AS string), "
        "'value', CAST(NULL AS string), 'message', "
        f"concat('Expected {FIELD_COUNT} fields, received ', {field_count()}, ' fields')))"
    )
    wrong_count = f"{field_count()} != {FIELD_COUNT}"
    errors = (
        f"CASE WHEN {wrong_count} THEN {count_error} ELSE {_field_errors(accepted, unlisted)} END"
    )
    return [
        alias(SOURCE_FILE, "source_file"),
        alias(line_text(), "line"),
        alias(
            f"CASE WHEN {wrong_count} THEN 'FieldNumberMismatch' ELSE 'RowDecodingError' END",
            "failure_type",
        ),
        alias(errors, "errors"),
        run_label(),
    ]


#: The last bad-row projection: adds the message, orders the columns.
BAD_ROW_OUTPUT = [
    "source_file",
    "line",
    "failure_type",
    alias("concat(failure_type, ': ', array_join(errors.message, '; '))", MESSAGE),
    "errors",
    RUN,
]


def refused_as_not_given() -> str:
    """SQL over bad rows: the line was refused for a schema not in the ``entity_schemas``
    given to the reader. A read that may be widened holds such lines back for the batch to
    be read again with that schema: they are not final bad rows."""
    return f"instr({quote(MESSAGE)}, {literal(NOT_GIVEN)}) > 0"


# -- events -----------------------------------------------------------------------------


def run_label() -> str:
    """SQL: the run label (``YYYY-mm-DD-hh-MM-SS``) of the file's run folder, else NULL."""
    label = f"regexp_extract({SOURCE_FILE}, {literal(RUN_LABEL_PATTERN)}, 1)"
    return alias(f"if({label} = '', NULL, {label})", RUN)


def geo_location() -> str:
    """SQL: ``"lat,lon"`` from the raw latitude and longitude, as the Snowplow SDK builds it."""
    latitude = field_text(INDEX["geo_latitude"])
    longitude = field_text(INDEX["geo_longitude"])
    return alias(
        f"if({latitude} IS NULL OR {longitude} IS NULL, NULL, "
        f"concat({latitude}, ',', {longitude}))",
        GEO_LOCATION,
    )
