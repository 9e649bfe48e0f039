"""JSON Schema -> column types, as Snowplow's loaders derive them (schema-ddl's Parquet
``Field``), and the merge of the versions of one model.

Rules (schema-ddl ``Field.build`` and ``Suggestion``):

- ``object`` (or ``["object", "null"]``) with ``properties`` -> struct, fields sorted by
  their column name; without ``properties`` -> JSON text;
- ``array`` -> array of the ``items`` type (JSON text when ``items`` is not one schema);
- ``string`` with ``format`` ``date-time`` -> timestamp, ``date`` -> date; other strings ->
  string; ``boolean`` -> boolean;
- ``integer`` -> int when ``minimum`` and ``maximum`` fit 32 bits, long when they fit 64
  bits or are not both given, else decimal(p, 0);
- ``number`` -> decimal(p, s) when ``multipleOf`` (a fraction) and both bounds give a
  precision (9, 18 or 38 digits) and scale, else double (an integer ``multipleOf`` makes it
  an integer);
- ``enum`` of numbers -> decimal, of strings -> string;
- anything else (a type union, ``oneOf``/``anyOf``, no type) -> JSON text;
- ``["x", "null"]`` is a nullable x. Field names: camelCase -> snake_case, characters other
  than letters, digits and ``_`` -> ``_``.

Columns are all nullable in Spark; a required field is checked when values are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ._enriched_sql import quote

STRUCT = "struct"
ARRAY = "array"
JSON = "json"

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_PRECISIONS = (9, 18, 38)


@dataclass(frozen=True)
class Node:
    """A column type. ``kind``: struct, array, json or a Spark atomic type name."""

    kind: str
    fields: tuple[Field, ...] = ()
    element: Node | None = None
    precision: int = 0
    scale: int = 0


@dataclass(frozen=True)
class Field:
    """A struct field: its JSON key, its column name, its type; ``required``: the schema
    requires a non-null value."""

    key: str
    name: str
    type: Node
    required: bool = False


def column_name(key: str) -> str:
    """A JSON key as the loaders name its column.

    Examples
    --------
    >>> column_name("navigationStart"), column_name("HTTPStatus"), column_name("a-b.c")
    ('navigation_start', 'http_status', 'a_b_c')
    """
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    name = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).replace("-", "_").lower()
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def node_of(schema: Any) -> Node:
    """The column type of a JSON schema (see the module notes).

    Examples
    --------
    >>> node_of({"type": "integer", "minimum": 0, "maximum": 100}).kind
    'int'
    >>> node_of({"type": ["string", "integer"]}).kind
    'json'
    """
    if not isinstance(schema, Mapping) or "oneOf" in schema or "anyOf" in schema:
        return Node(JSON)
    types = _types(schema)
    if types == {"object"}:
        return _object(schema)
    if types == {"array"}:
        items = schema.get("items")
        return Node(ARRAY, element=node_of(items) if isinstance(items, Mapping) else Node(JSON))
    if types == {"string"}:
        formats = {"date-time": "timestamp", "date": "date"}
        return Node(formats.get(str(schema.get("format")), "string"))
    if types == {"boolean"}:
        return Node("boolean")
    if types == {"integer"}:
        return _integer(schema)
    if types and types <= {"integer", "number"}:
        return _number(schema)
    if "enum" in schema and isinstance(schema["enum"], list):
        return _enum(schema["enum"])
    return Node(JSON)


def nullable(schema: Any) -> bool:
    """The schema's ``type`` allows null."""
    raw = schema.get("type") if isinstance(schema, Mapping) else None
    return raw == "null" or (isinstance(raw, list) and "null" in raw)


def _types(schema: Mapping[str, Any]) -> set[str]:
    raw = schema.get("type")
    listed = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    return {t for t in listed if t != "null"}


def _object(schema: Mapping[str, Any]) -> Node:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return Node(JSON)
    listed = schema.get("required")
    required: list[Any] = listed if isinstance(listed, list) else []
    fields = [
        Field(key, column_name(key), node_of(sub), key in required and not nullable(sub))
        for key, sub in properties.items()
    ]
    return Node(STRUCT, fields=tuple(sorted(fields, key=lambda f: f.name)))


def _integer(schema: Mapping[str, Any]) -> Node:
    low: Any = schema.get("minimum")
    high: Any = schema.get("maximum")
    if not (_is_number(low) and _is_number(high)):
        return Node("bigint")
    if _INT_RANGE[0] <= low and high <= _INT_RANGE[1]:
        return Node("int")
    if _LONG_RANGE[0] <= low and high <= _LONG_RANGE[1]:
        return Node("bigint")
    return _decimal(max(_integer_digits(low), _integer_digits(high)), 0)


def _number(schema: Mapping[str, Any]) -> Node:
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool):
        return _integer(schema)
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(step, Decimal) and _is_number(low) and _is_number(high):
        scale = _scale(step)
        digits = max(_integer_digits(low), _integer_digits(high)) + scale
        return _decimal(digits, scale)
    return Node("double")


def _enum(values: list[Any]) -> Node:
    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        scale = max(_scale(Decimal(str(v))) for v in present)
        digits = max(_integer_digits(v) for v in present) + scale
        return _decimal(digits, scale)
    if all(isinstance(v, str) for v in present):
        return Node("string")
    return Node(JSON)


def _decimal(digits: int, scale: int) -> Node:
    for precision in _PRECISIONS:
        if digits <= precision:
            return Node("decimal", precision=precision, scale=scale)
    return Node("double")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal, float)) and not isinstance(value, bool)


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _integer_digits(value: Any) -> int:
    """Digits before the point (Java's precision - scale), at least 1."""
    number = Decimal(str(value))
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    return max(len(digits) + exponent, 1)


# -- merging versions ---------------------------------------------------------------------


def merge(old: Node, new: Node) -> Node | None:
    """``old`` widened by a later version's ``new``; ``None`` when ``new`` breaks it (a
    field changes type, other than int to long or a decimal's precision). Fields keep their
    place; new ones are appended; a field either version does not require is not required.

    Examples
    --------
    >>> a = node_of({"type": "object", "properties": {"x": {"type": "string"}}})
    >>> b = node_of({"type": "object", "properties": {"x": {"type": "integer"}}})
    >>> merge(a, b) is None
    True
    """
    if old.kind == STRUCT and new.kind == STRUCT:
        added = {f.name: f for f in new.fields}
        fields = []
        for field in old.fields:
            other = added.pop(field.name, None)
            if other is None:
                fields.append(replace(field, required=False))
                continue
            merged = merge(field.type, other.type)
            if merged is None:
                return None
            fields.append(replace(field, type=merged, required=field.required and other.required))
        fields += [replace(f, required=False) for f in added.values()]
        return Node(STRUCT, fields=tuple(fields))
    if old.kind == ARRAY and new.kind == ARRAY:
        assert old.element is not None
        assert new.element is not None
        element = merge(old.element, new.element)
        return None if element is None else Node(ARRAY, element=element)
    return old if old == new else _widened(old, new)


def _widened(old: Node, new: Node) -> Node | None:
    """The wider of two atomic types that hold each other's values (schema-ddl's
    ``TypeWidening``, not a breaking change): int and long, decimals of one scale."""
    if {old.kind, new.kind} == {"int", "bigint"}:
        return Node("bigint")
    if old.kind == new.kind == "decimal" and old.scale == new.scale:
        return old if old.precision >= new.precision else new
    return None


# -- Spark DDL ----------------------------------------------------------------------------


def ddl(node: Node, *, json_keys: bool) -> str:
    """The Spark DDL of ``node``: to parse (``json_keys``: the JSON keys, decimals wider, see
    below) or as the column (the column names). JSON text is ``string`` (Spark's JSON parser
    keeps an object or array as its text)."""
    if node.kind == STRUCT:
        inner = ", ".join(
            f"{quote(f.key if json_keys else f.name)}: {ddl(f.type, json_keys=json_keys)}"
            for f in node.fields
        )
        return f"struct<{inner}>"
    if node.kind == ARRAY:
        assert node.element is not None
        return f"array<{ddl(node.element, json_keys=json_keys)}>"
    if node.kind == JSON:
        return "string"
    if node.kind == "decimal" and json_keys:
        # Parsed wider than the column, with the same digits before the point: Spark's parser
        # flags a value too large, but rounds one with too many decimals without a word;
        # the wider scale keeps those digits for the check that makes the line bad.
        return f"decimal(38,{node.scale + 38 - node.precision})"
    if node.kind == "decimal":
        return f"decimal({node.precision},{node.scale})"
    if node.kind == "timestamp":
        # An instant whatever spark.sql.timestampType says: as TIMESTAMP_NTZ, a date-time
        # with its offset (RFC 3339 requires one) would not parse and its line would be bad.
        return "timestamp_ltz"
    return node.kind


def describe(node: Node) -> str:
    """A short type word for messages."""
    words = {"json": "JSON", "bigint": "long", "timestamp": "timestamp"}
    return words.get(node.kind, ddl(node, json_keys=False))
