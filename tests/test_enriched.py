"""read_enriched: types and nulls, bad rows, parity with the Snowplow SDK, ANSI mode, gzip,
several runs per read, shredding on and off, shredded_to_struct."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from snowplow_analytics_sdk.event_transformer import ENRICHED_EVENT_FIELD_TYPES, transform
from snowplow_analytics_sdk.json_shredder import fix_schema
from snowplow_analytics_sdk.snowplow_event_transformation_exception import (
    SnowplowEventTransformationException,
)

from spark_manifests import RunInputError
from spark_manifests._iglu import classify_uri_sequences, group_by_column, shredded_column_name
from spark_manifests.enriched import (
    ENRICHED_EVENT_FIELDS,
    EnrichedRead,
    enriched_col,
    enriched_schema,
    read_enriched,
    shredded_to_struct,
)
from spark_manifests.samples import generate_enriched_lines, write_sample_archive

POSITION = {name: position for position, (name, _) in enumerate(ENRICHED_EVENT_FIELDS)}
RUN = "2017-04-11-10-31-05"
SNOWPLOW = "com.snowplowanalytics.snowplow"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def tsv(**values: str) -> str:
    """One enriched line: the given fields set, every other field empty."""
    fields = [""] * len(ENRICHED_EVENT_FIELDS)
    for name, value in values.items():
        fields[POSITION[name]] = value
    return "\t".join(fields)


def contexts(*entities: tuple[str, Any], separators: tuple[str, str] = (",", ":")) -> str:
    return json.dumps(
        {
            "schema": f"iglu:{SNOWPLOW}/contexts/jsonschema/1-0-1",
            "data": [{"schema": f"iglu:{schema}", "data": data} for schema, data in entities],
        },
        separators=separators,
        ensure_ascii=False,
    )


def unstruct(schema: str, data: Any) -> str:
    return json.dumps(
        {
            "schema": f"iglu:{SNOWPLOW}/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": f"iglu:{schema}", "data": data},
        },
        separators=(",", ":"),
    )


def write_run(
    root: Path, lines: Sequence[str], *, label: str = RUN, name: str = "part-00000"
) -> str:
    """A run folder ``run=<label>`` holding ``lines`` in one file; returns the folder."""
    folder = root / f"run={label}"
    folder.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if name.endswith(".gz"):
        data = gzip.compress(data)
    (folder / name).write_bytes(data)
    return str(folder)


@pytest.fixture
def ansi(spark: SparkSession) -> Iterator[SparkSession]:
    """The session with ANSI mode explicitly on (the Spark 4 default, off in Spark 3.5)."""
    before = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    yield spark
    spark.conf.set("spark.sql.ansi.enabled", before)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two runs, two part files each, 10% malformed lines of every kind."""
    return write_sample_archive(
        tmp_path_factory.mktemp("archive"),
        runs=2,
        events_per_run=220,
        files_per_run=2,
        bad_line_ratio=0.1,
        seed=11,
    )


@pytest.fixture(scope="module")
def archive_read(spark: SparkSession, archive: list[str]) -> Iterator[EnrichedRead]:
    """The archive read once; cached because several tests look at it."""
    read = read_enriched(spark, archive)
    cached = EnrichedRead(read.events.cache(), read.bad_rows.cache())
    yield cached
    cached.events.unpersist()
    cached.bad_rows.unpersist()


# -- schema -------------------------------------------------------------------------------


def test_fields_are_the_sdk_fields_in_order() -> None:
    kinds = {
        "convert_string": "string",
        "convert_int": "int",
        "convert_double": "double",
        "convert_bool": "bool",
        "convert_tstamp": "tstamp",
        "convert_contexts": "contexts",
        "convert_unstruct": "unstruct",
    }
    sdk = [(name, kinds[convert.__name__]) for name, convert in ENRICHED_EVENT_FIELD_TYPES]
    assert list(ENRICHED_EVENT_FIELDS) == sdk
    assert ENRICHED_EVENT_FIELDS[121][0] == "refr_device_tstamp"


def test_enriched_schema_types() -> None:
    schema = enriched_schema()
    expected = {
        "string": T.StringType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "bool": T.BooleanType(),
        "tstamp": T.TimestampType(),
        "contexts": T.StringType(),
        "unstruct": T.StringType(),
    }
    assert [(f.name, f.dataType) for f in schema.fields] == [
        (name, expected[kind]) for name, kind in ENRICHED_EVENT_FIELDS
    ]


# -- Iglu names and discovery (no Spark) ------------------------------------------------

SDK_NAMING_CASES = [
    "iglu:com.acme/product/jsonschema/1-0-0",
    "iglu:org.w3/PerformanceTiming/jsonschema/1-0-0",
    "iglu:com.acme-corp.Shop/AddToBasket_v2/jsonschema/12-3-4",
    "iglu:com.acme/ABTest/jsonschema/2-1-0",
    "iglu:com.acme/already_snake/jsonschema/3-0-0",
    "iglu:com.acme/HTTPRequest/jsonschema/1-0-0",
]


@pytest.mark.parametrize("uri", SDK_NAMING_CASES)
def test_shredded_names_are_the_sdk_names(uri: str) -> None:
    assert shredded_column_name("contexts", uri) == fix_schema("contexts", uri)
    assert shredded_column_name("unstruct_event", uri) == fix_schema("unstruct_event", uri)


def test_revisions_share_a_column_and_invalid_uris_have_none() -> None:
    columns = group_by_column(
        "contexts",
        [
            "iglu:com.acme/product/jsonschema/1-0-1",
            "iglu:com.acme/product/jsonschema/1-0-0",
            "iglu:com.acme/product/jsonschema/2-0-0",
            "iglu:com.acme/product/jsonschema/1.0.0",
        ],
    )
    assert columns == {
        "contexts_com_acme_product_1": (
            "iglu:com.acme/product/jsonschema/1-0-0",
            "iglu:com.acme/product/jsonschema/1-0-1",
        ),
        "contexts_com_acme_product_2": ("iglu:com.acme/product/jsonschema/2-0-0",),
    }


def test_uri_sequences_are_sorted_by_their_wrapper() -> None:
    contexts_wrapper = f"iglu:{SNOWPLOW}/contexts/jsonschema/1-0-1"
    unstruct_wrapper = f"iglu:{SNOWPLOW}/unstruct_event/jsonschema/1-0-0"
    a, b, c = (f"iglu:com.acme/{n}/jsonschema/1-0-0" for n in "abc")
    canonical = (contexts_wrapper, a, a, unstruct_wrapper, b, contexts_wrapper, c)
    entity_first = (a, contexts_wrapper)
    two_events = (unstruct_wrapper, a, b)
    no_event = (unstruct_wrapper, contexts_wrapper, c)
    found = classify_uri_sequences([canonical, (), entity_first, two_events, no_event])
    assert found.contexts == {a, c}
    assert found.unstruct == {b}
    assert found.unsorted == (entity_first, two_events, no_event)


# -- types and nulls ----------------------------------------------------------------------

TYPED_COLUMNS = [
    "event_id",
    "page_title",
    "txn_id",
    "page_urlport",
    "geo_latitude",
    "tr_total",
    "br_cookies",
    "br_features_pdf",
    "collector_tstamp",
    "dvce_created_tstamp",
    "refr_device_tstamp",
]


def test_types_and_nulls_for_every_kind(spark: SparkSession, tmp_path: Path) -> None:
    full = tsv(
        event_id="e1",
        page_title='Ünïcödé "title" \\ ☕',
        txn_id="-42",
        page_urlport="443",
        geo_latitude="52.5200",
        tr_total="1e3",
        br_cookies="1",
        br_features_pdf="0",
        collector_tstamp="2017-04-11 10:31:05.123",
        dvce_created_tstamp="2017-04-11 10:31:05",
        refr_device_tstamp="2017-04-11 23:59:59.9",
    )
    empty = tsv(event_id="e2")
    events = read_enriched(spark, write_run(tmp_path, [full, empty]), shred=False).events
    schema = T.StructType([enriched_schema()[name] for name in TYPED_COLUMNS])
    expected = spark.createDataFrame(
        [
            (
                "e1",
                'Ünïcödé "title" \\ ☕',
                -42,
                443,
                52.52,
                1000.0,
                True,
                False,
                datetime(2017, 4, 11, 10, 31, 5, 123000),
                datetime(2017, 4, 11, 10, 31, 5),
                datetime(2017, 4, 11, 23, 59, 59, 900000),
            ),
            ("e2", *([None] * (len(TYPED_COLUMNS) - 1))),
        ],
        schema,
    )
    assert_df_equality(
        events.select(*TYPED_COLUMNS), expected, ignore_row_order=True, ignore_nullable=True
    )
    empty_row = events.where("event_id = 'e2'").first().asDict()
    assert {name for name, value in empty_row.items() if value is not None} == {
        "event_id",
        "run",
    }


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("spark.sql.session.timeZone", "America/New_York"),
        ("spark.sql.timestampType", "TIMESTAMP_NTZ"),
    ],
)
def test_timestamps_are_utc_instants_whatever_the_session_settings(
    spark: SparkSession, tmp_path: Path, setting: str, value: str
) -> None:
    folder = write_run(tmp_path, [tsv(event_id="e", collector_tstamp="2017-04-11 10:31:05.5")])
    before = spark.conf.get(setting)
    spark.conf.set(setting, value)
    try:
        events = read_enriched(spark, folder).events
        assert events.schema["collector_tstamp"].dataType == T.TimestampType()
        micros = events.select(F.unix_micros("collector_tstamp")).first()[0]
    finally:
        spark.conf.set(setting, before)
    instant = datetime(2017, 4, 11, 10, 31, 5, 500000, tzinfo=timezone.utc)
    assert micros == (instant - EPOCH) // timedelta(microseconds=1)


def test_field_122_answers_to_both_names(spark: SparkSession, tmp_path: Path) -> None:
    line = tsv(event_id="e", refr_device_tstamp="2017-04-11 09:00:00")
    events = read_enriched(spark, write_run(tmp_path, [line])).events
    assert "refr_device_tstamp" in events.columns
    assert "refr_dvce_tstamp" not in events.columns
    value = events.select(enriched_col("refr_dvce_tstamp")).first()[0]
    assert value == datetime(2017, 4, 11, 9, 0)


# -- bad rows -----------------------------------------------------------------------------

GOOD_CONTEXTS = contexts(("com.acme/product/jsonschema/1-0-0", {"sku": "a"}))
BAD_LINES = {
    "too few fields": "\t".join(["x"] * 130),
    "too many fields": tsv(event_id="many") + "\textra",
    "empty line": "",
    "int with letters": tsv(event_id="i1", txn_id="12abc"),
    "int with decimals": tsv(event_id="i2", doc_width="1.5"),
    "int out of range": tsv(event_id="i3", page_urlport="99999999999"),
    "double": tsv(event_id="d1", geo_latitude="52,52"),
    "impossible date": tsv(event_id="t1", collector_tstamp="2017-02-30 10:00:00"),
    "time without date": tsv(event_id="t2", etl_tstamp="10:31:05"),
    "year of five digits": tsv(event_id="t3", derived_tstamp="+12017-04-11 10:31:05"),
    "words for a time": tsv(event_id="t4", true_tstamp="yesterday"),
    "boolean not 1/0": tsv(event_id="b1", br_cookies="true"),
    "truncated contexts": tsv(event_id="j1", contexts=GOOD_CONTEXTS[:-9]),
    "text after contexts": tsv(event_id="j2", contexts=GOOD_CONTEXTS + "x"),
    "contexts not an object": tsv(event_id="j3", contexts="[1, 2]"),
    "contexts without entities": tsv(event_id="j4", contexts='{"schema":"x","data":5}'),
    "entity without data": tsv(
        event_id="j5", contexts='{"data":[{"schema":"iglu:com.acme/a/jsonschema/1-0-0"}]}'
    ),
    "invalid schema URI": tsv(
        event_id="j6", contexts=contexts(("com.acme/product/jsonschema/1.0", {"sku": "b"}))
    ),
    "invalid unstruct JSON": tsv(event_id="u1", unstruct_event='{"schema":"iglu:x", "data":'),
    "unstruct without inner data": tsv(
        event_id="u2",
        unstruct_event=json.dumps({"data": {"schema": "iglu:com.acme/a/jsonschema/1-0-0"}}),
    ),
    "invalid derived contexts": tsv(event_id="j7", derived_contexts="{not json}"),
    "single-quoted JSON": tsv(event_id="j8", contexts=GOOD_CONTEXTS.replace('"', "'")),
    "URI ending in a carriage return": tsv(
        event_id="j9", contexts=contexts(("com.acme/product/jsonschema/1-0-0\r", {"sku": "c"}))
    ),
    "time not HH:MM:SS": tsv(event_id="t5", collector_tstamp="2017-04-11 1:2:3.0000"),
    # +"Z" would give "NZ": New Zealand's time, 12 hours off.
    "time ending in a letter": tsv(event_id="t6", collector_tstamp="2017-04-11 10:31:05 N"),
    "year 0": tsv(event_id="t7", dvce_created_tstamp="0000-01-01 00:00:00"),
}


@pytest.fixture(scope="module")
def bad_read(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> EnrichedRead:
    good = tsv(event_id="good", contexts=GOOD_CONTEXTS)
    folder = write_run(tmp_path_factory.mktemp("bad"), [good, *BAD_LINES.values()])
    return read_enriched(spark, folder)


def test_every_bad_line_is_a_bad_row_with_its_reason(bad_read: EnrichedRead) -> None:
    assert [row.event_id for row in bad_read.events.collect()] == ["good"]
    rows = {row.line: row for row in bad_read.bad_rows.collect()}
    assert set(rows) == set(BAD_LINES.values())
    expected_keys = {
        "int with letters": ("txn_id", "12abc", "integer"),
        "int with decimals": ("doc_width", "1.5", "integer"),
        "int out of range": ("page_urlport", "99999999999", "integer"),
        "double": ("geo_latitude", "52,52", "double"),
        "impossible date": ("collector_tstamp", "2017-02-30 10:00:00", "datetime"),
        "time without date": ("etl_tstamp", "10:31:05", "datetime"),
        "year of five digits": ("derived_tstamp", "+12017-04-11 10:31:05", "datetime"),
        "words for a time": ("true_tstamp", "yesterday", "datetime"),
        "time not HH:MM:SS": ("collector_tstamp", "2017-04-11 1:2:3.0000", "datetime"),
        "time ending in a letter": ("collector_tstamp", "2017-04-11 10:31:05 N", "datetime"),
        "year 0": ("dvce_created_tstamp", "0000-01-01 00:00:00", "datetime"),
        "boolean not 1/0": ("br_cookies", "true", "boolean"),
    }
    for cause, (key, value, into) in expected_keys.items():
        row = rows[BAD_LINES[cause]]
        assert row.failure_type == "RowDecodingError", cause
        assert [(e.type, e.key, e.value) for e in row.errors] == [("InvalidValue", key, value)]
        assert row.message == (
            f"RowDecodingError: Cannot parse key '{key}' with value '{value}' into {into}"
        )
    for cause, received in (("too few fields", 130), ("too many fields", 132), ("empty line", 1)):
        row = rows[BAD_LINES[cause]]
        assert row.failure_type == "FieldNumberMismatch"
        assert row.message == (
            f"FieldNumberMismatch: Expected 131 fields, received {received} fields"
        )
        assert row.errors[0].key is None


@pytest.mark.parametrize(
    ("cause", "key", "reason"),
    [
        ("truncated contexts", "contexts", "JSON: not valid JSON"),
        ("text after contexts", "contexts", "JSON: not valid JSON"),
        ("contexts not an object", "contexts", "JSON: not valid JSON"),
        ("contexts without entities", "contexts", "JSON: not valid JSON"),
        ("entity without data", "contexts", 'contexts: an entity has no "data"'),
        (
            "invalid schema URI",
            "contexts",
            "contexts: entity schema 'iglu:com.acme/product/jsonschema/1.0' is not a valid "
            "Iglu URI",
        ),
        ("invalid unstruct JSON", "unstruct_event", "JSON: not valid JSON"),
        (
            "unstruct without inner data",
            "unstruct_event",
            'unstruct_event: no self-describing event with "data" under "data"',
        ),
        ("invalid derived contexts", "derived_contexts", "JSON: not valid JSON"),
        ("single-quoted JSON", "contexts", "JSON: not valid JSON"),
        (
            "URI ending in a carriage return",
            "contexts",
            "contexts: entity schema 'iglu:com.acme/product/jsonschema/1-0-0\r' is not a "
            "valid Iglu URI",
        ),
    ],
)
def test_json_bad_rows_say_why(bad_read: EnrichedRead, cause: str, key: str, reason: str) -> None:
    line = BAD_LINES[cause]
    row = bad_read.bad_rows.where(F.col("line") == line).first()
    value = line.split("\t")[POSITION[key]]
    assert [(e.type, e.key, e.value) for e in row.errors] == [("InvalidValue", key, value)]
    assert row.errors[0].message.endswith(f"' into {reason}")
    assert row.message.startswith(f"RowDecodingError: Cannot parse key '{key}' with value '")


def test_message_names_every_failing_field_and_cuts_long_values(
    spark: SparkSession, tmp_path: Path
) -> None:
    long_value = "x" * 150
    line = tsv(
        event_id="e", txn_id="one", dvce_ismobile="maybe", page_title="fine", tr_tax=long_value
    )
    row = read_enriched(spark, write_run(tmp_path, [line])).bad_rows.first()
    assert [(e.key, e.value) for e in row.errors] == [
        ("txn_id", "one"),
        ("tr_tax", long_value),
        ("dvce_ismobile", "maybe"),
    ]
    assert row.message == (
        "RowDecodingError: Cannot parse key 'txn_id' with value 'one' into integer; "
        f"Cannot parse key 'tr_tax' with value '{'x' * 100}…' into double; "
        "Cannot parse key 'dvce_ismobile' with value 'maybe' into boolean"
    )


def test_bad_rows_layout(bad_read: EnrichedRead) -> None:
    error = T.StructType(
        [T.StructField(name, T.StringType()) for name in ("type", "key", "value", "message")]
    )
    expected = T.StructType(
        [
            T.StructField("source_file", T.StringType()),
            T.StructField("line", T.StringType()),
            T.StructField("failure_type", T.StringType()),
            T.StructField("message", T.StringType()),
            T.StructField("errors", T.ArrayType(error)),
            T.StructField("run", T.StringType()),
        ]
    )
    actual = bad_read.bad_rows.schema
    assert [(f.name, f.dataType.simpleString()) for f in actual.fields] == [
        (f.name, f.dataType.simpleString()) for f in expected.fields
    ]
    sources = {row.source_file for row in bad_read.bad_rows.select("source_file").collect()}
    assert len(sources) == 1
    assert sources.pop().endswith(f"/run={RUN}/part-00000")


def test_good_plus_bad_is_every_line_read(
    spark: SparkSession, archive: list[str], archive_read: EnrichedRead
) -> None:
    lines = spark.read.text(archive).count()
    good, bad = archive_read.events.count(), archive_read.bad_rows.count()
    assert good + bad == lines == 440
    assert 20 <= bad <= 70
    kinds = {row.failure_type for row in archive_read.bad_rows.collect()}
    assert kinds == {"FieldNumberMismatch", "RowDecodingError"}


# -- parity with the Snowplow Analytics SDK 0.2.3 ---------------------------------------


def sdk_view(sdk: dict[str, Any], tstamps: set[str]) -> dict[str, Any]:
    """The SDK's output with timestamps as epoch microseconds."""
    view = dict(sdk)
    for name in tstamps & set(view):
        instant = datetime.fromisoformat(view[name].replace("Z", "+00:00"))
        view[name] = (instant - EPOCH) // timedelta(microseconds=1)
    return view


def reader_view(row: Row) -> dict[str, Any]:
    """A row of ours as the SDK would give it: no NULLs, JSON text parsed, no run column."""
    view: dict[str, Any] = {}
    for name, value in row.asDict().items():
        if value is None or name == "run":
            continue
        if name.startswith("contexts_"):
            value = [json.loads(data) for data in value]
        elif name.startswith("unstruct_event_"):
            value = json.loads(value)
        view[name] = value
    return view


def edge_case_lines() -> list[str]:
    product = "com.acme/product/jsonschema/1-0-0"
    return [
        tsv(event_id="edge-minimal"),
        tsv(
            event_id="edge-unicode",
            page_title="日本語 ☕ «quotes» \"double\" 'single' back\\slash",
            geo_latitude="52.52",
            contexts=contexts(
                (product, {"name": 'Kettle "Turbo" \\ 2', "tags": ["a", "ü"]}),
                (product, {"name": "Teapot", "price": 1.5, "nested": {"deep": [1, None]}}),
                ("com.acme.web/PageSection/jsonschema/2-1-0", {"id": "\u00e9\u2028"}),
            ),
            derived_contexts=contexts((f"{SNOWPLOW}/ua_parser_context/jsonschema/1-0-0", {})),
            unstruct_event=unstruct(f"{SNOWPLOW}/link_click/jsonschema/1-0-1", {"a": "b"}),
        ),
        tsv(
            event_id="edge-empty-contexts",
            contexts=json.dumps({"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}),
            geo_latitude="1.5",
            geo_longitude="-0.25",
            collector_tstamp="2017-04-11 10:31:05",
        ),
        tsv(
            event_id="edge-spaces-in-json",
            contexts=contexts((product, {"sku": "s"}), separators=(", ", ": ")),
            unstruct_event=json.dumps(
                {
                    "schema": f"iglu:{SNOWPLOW}/unstruct_event/jsonschema/1-0-0",
                    "data": {"schema": "iglu:com.acme/Spaced/jsonschema/1-0-0", "data": {}},
                }
            ),
        ),
        tsv(
            event_id="edge-escaped-slashes-and-trailing-space",
            # Some JSON writers escape "/"; JSON allows spaces after the value.
            contexts=contexts(("com.acme/escaped/jsonschema/1-0-0", {"u": "a/b"})).replace(
                "/", "\\/"
            )
            + "  ",
        ),
        tsv(
            event_id="edge-escaped-schema",
            # JSON escapes of plain letters: the line is parsed for its schemas.
            contexts=contexts(("com.acme/escaped_key/jsonschema/1-0-0", {"e": 1}))
            .replace('"iglu:com.acme', '"\\u0069glu:com.acme')
            .replace('"schema":"iglu:com.snowplow', '"sch\\u0065ma":"iglu:com.snowplow'),
            derived_contexts=contexts(("com.acme/escaped_derived/jsonschema/1-0-0", {})).replace(
                '"iglu:com.acme', '"\\u0069glu:com.acme'
            ),
        ),
        tsv(
            event_id="edge-data-before-schema",
            unstruct_event=json.dumps(
                {
                    "data": {
                        "data": {"x": 1},
                        "schema": "iglu:com.acme/late_schema/jsonschema/3-0-0",
                    },
                    "schema": f"iglu:{SNOWPLOW}/unstruct_event/jsonschema/1-0-0",
                }
            ),
        ),
    ]


def test_parity_with_the_snowplow_sdk(spark: SparkSession, tmp_path: Path) -> None:
    lines = generate_enriched_lines(300, seed=5) + edge_case_lines()
    folder = write_run(tmp_path, lines)
    read = read_enriched(spark, folder)
    assert read.bad_rows.count() == 0
    tstamps = {name for name, kind in ENRICHED_EVENT_FIELDS if kind == "tstamp"}
    events = read.events.select(
        [F.unix_micros(c).alias(c) if c in tstamps else F.col(c) for c in read.events.columns]
    )
    ours = {row.event_id: reader_view(row) for row in events.collect()}
    assert len(ours) == len(lines)
    compared = 0
    for line in lines:
        sdk = sdk_view(transform(line), tstamps)
        assert ours[sdk["event_id"]] == sdk, sdk["event_id"]
        compared += 1
    assert compared == 307
    assert "contexts_com_acme_web_page_section_2" in events.columns
    assert "contexts_com_acme_escaped_key_1" in events.columns
    assert "contexts_com_acme_escaped_derived_1" in events.columns
    assert "contexts_com_acme_escaped_1" in events.columns
    assert "unstruct_event_com_acme_late_schema_3" in events.columns


def test_sdk_refuses_what_we_refuse(bad_read: EnrichedRead) -> None:
    """Each malformed line the SDK can judge is refused by the SDK too (parity on bad lines).

    Exceptions, by design: the SDK accepts any text as a timestamp, integers of any size,
    and trailing text after a JSON value is a JSON error in both.
    """
    sdk_accepts = {
        "int out of range",
        "impossible date",
        "time without date",
        "year of five digits",
        "words for a time",
        "time not HH:MM:SS",
        "time ending in a letter",
        "year 0",
    }
    refused = {row.line for row in bad_read.bad_rows.select("line").collect()}
    for cause, line in BAD_LINES.items():
        assert line in refused, cause
        if cause in sdk_accepts:
            transform(line)
            continue
        with pytest.raises((SnowplowEventTransformationException, KeyError, TypeError)):
            transform(line)


def test_entities_of_one_schema_in_contexts_and_derived_contexts_are_all_kept(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The SDK keeps only the derived_contexts' entities in that case; this reader keeps
    both lists, contexts first (documented deviation)."""
    schema = "com.acme/shared/jsonschema/1-0-0"
    line = tsv(
        event_id="both",
        contexts=contexts((schema, {"from": "contexts"})),
        derived_contexts=contexts((schema, {"from": "derived"})),
    )
    events = read_enriched(spark, write_run(tmp_path, [line])).events
    values = events.select("contexts_com_acme_shared_1").first()[0]
    assert [json.loads(v) for v in values] == [{"from": "contexts"}, {"from": "derived"}]
    assert transform(line)["contexts_com_acme_shared_1"] == [{"from": "derived"}]


def test_two_versions_of_a_column_around_other_entities_are_all_kept(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Versions A and B of one column at positions 1, 5 and 2, 4 of five entities: their
    positions from both ends add up as one single entity's would, yet all four are kept."""
    a, b = "com.acme/shared/jsonschema/1-0-0", "com.acme/shared/jsonschema/1-0-1"
    other = "com.acme/other/jsonschema/1-0-0"
    entities = [(a, {"n": 1}), (b, {"n": 2}), (other, {"n": 3}), (b, {"n": 4}), (a, {"n": 5})]
    line = tsv(event_id="around", contexts=contexts(*entities))
    values = read_enriched(spark, write_run(tmp_path, [line])).events.first()
    assert [json.loads(v) for v in values["contexts_com_acme_shared_1"]] == [
        {"n": 1},
        {"n": 2},
        {"n": 4},
        {"n": 5},
    ]
    assert [json.loads(v) for v in values["contexts_com_acme_other_1"]] == [{"n": 3}]


# -- ANSI mode, gzip, runs, shredding off -----------------------------------------------


def test_bad_values_never_fail_the_job_in_ansi_mode(ansi: SparkSession, tmp_path: Path) -> None:
    assert ansi.conf.get("spark.sql.ansi.enabled") == "true"
    hostile = [
        tsv(event_id="h1", txn_id="9" * 40, tr_total="NaN"),
        tsv(event_id="h2", collector_tstamp="9999-99-99 99:99:99.9999999999"),
        tsv(event_id="h3", etl_tstamp="-2017-04-11 10:31:05", geo_latitude="1e999"),
        "\t" * 30000,
    ]
    good = tsv(event_id="good", contexts=GOOD_CONTEXTS, tr_total="NaN", geo_latitude="1e999")
    folder = write_run(tmp_path, [good, *hostile, *BAD_LINES.values()])
    for shred in (True, False):
        read = read_enriched(ansi, folder, shred=shred)
        read.events.write.format("noop").mode("overwrite").save()
        read.bad_rows.write.format("noop").mode("overwrite").save()
        assert [row.event_id for row in read.events.collect()] == ["good"]
        assert read.bad_rows.count() == len(hostile) + len(BAD_LINES)


def test_gzip_files_read_like_plain_ones(spark: SparkSession, tmp_path: Path) -> None:
    options = {"runs": 1, "events_per_run": 40, "files_per_run": 2, "seed": 4}
    plain = write_sample_archive(tmp_path / "plain", **options)
    packed = write_sample_archive(tmp_path / "gzip", compress=True, **options)
    assert sorted(p.name for p in Path(packed[0]).glob("part-*")) == [
        "part-00000.gz",
        "part-00001.gz",
    ]
    expected = read_enriched(spark, plain).events
    actual = read_enriched(spark, packed).events
    assert actual.count() == 40
    assert_df_equality(actual, expected, ignore_row_order=True, allow_nan_equality=True)


def test_several_runs_in_one_read_keep_their_run(spark: SparkSession, tmp_path: Path) -> None:
    first = write_run(tmp_path, [tsv(event_id=f"a{i}") for i in range(3)], label=RUN)
    second = write_run(
        tmp_path, [tsv(event_id=f"b{i}") for i in range(2)] + ["bad"], label="2017-04-11-11-31-05"
    )
    dashed = tmp_path / "run-2017-04-12-00-00-00" / "atomic-events"
    dashed.mkdir(parents=True)
    (dashed / "part-00000").write_text(tsv(event_id="c0") + "\n")
    outside = tmp_path / "loose"
    outside.mkdir()
    (outside / "events.tsv").write_text(tsv(event_id="d0") + "\nbad\n")
    read = read_enriched(spark, [first, second, str(dashed), str(outside / "events.tsv")])
    runs = {row.event_id: row.run for row in read.events.select("event_id", "run").collect()}
    assert runs == {
        "a0": RUN,
        "a1": RUN,
        "a2": RUN,
        "b0": "2017-04-11-11-31-05",
        "b1": "2017-04-11-11-31-05",
        "c0": "2017-04-12-00-00-00",
        "d0": None,
    }
    bad_runs = sorted((row.run or "") for row in read.bad_rows.select("run").collect())
    assert bad_runs == ["", "2017-04-11-11-31-05"]
    assert read.lines_per_run == {
        RUN: 3,
        "2017-04-11-11-31-05": 3,
        "2017-04-12-00-00-00": 1,
        None: 2,
    }


def test_sample_archive_runs_and_counts(
    spark: SparkSession, archive: list[str], archive_read: EnrichedRead
) -> None:
    counts = (
        archive_read.events.groupBy("run")
        .count()
        .union(archive_read.bad_rows.groupBy("run").count())
        .groupBy("run")
        .agg(F.sum("count").alias("lines"))
    )
    expected = spark.createDataFrame(
        [(RUN, 220), ("2017-04-11-11-31-05", 220)], "run string, lines long"
    )
    assert_df_equality(counts, expected, ignore_row_order=True, ignore_nullable=True)


def test_shred_false_keeps_the_json_fields_as_text(
    spark: SparkSession, archive: list[str], archive_read: EnrichedRead
) -> None:
    plain = read_enriched(spark, archive, shred=False)
    assert plain.events.columns == [*enriched_schema().fieldNames(), "run"]
    assert plain.lines_per_run is None  # no schema scan, nothing counted
    assert plain.events.schema["contexts"].dataType == T.StringType()
    assert plain.events.count() == archive_read.events.count()
    assert_df_equality(
        plain.bad_rows.select("line", "message", "run"),
        archive_read.bad_rows.select("line", "message", "run"),
        ignore_row_order=True,
    )
    sample = plain.events.where("contexts IS NOT NULL").first()
    assert json.loads(sample.contexts)["data"]


def test_shredded_layout(archive_read: EnrichedRead) -> None:
    columns = archive_read.events.columns
    plain = [n for n, kind in ENRICHED_EVENT_FIELDS if kind not in ("contexts", "unstruct")]
    shredded = columns[len(plain) + 1 : -1]
    assert columns[: len(plain)] == plain
    assert columns[len(plain)] == "geo_location"
    assert columns[-1] == "run"
    assert shredded == [
        "contexts_com_acme_marketing_abtest_2",
        "contexts_com_acme_product_1",
        "contexts_com_google_analytics_cookies_1",
        "contexts_com_iab_snowplow_spiders_and_robots_1",
        "contexts_com_snowplowanalytics_snowplow_ua_parser_context_1",
        "contexts_com_snowplowanalytics_snowplow_web_page_1",
        "contexts_org_w3_performance_timing_1",
        "unstruct_event_com_acme_shop_add_to_basket_2",
        "unstruct_event_com_snowplowanalytics_snowplow_link_click_1",
        "unstruct_event_com_snowplowanalytics_snowplow_submit_form_1",
    ]
    schema = archive_read.events.schema
    assert schema["contexts_com_acme_product_1"].dataType == T.ArrayType(T.StringType())
    assert schema["unstruct_event_com_acme_shop_add_to_basket_2"].dataType == T.StringType()


# -- shredded_to_struct -------------------------------------------------------------------


def test_shredded_to_struct_with_a_schema(archive_read: EnrichedRead) -> None:
    column = "contexts_com_acme_product_1"
    typed = shredded_to_struct(archive_read.events, column, "sku string, price double")
    assert typed.columns == archive_read.events.columns
    assert typed.schema[column].dataType.simpleString() == (
        "array<struct<sku:string,price:double>>"
    )
    rows = typed.select(column).where(F.col(column).isNotNull()).collect()
    entities = [entity for row in rows for entity in row[0]]
    assert len(entities) > len(rows)  # some lines hold several products
    assert all(entity.sku.startswith("sku-") and entity.price > 0 for entity in entities)


def test_shredded_to_struct_infers_the_schema(archive_read: EnrichedRead) -> None:
    column = "unstruct_event_com_acme_shop_add_to_basket_2"
    typed = shredded_to_struct(archive_read.events, column)
    assert typed.schema[column].dataType.simpleString() == "struct<quantity:bigint,sku:string>"
    row = typed.where(F.col(column).isNotNull()).select(f"{column}.quantity").first()
    assert 1 <= row[0] <= 4


def test_shredded_to_struct_refuses_other_columns(archive_read: EnrichedRead) -> None:
    with pytest.raises(ValueError, match="not JSON text"):
        shredded_to_struct(archive_read.events, "txn_id", "a int")
    with pytest.raises(ValueError, match="No column 'contexts_nope'"):
        shredded_to_struct(archive_read.events, "contexts_nope", "a int")


# -- inputs -------------------------------------------------------------------------------


def test_a_single_file_path_is_read(spark: SparkSession, archive: list[str]) -> None:
    file = str(Path(archive[0]) / "part-00000")
    events = read_enriched(spark, file, shred=False).events
    assert events.select("run").distinct().collect() == [Row(run=RUN)]


def test_missing_path_is_a_run_input_error(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(RunInputError, match="Cannot read enriched events"):
        read_enriched(spark, str(tmp_path / "nope"))
    with pytest.raises(RunInputError, match="No input paths"):
        read_enriched(spark, [])


def test_many_local_files_are_listed_without_a_spark_job(spark: SparkSession, tmp_path) -> None:
    # Spark lists more than 32 paths with a job of one task per path: seconds, on local disk.
    folders = write_sample_archive(tmp_path, runs=12, events_per_run=30, files_per_run=3)
    files = sorted(str(f) for folder in folders for f in Path(folder).glob("part-*"))
    assert len(files) == 36
    context = spark.sparkContext
    key = "spark.sql.sources.parallelPartitionDiscovery.threshold"
    before = spark.conf.get(key)
    context.setJobGroup("listing", "read_enriched over many local files")
    try:
        read = read_enriched(spark, files, shred=False)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert context.statusTracker().getJobIdsForGroup("listing") == []
    assert spark.conf.get(key) == before
    assert read.events.count() == 12 * 30
