"""The Spark SQL of the typed entity columns (see ``spark_manifests._iglu_plan``).

In the reader's typed layer, over its entity layer (which holds ``_entities``, the schema
and data text of every context entity, and ``_json_unstruct_event``), a column per typed
column parses its entities with ``from_json`` against the column's JSON-keyed type, beside
a corrupt-record field: Spark's parser fills it when a value does not fit its type (a
string where a number is due, a date-time that does not parse). Then:

- a line is good when every entity parsed, every field its version requires is there, no
  decimal has more digits after the point than its column keeps, and no entity's schema went
  unresolved;
- events: each parsed entity as a struct of the column's type (a positional cast renames
  the JSON keys to the column names), contexts with ``_schema_version`` first, as the Lake
  Loader writes them;
- bad rows (evaluated on bad lines only): one error per failing field, found by parsing
  that field alone, naming the entity's schema, the field and its value.
"""

from __future__ import annotations

from functools import partial

from ._enriched_fields import CONTEXTS
from ._enriched_sql import (
    CORRUPT,
    ENTITY_SCHEMAS,
    JSON_OPTIONS,
    entity_schemas_from_end_over_fields,
    entity_schemas_over_fields,
    literal,
    quote,
    shown,
)
from ._entity_columns import UNSTRUCT_EVENT, entities_of, entity_position
from ._iglu_plan import EntityColumn, TypedPlan
from ._iglu_types import ARRAY, STRUCT, Field, Node, ddl, describe

ERRORS = "_iglu_errors"
SCHEMA_VERSION = "_schema_version"
LOADER_IGLU_ERROR = "LoaderIgluError"
_ERROR_TYPE = "struct<type: string, key: string, value: string, message: string>"
_NO_ERRORS = f"CAST(array() AS array<{_ERROR_TYPE}>)"


def parsed_name(position: int) -> str:
    return f"_iglu_{position}"


def _position_name(position: int) -> str:
    return f"_iglu_at_{position}"


def position_columns(plan: TypedPlan) -> list[str]:
    """Columns for the reader's entity layer, where Spark compiles them: the position of
    the line's one entity of each typed context column (``entity_position``)."""
    schemas, from_end = entity_schemas_over_fields(), entity_schemas_from_end_over_fields()
    return [
        f"{entity_position(column.uris, schemas, from_end)} AS {quote(_position_name(position))}"
        for position, column in enumerate(plan.columns)
        if column.kind == CONTEXTS
    ]


def _parse(node: Node, data: str) -> str:
    """SQL: ``data`` (JSON text) parsed into ``node``'s JSON-keyed struct + corrupt record."""
    if node.kind != STRUCT:
        return "CAST(NULL AS string)"
    parse_type = ddl(node, json_keys=True)[:-1] + f", {CORRUPT}: string>"
    return f"from_json({data}, {literal(parse_type)}, {JSON_OPTIONS})"


def _record(node: Node, schema: str, data: str) -> str:
    parsed = _parse(node, data)
    return f"named_struct('schema', {schema}, 'data', {data}, 'p', {parsed})"


def _entity_record(node: Node, entity: str) -> str:
    return _record(node, f"{entity}.schema", f"{entity}.data")


def parsed_columns(plan: TypedPlan) -> list[str]:
    """The typed entities parsed, one column per typed column, for the reader's typed
    layer over its entity layer with ``position_columns``."""
    columns = []
    for position, column in enumerate(plan.columns):
        listed = ", ".join(literal(uri) for uri in column.uris)
        if column.kind == CONTEXTS:
            each = partial(_entity_record, column.node)
            value = entities_of(column.uris, each, at=quote(_position_name(position)))
        else:
            record = _record(column.node, f"{UNSTRUCT_EVENT}.schema", f"{UNSTRUCT_EVENT}.data")
            value = f"CASE WHEN {UNSTRUCT_EVENT}.schema IN ({listed}) THEN {record} END"
        columns.append(f"{value} AS {parsed_name(position)}")
    return columns


# -- validity -------------------------------------------------------------------------------


def _required_check(column: EntityColumn, entity: str) -> str:
    """SQL: the fields the entity's version requires hold a value."""
    by_version = {
        uri: " AND ".join(f"{entity}.p.{quote(key)} IS NOT NULL" for key in keys) or "true"
        for uri, keys in column.required.items()
    }
    if len(set(by_version.values())) == 1:
        return next(iter(by_version.values()))
    cases = " ".join(f"WHEN {literal(uri)} THEN {check}" for uri, check in by_version.items())
    return f"CASE {entity}.schema {cases} ELSE true END"


def _fits(node: Node, value: str, depth: int = 0) -> str | None:
    """SQL: every decimal in ``value`` (parsed wider, see ``ddl``) has no more digits after
    the point than its column keeps; ``None`` when ``node`` holds no decimal."""
    if node.kind == "decimal":
        return f"({value} IS NULL OR {value} = round({value}, {node.scale}))"
    if node.kind == STRUCT:
        checks = [_fits(f.type, f"{value}.{quote(f.key)}", depth) for f in node.fields]
        return " AND ".join(check for check in checks if check) or None
    if node.kind == ARRAY:
        assert node.element is not None
        item = f"_item{depth}"
        inner = _fits(node.element, item, depth + 1)
        return f"coalesce(forall({value}, {item} -> {inner}), true)" if inner else None
    return None


def _entity_ok(column: EntityColumn, entity: str) -> str:
    if column.node.kind != STRUCT:
        return "true"
    fits = _fits(column.node, f"{entity}.p")
    return (
        f"({entity}.p IS NOT NULL AND {entity}.p.{CORRUPT} IS NULL "
        f"AND {_required_check(column, entity)}{f' AND {fits}' if fits else ''})"
    )


def _one_or_every(parsed: str, one: str, every: str, none: str = "NULL") -> str:
    """SQL over a context column of ``parsed_columns``: ``one`` (over its entity
    ``get(parsed, 0)``) when it holds one, as most lines do; ``every`` when it holds
    several (higher-order functions, which Spark evaluates outside the generated code);
    ``none`` when the line has no entity of the column (``parsed`` is ``NULL``)."""
    return (
        f"CASE WHEN size({parsed}) = 1 THEN {one} "
        f"WHEN size({parsed}) > 1 THEN {every} ELSE {none} END"
    )


def _column_ok(column: EntityColumn, parsed: str) -> str:
    if column.kind == CONTEXTS:
        one = _entity_ok(column, f"get({parsed}, 0)")
        every = f"coalesce(forall({parsed}, x -> {_entity_ok(column, 'x')}), true)"
        return _one_or_every(parsed, one, every, none="true")
    return f"({parsed} IS NULL OR {_entity_ok(column, parsed)})"


def _met(uri: str) -> str:
    """SQL: the line holds an entity or event of schema ``uri``."""
    return (
        f"(array_contains({ENTITY_SCHEMAS}, {literal(uri)}) "
        f"OR coalesce({UNSTRUCT_EVENT}.schema = {literal(uri)}, false))"
    )


def line_ok(plan: TypedPlan) -> str:
    """SQL over the typed layer with ``parsed_columns``: every typed entity of the line
    fits its schema."""
    checks = [_column_ok(c, parsed_name(n)) for n, c in enumerate(plan.columns)]
    checks += [f"NOT {_met(uri)}" for uri in sorted(plan.unresolved)]
    return f"coalesce({' AND '.join(checks) or 'true'}, false)"


# -- events -----------------------------------------------------------------------------------


def _typed_struct(node: Node, parsed: str, version: str | None) -> str:
    """SQL: a parsed struct as the column's struct (JSON keys renamed by a positional cast)."""
    fields = [f for f in node.fields if version is None or f.name != SCHEMA_VERSION]
    pairs = [f"{literal(f.name)}, {parsed}.{quote(f.key)}" for f in fields]
    target = [f"{quote(f.name)}: {ddl(f.type, json_keys=False)}" for f in fields]
    if version is not None:
        pairs.insert(0, f"'{SCHEMA_VERSION}', {version}")
        target.insert(0, f"{SCHEMA_VERSION}: string")
    return f"CAST(named_struct({', '.join(pairs)}) AS struct<{', '.join(target)}>)"


def _typed_entity(node: Node, entity: str) -> str:
    """SQL: one parsed context entity as its column's element (``_schema_version`` first)."""
    if node.kind != STRUCT:
        return f"{entity}.data"
    return _typed_struct(node, f"{entity}.p", f"substring_index({entity}.schema, '/', -1)")


def event_columns(plan: TypedPlan) -> list[str]:
    """The typed columns of the events, over the good lines of the typed layer
    (``parsed_columns``)."""
    columns = []
    for position, column in enumerate(plan.columns):
        parsed = parsed_name(position)
        if column.kind == CONTEXTS:
            every = f"transform({parsed}, x -> {_typed_entity(column.node, 'x')})"
            one = f"array({_typed_entity(column.node, f'get({parsed}, 0)')})"
            value = _one_or_every(parsed, one, every)
        elif column.node.kind == STRUCT:
            typed = _typed_struct(column.node, f"{parsed}.p", None)
            value = f"CASE WHEN {parsed} IS NOT NULL THEN {typed} END"
        else:
            value = f"{parsed}.data"
        columns.append(f"{value} AS {quote(column.name)}")
    return columns


# -- bad rows -------------------------------------------------------------------------------


def _error(kind: str, key: str, value: str, message: str) -> str:
    return f"named_struct('type', '{kind}', 'key', {key}, 'value', {value}, 'message', {message})"


def _field_error(column: EntityColumn, field: Field, entity: str) -> str:
    """SQL: the error of one top-level field of an entity, or NULL."""
    alone_type = f"struct<{quote(field.key)}: {ddl(field.type, json_keys=True)}, {CORRUPT}: string>"
    alone = f"from_json({entity}.data, {literal(alone_type)}, {JSON_OPTIONS})"
    path = literal("$['" + field.key + "']") if "'" not in field.key else "NULL"
    value = f"get_json_object({entity}.data, {path})"
    key = literal(field.key)
    opening = f"concat('entity ', {entity}.schema, ': field ', {literal(repr(field.key))}"
    wrong = f"{opening}, ' with value \\'', {shown(value)}, '\\' is not {describe(field.type)}')"
    missing = f"{opening}, ' is required but has no value')"
    needing = [uri for uri, keys in column.required.items() if field.key in keys]
    required = (
        f"{entity}.schema IN ({', '.join(literal(u) for u in needing)})" if needing else "false"
    )
    fits = _fits(field.type, f"{alone}.{quote(field.key)}")
    return (
        f"CASE WHEN {alone}.{CORRUPT} IS NOT NULL OR NOT ({fits or 'true'}) "
        f"THEN {_error('WrongType', key, value, wrong)} "
        f"WHEN {required} AND {alone}.{quote(field.key)} IS NULL "
        f"THEN {_error('MissingInValue', key, 'CAST(NULL AS string)', missing)} END"
    )


def _entity_errors(column: EntityColumn, entity: str) -> str:
    if column.node.kind != STRUCT:
        return _NO_ERRORS
    not_object = _error(
        "WrongType",
        "CAST(NULL AS string)",
        f"{entity}.data",
        f"concat('entity ', {entity}.schema, ': data is not a JSON object')",
    )
    fields = ", ".join(_field_error(column, f, entity) for f in column.node.fields)
    return (
        f"CASE WHEN {_entity_ok(column, entity)} THEN {_NO_ERRORS} "
        # An array or a number parses to a corrupt record, not NULL: without this, every
        # field would be reported as of the wrong type, with no value.
        f"WHEN {entity}.p IS NULL OR NOT startswith({entity}.data, '{{') "
        f"THEN array({not_object}) "
        f"ELSE array_compact(array({fields})) END"
    )


def _unresolved_errors(plan: TypedPlan) -> str:
    errors = [
        f"CASE WHEN {_met(uri)} THEN "
        f"{_error('ResolutionError', 'CAST(NULL AS string)', literal(uri), literal(why))} END"
        for uri, why in sorted(plan.unresolved.items())
    ]
    return f"array_compact(array({', '.join(errors)}))" if errors else _NO_ERRORS


def errors_column(plan: TypedPlan) -> str:
    """SQL over the typed layer with ``parsed_columns`` (bad lines only): the Iglu errors
    of the line."""
    parts = []
    for position, column in enumerate(plan.columns):
        parsed = parsed_name(position)
        if column.kind == CONTEXTS:
            errors = f"flatten(transform({parsed}, x -> {_entity_errors(column, 'x')}))"
            parts.append(f"coalesce({errors}, {_NO_ERRORS})")  # NULL: no entity
        else:
            parts.append(
                f"CASE WHEN {parsed} IS NULL THEN {_NO_ERRORS} "
                f"ELSE {_entity_errors(column, parsed)} END"
            )
    parts.append(_unresolved_errors(plan))
    return f"concat({', '.join(parts)}) AS {ERRORS}"


def bad_row_columns() -> list[str]:
    """Over the reader's bad-row columns + ``errors_column``: a line whose fields all
    parse fails on its entities: a ``LoaderIgluError`` with the Iglu errors."""
    iglu_only = "(failure_type = 'RowDecodingError' AND size(errors) = 0)"
    fallback = _error(
        "WrongType",
        "CAST(NULL AS string)",
        "CAST(NULL AS string)",
        "'an entity does not match its schema'",
    )
    errors = f"CASE WHEN size({ERRORS}) > 0 THEN {ERRORS} ELSE array({fallback}) END"
    return [
        "source_file",
        "line",
        f"CASE WHEN {iglu_only} THEN '{LOADER_IGLU_ERROR}' ELSE failure_type END AS failure_type",
        f"CASE WHEN {iglu_only} THEN {errors} ELSE errors END AS errors",
        "run",
    ]
