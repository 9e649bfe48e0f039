"""An alternative tokeniser for ``read_enriched``: Spark's CSV reader instead of ``split``.

Private, off by default (``CSV_TOKENISER``): kept so that both designs can be measured side
by side (``benchmarks/bench_enriched_reader.py``); it is the slower one (see the docs'
performance page). It gives the typed layer the same ``_fields`` array as the split, so
every check, message and bad row stays the one of the default design.

Spark's CSV reader (``sep`` tab, PERMISSIVE, a corrupt-record column) splits each line at
its tabs and flags a line whose field count is not 131; a flagged line is split again from
its raw text (the corrupt-record column), so its bad row says how many fields it had.
What the CSV reader does differently from ``spark.read.text`` + ``split``, and how this
path makes up for it:

- It drops lines that hold only characters up to a space (an empty line, a line of tabs):
  those are read again by a text scan that keeps only them (one more pass over the files).
- ``quote=""`` makes the NUL character its quote: a field starting with one is changed
  (``\\0a`` is read as ``\\0\\0a``). The quote is a line feed here instead, which no line
  holds (Hadoop ends lines there).
- It decodes each line as UTF-8 into a Java string: bytes that are not UTF-8 become
  U+FFFD, where the text reader keeps them (a deviation, on this path only).
- More than ``_MAX_COLUMNS`` fields on a line fail the job (the parser's limit).

Field types are not given to the CSV reader: a line that is refused by a later check (a
timestamp, a boolean, the JSON) needs its raw text for its bad row, which typed numbers
lose (``1.50`` reads back as ``1.5``), and Java's ``Integer.parseInt`` takes digits that a
Spark cast refuses (``\\u0663``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _enriched_sql as sql
from ._enriched_fields import FIELDS
from ._spark import local_paths_listed_serially

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Private switch: read the lines with Spark's CSV reader (see the module notes).
CSV_TOKENISER = False

_CORRUPT_LINE = "_sm_corrupt_line"
_MAX_COLUMNS = 100_000
# What the CSV reader skips: a line of characters up to U+0020 only (Java's String.trim).
_SKIPPED_BY_CSV = r"^[\x00-\x20]*$"


def _column(position: int) -> str:
    return f"_c{position}"


def fields_layer(text: DataFrame, locations: list[str]) -> DataFrame:
    """The fields layer (``_fields``) of the lines: ``text`` split, or, with
    ``CSV_TOKENISER``, the lines of ``locations`` tokenised by Spark's CSV reader."""
    if not CSV_TOKENISER:
        return text.selectExpr(*sql.field_columns())
    with local_paths_listed_serially(text.sparkSession, locations):
        return csv_fields(text.sparkSession, locations)


def csv_fields(spark: SparkSession, locations: list[str]) -> DataFrame:
    """The fields layer (``_fields``) of the lines of ``locations``, tokenised by Spark's
    CSV reader, the lines it skips included."""
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            *[T.StructField(_column(i), T.StringType()) for i in range(len(FIELDS))],
            T.StructField(_CORRUPT_LINE, T.StringType()),
        ]
    )
    tokenised = spark.read.csv(
        locations,
        schema=schema,
        sep="\t",
        quote="\n",
        escape="\n",
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=_CORRUPT_LINE,
        maxColumns=_MAX_COLUMNS,
        enforceSchema=True,
        header=False,
    )
    # The CSV reader reads an empty field as NULL; split gives ''.
    columns = ", ".join(f"coalesce({_column(i)}, '')" for i in range(len(FIELDS)))
    fields = (
        f"CASE WHEN {_CORRUPT_LINE} IS NULL THEN array({columns}) "
        f"ELSE {sql.split_fields(_CORRUPT_LINE)} END"
    )
    skipped = spark.read.text(locations).where(f"value RLIKE {sql.literal(_SKIPPED_BY_CSV)}")
    return tokenised.selectExpr(sql.alias(fields, sql.FIELDS_ARRAY)).unionByName(
        skipped.selectExpr(*sql.field_columns())
    )
