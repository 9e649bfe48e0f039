"""The SQL that takes a line's entities for a shredded column (see ``_enriched_sql``).

A column holds the context entities of one or more schemas (the minor versions of one
model). Most lines hold at most one: it is found by position, in compiled code; only
lines with more of them run Spark's higher-order ``filter`` and ``transform``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

from ._enriched_sql import (
    ENTITIES,
    ENTITY_SCHEMAS,
    ENTITY_SCHEMAS_FROM_END,
    alias,
    json_name,
    literal,
    quote,
)

#: SQL over the typed layer: the unstructured event (its schema and its data as JSON text).
UNSTRUCT_EVENT = f"{quote(json_name('unstruct_event'))}.data"


def _first_and_one(uris: Sequence[str], schemas: str, from_end: str) -> tuple[str, str]:
    """SQL: the position of the line's first entity of ``uris`` (0: none), and whether it
    is the only one, over the entity schemas in order and from the end."""
    firsts = [f"array_position({schemas}, {literal(uri)})" for uri in uris]
    lasts = [f"array_position({from_end}, {literal(uri)})" for uri in uris]
    first = firsts[0] if len(firsts) == 1 else f"greatest({', '.join(firsts)})"
    # A schema met once is as far from the start as its last match is from the end: its
    # two positions add up to the entity count plus one (absent schemas add 0).
    one = f"{' + '.join(firsts + lasts)} = size({schemas}) + 1"
    if len(firsts) > 1:  # and no two of the schemas (minor versions of one column)
        one += f" AND {' + '.join(f'CAST({p} > 0 AS int)' for p in firsts)} = 1"
    return first, one


def entity_position(uris: Sequence[str], schemas: str, from_end: str) -> str:
    """SQL: the position of the line's one entity of ``uris``; 0 when it has none, -1 when
    it has several."""
    first, one = _first_and_one(uris, schemas, from_end)
    return f"CASE WHEN {first} = 0 THEN 0 WHEN {one} THEN {first} ELSE -1 END"


def entities_of(
    uris: Sequence[str], each: Callable[[str], str] | None = None, at: str | None = None
) -> str:
    """SQL: ``each`` of the context entities whose schema is one of ``uris``, in order (by
    default their data, JSON text); ``NULL`` when there is none.

    Most lines hold at most one entity of these schemas: it is picked by position, which
    Spark compiles to Java. Only other lines run the interpreted ``filter`` (and
    ``transform``: higher-order functions are evaluated outside the generated code).
    ``at``: a column of the layer below holding the ``entity_position`` of ``uris``, for
    an ``each`` that Spark evaluates outside the generated code (``from_json``), which
    would otherwise search the schemas interpreted.
    """
    listed = ", ".join(literal(u) for u in uris)
    selected = f"filter({ENTITIES}, e -> e.schema IN ({listed}))"
    matching = f"{selected}.data" if each is None else f"transform({selected}, e -> {each('e')})"
    if at is None:
        position, one = _first_and_one(uris, ENTITY_SCHEMAS, ENTITY_SCHEMAS_FROM_END)
        none = f"{position} = 0"
    else:
        position, one, none = at, f"{at} > 0", f"{at} = 0"
    entity = f"get({ENTITIES}, {position} - 1)"
    single = f"array({entity}.data)" if each is None else f"array({each(entity)})"
    return f"CASE WHEN {none} THEN NULL WHEN {one} THEN {single} ELSE {matching} END"


def contexts_column(name: str, uris: Sequence[str]) -> str:
    """SQL: the data (JSON text) of the entities whose schema is one of ``uris``, in order;
    ``NULL`` when there is none."""
    return alias(entities_of(uris), name)


def unstruct_column(name: str, uris: Sequence[str]) -> str:
    """SQL: the data (JSON text) of the unstructured event if its schema is one of ``uris``."""
    listed = ", ".join(literal(u) for u in uris)
    return alias(
        f"CASE WHEN {UNSTRUCT_EVENT}.schema IN ({listed}) THEN {UNSTRUCT_EVENT}.data END", name
    )
