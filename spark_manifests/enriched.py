"""Snowplow enriched events (tab-separated, 131 fields) as typed Spark DataFrames.

``read_enriched`` reads one or several files or run folders, plain or gzip, and returns
an ``EnrichedRead``: the good events and the bad rows. Every line read ends up in
exactly one of them.

Events
------
The 131 fields in the order of the Snowplow Analytics SDK 0.2.3 (``ENRICHED_EVENT_FIELD_TYPES``),
typed: timestamps (``YYYY-MM-DD HH:MM:SS[.fff]``, read as UTC) as ``timestamp``, integers as
``int``, doubles as ``double``, booleans (``1``/``0``) as ``boolean``, the rest as ``string``.
An empty field is ``NULL``.

Notes
-----
Field 122 is named ``refr_device_tstamp``, as in the Snowplow SDK whose output this reader
matches (Snowplow's canonical table names it ``refr_dvce_tstamp``). Wherever a function here
takes a field name, both names are accepted; ``enriched_col`` does the same for users.

With ``shred=True`` (the default), ``contexts``, ``derived_contexts`` and ``unstruct_event``
are replaced, as the SDK does, by:

- ``contexts_<vendor>_<name>_<model>``: ``array<string>``, the ``data`` of every entity of
  that schema, from ``contexts`` then ``derived_contexts``, as JSON text;
- ``unstruct_event_<vendor>_<name>_<model>``: ``string``, the event's ``data`` as JSON text;
- ``geo_location``: ``"lat,lon"``.

Names follow the SDK: vendor dots become ``_``, a CamelCase name becomes snake_case, all
lower-case; all revisions of one model share a column. The columns present are those of the
schemas found in the data read. ``shredded_to_struct`` turns one of them into structs.
With ``shred=False`` the three JSON fields stay strings (still validated) and the layout is
``enriched_schema``. Both layouts end with ``run``: the run label
(``YYYY-mm-DD-hh-MM-SS``) of the file's ``run=``/``run-`` folder, ``NULL`` outside one.

Events layout (``shred=True``)::

    app_id ... true_tstamp   the 131 fields minus contexts, unstruct_event, derived_contexts
    geo_location             string
    contexts_*               array<string>, sorted by name
    unstruct_event_*         string, sorted by name
    run                      string

Bad rows
--------
A line with the wrong number of fields, a value that is not of its type, or a JSON field
that is not a valid self-describing JSON becomes a bad row, modelled on Snowplow's
``loader_parsing_error``::

    source_file   string   the file the line came from
    line          string   the line as read
    failure_type  string   FieldNumberMismatch or RowDecodingError
    message       string   "RowDecodingError: Cannot parse key 'txn_id' with value 'x' into
                           integer; ..." (values cut to 100 characters)
    errors        array<struct<type, key, value, message: string>>, one per failing field
    run           string

Differences from the Snowplow SDK 0.2.3
---------------------------------------
- Entities of one schema found in both ``contexts`` and ``derived_contexts`` are all kept,
  ``contexts`` first; the SDK keeps only the ``derived_contexts`` ones.
- Stricter: integers must fit 32 bits (Snowplow's ``INT`` columns); timestamps must read
  ``YYYY-MM-DD HH:MM:SS`` with an optional fraction, in years 1 to 9999 (the SDK passes any
  text through); an entity or unstructured event needs a non-null ``data``; ``contexts``
  must hold an array under ``data``.
- Integers and doubles are read as Spark casts them, not as Python's ``int``/``float``:
  ``1d``, ``0x1p3`` and surrounding control characters are accepted; ``1_000``, non-ASCII
  digits, Unicode spaces (a no-break space) around a number and ``-nan`` are not. Spaces
  around a timestamp are trimmed.
- An entity ``data`` that is a JSON string, not an object, is shredded as its bare text.
  Entity data is JSON text as Spark's parser writes it again: ``NaN``, ``Infinity``,
  ``+Infinity`` and ``INF`` become strings (the SDK refuses the last two), as does a number
  too large for a double (``1e400``, which the SDK reads as ``inf``). Spark's JSON parser
  refuses a number of more than 1,000 digits or a key of more than 50,000 characters (the
  line is a bad row), and reads nesting up to 1,000 levels deep (the SDK stops near 990).
- Text after the JSON value of a field is refused only when it does not end in ``}``.
- The discovery scan sorts URIs by the Snowplow wrapper before them: an ``unstruct_event``
  without its wrapper schema on a line with ``contexts``, or a field under the other
  field's wrapper, may have its entity taken for the other kind and the line made a bad row
  (the SDK reads the data under any outer schema).
- An entity whose ``schema`` key (not its value) is written with JSON escapes of plain
  letters (``"sch\\u0065ma"``) is not seen by the discovery scan: its line becomes a bad
  row naming the schema the scan did not find.
- Files are split into lines by Hadoop, which also ends a line at a bare ``\\r``.

How it reads
------------
Only Spark expressions run on the executors (no Python UDFs, no RDD maps), and every value
that may be malformed goes through ``try_cast`` or a guard: a bad value never fails the job,
with or without ANSI mode (Spark 3.5 and 4). With shredding on, one scan before the read
lists the Iglu schema URIs in the JSON fields: a regular expression over the raw lines, so
the column set is known before the plan is built. Lines whose JSON is not laid out as
Snowplow writes it (``schema`` before ``data``) are parsed for that list instead. A nested
self-describing JSON (inside an entity's data) may add an empty column of its own.

Notes
-----
Given ``entity_schemas`` (the schemas met by runs already processed), there is no scan: the
columns are those of the schemas given, and the pass that writes the events also observes
(a Spark ``Observation`` over the parsed JSON it builds anyway) the schemas the lines held
and their number; a line holding a schema not given is a bad row, and ``unknown_schemas``
names the schema, for a job to read the batch again with the wider list before its commit.

``events`` and ``bad_rows`` are two plans over the same files: writing both parses the input
twice (the bad rows skip the shredding and the schema scan). The schema scan also counts the
lines of each run (``EnrichedRead.lines_per_run``): when the events written are as many, there
are no bad rows, and ``ManifestedRunSource`` does not compute them.

Examples
--------
>>> run = "s3://acme/enriched/archive/run=2017-04-11-10-31-05/"
>>> read = read_enriched(spark, run)  # doctest: +SKIP
>>> read.events.select("event_id", "contexts_com_acme_product_1")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from . import _enriched_sql as sql
from ._enriched_fields import BOOL, CONTEXTS, DOUBLE, FIELDS, INT, TSTAMP, UNSTRUCT
from ._enriched_schemas import (
    EntitySchemas,
    ObservedRead,
    SchemasArgument,
    as_entity_schemas,
    discover,
    observe,
)
from ._entity_columns import contexts_column, unstruct_column
from ._iglu import CONTEXTS_PREFIX, UNSTRUCT_PREFIX, group_by_column
from ._iglu_plan import TypedPlan
from ._iglu_read import typed_bad_rows, typed_layers, typed_plan
from ._iglu_sql import event_columns as iglu_event_columns
from ._spark import local_paths_listed_serially
from .exceptions import RunInputError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

    from .iglu import IgluLike

__all__ = [
    "ENRICHED_EVENT_FIELDS",
    "FIELD_ALIASES",
    "EnrichedRead",
    "EntitySchemas",
    "enriched_col",
    "enriched_schema",
    "read_enriched",
    "shredded_to_struct",
]

_logger = logging.getLogger(__name__)

#: ``(name, kind)`` of the 131 fields, in file order. Kinds: ``string``, ``int``, ``double``,
#: ``bool``, ``tstamp``, ``contexts`` (a JSON list of entities), ``unstruct`` (a JSON event).
ENRICHED_EVENT_FIELDS: tuple[tuple[str, str], ...] = FIELDS

#: Other names users may know a field by -> the name used here.
FIELD_ALIASES = {"refr_dvce_tstamp": "refr_device_tstamp"}

PathOrPaths = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]


@dataclass(frozen=True)
class EnrichedRead:
    """What ``read_enriched`` returns: the good events and the bad rows.

    Both DataFrames carry the string column ``run``. Unpacks as ``events, bad_rows``.
    ``lines_per_run`` maps each run label to the number of lines read from its files
    (``None`` key: files outside a run folder), counted by the schema discovery scan;
    ``None`` when there was no scan (``shred=False``, or ``entity_schemas`` given). A source
    that sees as many good events as lines read knows there are no bad rows without
    computing them. ``entity_schemas``: the schemas shredded (``None`` without shredding).
    """

    events: DataFrame
    bad_rows: DataFrame
    lines_per_run: Mapping[str | None, int] | None = None
    entity_schemas: EntitySchemas | None = None
    observed: ObservedRead | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[DataFrame]:
        return iter((self.events, self.bad_rows))

    def schemas_met(self) -> EntitySchemas:
        """The valid entity schema URIs in the lines read (good and bad), by kind.

        Found by the discovery scan; with ``entity_schemas`` given, observed while the
        first action read ``events`` in full (a write): call it after that action, as it
        waits for one.

        Examples
        --------
        >>> read = read_enriched(spark, run, entity_schemas=known)  # doctest: +SKIP
        >>> read.events.write.parquet(out)  # doctest: +SKIP
        >>> known |= read.schemas_met()  # doctest: +SKIP
        """
        if self.observed is not None:
            return self.observed.schemas()
        if self.entity_schemas is None:
            raise ValueError("No schemas were looked for: the read was made with shred=False")
        return self.entity_schemas

    def unknown_schemas(self) -> EntitySchemas:
        """The schemas met that were not shredded (after the first action, as
        ``schemas_met``): their lines are bad rows. Empty (false) when none.

        A job that gave ``entity_schemas`` and finds some redoes the batch (before
        committing it) with ``entity_schemas=read.entity_schemas | read.unknown_schemas()``.
        """
        return self.schemas_met() - (self.entity_schemas or EntitySchemas())

    def lines_read(self) -> int:
        """The lines read, good and bad (after the first action, with ``entity_schemas``)."""
        if self.observed is not None:
            return self.observed.lines()
        if self.lines_per_run is None:
            raise ValueError("Lines are counted with shredding only")
        return sum(self.lines_per_run.values())


def _spark_type(kind: str) -> DataType:
    from pyspark.sql import types as T

    types = {
        INT: T.IntegerType(),
        DOUBLE: T.DoubleType(),
        BOOL: T.BooleanType(),
        TSTAMP: T.TimestampType(),
    }
    return types.get(kind, T.StringType())


def enriched_schema() -> StructType:
    """The 131 typed fields (JSON fields as strings): the events layout without shredding.

    Examples
    --------
    >>> enriched_schema()["dvce_ismobile"].dataType.simpleString()
    'boolean'
    >>> len(enriched_schema().fields)
    131
    """
    from pyspark.sql import types as T

    return T.StructType([T.StructField(name, _spark_type(kind)) for name, kind in FIELDS])


def enriched_col(name: str) -> Column:
    """The column of field ``name``, accepting the names in ``FIELD_ALIASES``.

    Examples
    --------
    >>> events.select(enriched_col("refr_dvce_tstamp"))  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    return F.col(FIELD_ALIASES.get(name, name))


def read_enriched(
    spark: SparkSession,
    paths: PathOrPaths,
    *,
    shred: bool = True,
    entity_schemas: SchemasArgument | None = None,
    iglu: IgluLike | None = None,
) -> EnrichedRead:
    """Read Snowplow enriched-event files into typed events and bad rows.

    Parameters
    ----------
    spark
        The session.
    paths
        A file or folder (a run folder holds the part files), or several; local paths,
        ``file://``, ``s3://`` or anything Spark reads. ``.gz`` files are decompressed.
    shred
        Replace the JSON fields by one column per schema (see the module notes).
    entity_schemas
        The schema URIs to shred, as an ``EntitySchemas`` or a mapping
        ``{"contexts": [...], "unstruct_event": [...]}`` (``derived_contexts`` share the
        ``contexts`` list): no discovery scan, one column per schema given. A line holding
        an entity of another schema is a bad row, and ``EnrichedRead.unknown_schemas``
        names the schema once the events were written. ``None``: the schemas are found by a
        scan of the lines first.
    iglu
        Type the shredded columns from the events' Iglu schemas, as Snowplow's loaders do:
        an ``IgluResolver``, a resolver configuration (file path or document) or a list of
        repositories (see ``spark_manifests.iglu``). ``None``: JSON text. Needs ``shred=True``.

    Returns
    -------
    EnrichedRead
        ``events`` and ``bad_rows``; together they hold every line read, once.

    Raises
    ------
    RunInputError
        A path does not exist or cannot be listed.
    ValueError
        ``entity_schemas`` holds something other than Iglu URIs.

    Examples
    --------
    >>> runs = ["archive/run=2017-04-11-10-31-05/", "archive/run=2017-04-11-11-31-05/"]
    >>> events, bad_rows = read_enriched(spark, runs)  # doctest: +SKIP
    >>> events.where("event = 'page_view'").count()  # doctest: +SKIP
    """
    if iglu is not None and not shred:
        raise ValueError("iglu= types the shredded columns: it needs shred=True")
    given = None if entity_schemas is None else as_entity_schemas(entity_schemas)
    locations = _locations(paths)
    text = _read_text(spark, locations)
    if not shred:
        not_shredded = {CONTEXTS: None, UNSTRUCT: None}
        typed, ok = typed_layers(text.selectExpr(*sql.field_columns()), sql.line_ok(not_shredded))
        events = typed.where(ok).selectExpr(*[sql.quote(n) for n, _ in FIELDS], sql.run_label())
        return EnrichedRead(events, _bad_rows(typed, ok, not_shredded))
    return _read_shredded(text, locations, given, iglu)


def _read_shredded(
    text: DataFrame,
    locations: list[str],
    given: EntitySchemas | None,
    iglu: IgluLike | None,
) -> EnrichedRead:
    """The shredded read: schemas found by a scan (``given`` is None) or given and observed,
    entities as JSON text or, with ``iglu``, typed from their Iglu schemas."""
    lines_per_run, observed = None, None
    if given is None:
        schemas, lines_per_run = discover(text)
    else:
        schemas = given
    contexts_columns = group_by_column(CONTEXTS_PREFIX, schemas.contexts)
    unstruct_columns = group_by_column(UNSTRUCT_PREFIX, schemas.unstruct_event)
    _logger.info(
        "%s %d context and %d unstructured-event schemas in %s",
        "Found" if given is None else "Given",
        len(contexts_columns),
        len(unstruct_columns),
        _describe(locations),
    )
    accepted = {CONTEXTS: sorted(schemas.contexts), UNSTRUCT: sorted(schemas.unstruct_event)}
    fields = text.selectExpr(*sql.field_columns())
    plan = None if iglu is None else typed_plan(iglu, contexts_columns, unstruct_columns)
    typed, ok = typed_layers(fields, sql.line_ok(accepted), plan)
    good_source = typed
    if given is not None:
        good_source, observed = observe(typed)
    events = good_source.where(ok).selectExpr(
        *_shredded_columns(contexts_columns, unstruct_columns, plan)
    )
    unlisted = sql.NOT_DISCOVERED if given is None else sql.NOT_GIVEN
    bad_rows = _bad_rows(typed, ok, accepted, unlisted, plan)
    return EnrichedRead(events, bad_rows, lines_per_run, schemas, observed)


def _bad_rows(
    typed: DataFrame,
    ok: str,
    accepted: sql.Accepted,
    unlisted: str = sql.NOT_DISCOVERED,
    plan: TypedPlan | None = None,
) -> DataFrame:
    bad = typed.where(f"NOT {ok}")
    columns = sql.bad_row_columns(accepted, unlisted)
    bad_rows = bad.selectExpr(*columns) if plan is None else typed_bad_rows(bad, columns, plan)
    return bad_rows.selectExpr(*sql.BAD_ROW_OUTPUT)


def _locations(paths: PathOrPaths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    locations = [os.fspath(path) for path in paths]
    if not locations:
        raise RunInputError("No input paths given: pass a file, a run folder or a list of them.")
    return locations


def _describe(locations: list[str]) -> str:
    """The paths for a log line: a batch may hold hundreds of part files."""
    if len(locations) <= 3:
        return ", ".join(locations)
    return f"{locations[0]} and {len(locations) - 1} more paths"


def _read_text(spark: SparkSession, locations: list[str]) -> DataFrame:
    from pyspark.errors import AnalysisException

    try:
        with local_paths_listed_serially(spark, locations):
            return spark.read.text(locations)
    except AnalysisException as exc:
        raise RunInputError(
            f"Cannot read enriched events from {', '.join(locations)}: {exc}"
        ) from exc


def _shredded_columns(
    contexts_columns: dict[str, tuple[str, ...]],
    unstruct_columns: dict[str, tuple[str, ...]],
    plan: TypedPlan | None = None,
) -> list[str]:
    plain = [sql.quote(name) for name, kind in FIELDS if kind not in (CONTEXTS, UNSTRUCT)]
    if plan is not None:  # iglu hook: typed columns instead of JSON text
        entities = iglu_event_columns(plan)
    else:
        entities = [
            *[contexts_column(name, uris) for name, uris in contexts_columns.items()],
            *[unstruct_column(name, uris) for name, uris in unstruct_columns.items()],
        ]
    return [*plain, sql.geo_location(), *entities, sql.run_label()]


def shredded_to_struct(
    df: DataFrame, column: str, schema: StructType | str | None = None
) -> DataFrame:
    """``df`` with one shredded column (JSON text) parsed into structs.

    A ``contexts_*`` column (``array<string>``) becomes ``array<struct>``, an
    ``unstruct_event_*`` column (``string``) becomes ``struct``; the column keeps its name
    and place. Text that does not fit ``schema`` gives ``NULL`` fields.

    Parameters
    ----------
    df
        Events from ``read_enriched``.
    column
        The shredded column.
    schema
        The struct of one data object (``StructType`` or a DDL string such as
        ``"sku string, price double"``). ``None``: inferred from all the column's values
        (one more scan). In a job's transform give it: inferred per batch, the types can
        differ between the partitions it writes (``1`` in one batch, ``1.5`` in another)
        and the output then no longer reads as one table.

    Examples
    --------
    >>> typed = shredded_to_struct(events, "contexts_com_acme_product_1",
    ...                            "sku string, price double")  # doctest: +SKIP
    >>> typed.select("contexts_com_acme_product_1.price")  # doctest: +SKIP
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    column = FIELD_ALIASES.get(column, column)
    if column not in df.columns:
        raise ValueError(f"No column {column!r}; shredded columns: {_shredded_names(df)}")
    data_type = df.schema[column].dataType
    is_list = isinstance(data_type, T.ArrayType)
    if not (is_list or isinstance(data_type, T.StringType)):
        raise ValueError(
            f"Column {column!r} is {data_type.simpleString()}, not JSON text "
            "(string or array<string>)"
        )
    if schema is None:
        schema = _infer_schema(df, column, is_list)
    if is_list:
        parsed = F.transform(F.col(column), lambda text: F.from_json(text, schema))
    else:
        parsed = F.from_json(F.col(column), schema)
    return df.withColumn(column, parsed)


def _shredded_names(df: DataFrame) -> list[str]:
    return [
        name
        for name in df.columns
        if name.startswith((CONTEXTS_PREFIX + "_", UNSTRUCT_PREFIX + "_"))
    ]


def _infer_schema(df: DataFrame, column: str, is_list: bool) -> StructType:
    """Spark's JSON schema inference over every value of the column, run in the JVM."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType, _parse_datatype_json_string

    values = df.select((F.explode(column) if is_list else F.col(column)).alias("value"))
    values = values.where(F.col("value").isNotNull())
    spark = df.sparkSession
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no JVM to call
        raise ValueError(f"Pass schema= to parse {column!r}: inference needs a classic session")
    # Dataset[String] -> DataFrameReader.json: Spark's own inference, no Python workers.
    as_strings = getattr(values._jdf, "as")(jvm.org.apache.spark.sql.Encoders.STRING())
    inferred = spark._jsparkSession.read().json(as_strings)
    parsed = _parse_datatype_json_string(inferred.schema().json())
    assert isinstance(parsed, StructType)
    return parsed
