"""The hook of ``spark_manifests.enriched.read_enriched`` for ``iglu=``: the typed layer
over the reader's plan, and its bad rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import _enriched_sql, _iglu_sql
from ._enriched_sql import SOURCE_FILE, held_above, quote
from ._iglu_plan import TypedPlan, plan_columns
from .iglu import IgluLike, IgluResolver

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_logger = logging.getLogger(__name__)


def typed_plan(
    iglu: IgluLike,
    contexts_columns: Mapping[str, Sequence[str]],
    unstruct_columns: Mapping[str, Sequence[str]],
) -> TypedPlan:
    """The typed columns of a read (schemas fetched here, on the driver)."""
    plan = plan_columns(IgluResolver.coerce(iglu), contexts_columns, unstruct_columns)
    _logger.info(
        "Iglu: %d typed columns, %d schemas not resolved", len(plan.columns), len(plan.unresolved)
    )
    return plan


def typed_layers(
    fields: DataFrame, ok: str, plan: TypedPlan | None = None
) -> tuple[DataFrame, str]:
    """The reader's typed layer over its fields layer, and the good-line condition ``ok``;
    with a ``plan``, the typed layer also finds each typed context column's entity
    (compiled there), and a layer over it parses the entities, which adds the Iglu checks
    to ``ok``."""
    if plan is None:
        return fields.selectExpr(*_enriched_sql.typed_columns()), held_above(ok)
    typed = fields.selectExpr(*_enriched_sql.typed_columns(_iglu_sql.typed_layer_columns(plan)))
    # input_file_name() again, as the typed layer below does: a non-deterministic layer keeps
    # Spark from pushing the good-line filter below it, where the entities would be parsed
    # once for the filter and once more for the columns (held_above keeps it in the plan).
    kept = [quote(name) for name in typed.columns if name != SOURCE_FILE]
    file_name = f"input_file_name() AS {SOURCE_FILE}"
    parsed = typed.selectExpr(*kept, file_name, *_iglu_sql.parsed_columns(plan))
    return parsed, held_above(f"{ok} AND {_iglu_sql.line_ok(plan)}")


def typed_bad_rows(bad: DataFrame, bad_row_columns: list[str], plan: TypedPlan) -> DataFrame:
    """The reader's bad-row columns, with a line that failed only on its entities made a
    ``LoaderIgluError`` naming each failing entity, field and value."""
    with_errors = bad.selectExpr(*bad_row_columns, _iglu_sql.errors_column(plan))
    return with_errors.selectExpr(*_iglu_sql.bad_row_columns())
