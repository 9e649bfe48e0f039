"""read_enriched(iglu=...): typed entity columns laid out as Snowplow's loaders lay them out,
recovery columns, and bad rows for values that break their schema or schemas not found."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_manifests.enriched import EnrichedRead, read_enriched
from tests.iglu_helpers import contexts, event_line, tsv, write_run, write_schema
from tests.test_iglu import IgluServerHandler, iglu_server  # noqa: F401 (fixture)

PRODUCT = "com.acme/product/jsonschema"
CLICK = "com.acme/linkClick/jsonschema"
PRODUCT_V1 = {
    "sku": {"type": "string"},
    "unitPrice": {"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 99999.99},
    "seenAt": {"type": ["string", "null"], "format": "date-time"},
    "quantity": {"type": "integer", "minimum": 0, "maximum": 1000},
}
PRODUCT_V2 = {  # 1-0-1 adds nested arrays of structs
    **PRODUCT_V1,
    "variants": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "colourName": {"type": "string"},
                "sizes": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"euSize": {"type": "integer"}}},
                },
            },
        },
    },
}
CLICK_V1 = {
    "targetUrl": {"type": "string"},
    "clickedOn": {"type": "string", "format": "date"},
    "anything": {"type": "object"},  # no properties: JSON text
    "either": {"type": ["string", "integer"]},  # a union: JSON text
}


def write_repository(root: Path) -> Path:
    write_schema(root, f"{PRODUCT}/1-0-0", PRODUCT_V1, required=["sku"])
    write_schema(root, f"{PRODUCT}/1-0-1", PRODUCT_V2, required=["sku"])
    write_schema(root, f"{PRODUCT}/1-0-2", {**PRODUCT_V2, "quantity": {"type": "string"}})
    write_schema(root, f"{CLICK}/1-0-0", CLICK_V1)
    return root


GOOD_LINES = [
    event_line(
        "good-1",
        (
            f"{PRODUCT}/1-0-0",
            {
                "sku": "A1",
                "unitPrice": 12.5,
                "seenAt": "2020-01-02T03:04:05.250Z",
                "quantity": 2,
                "notInSchema": 1,
            },
        ),
        event=(
            f"{CLICK}/1-0-0",
            {
                "targetUrl": "https://acme.test/",
                "clickedOn": "2020-02-29",
                "anything": {"k": [1, 2]},
                "either": 5,
            },
        ),
    ),
    event_line(
        "good-2",
        (
            f"{PRODUCT}/1-0-1",
            {
                "sku": "B2",
                "variants": [{"colourName": "red", "sizes": [{"euSize": 40}, {"euSize": 41}]}],
            },
        ),
        (f"{PRODUCT}/1-0-2", {"sku": "C3", "quantity": "lots"}),
    ),
    tsv(
        event_id="good-3",
        collector_tstamp="2017-04-11 10:31:05",
        contexts=contexts((f"{PRODUCT}/1-0-0", {"sku": "D4"})),
        derived_contexts=contexts((f"{PRODUCT}/1-0-1", {"sku": "E5", "seenAt": None})),
    ),
    # Two entities of the one version of a column: picked by filter, not by position.
    event_line(
        "good-4",
        (f"{PRODUCT}/1-0-2", {"sku": "J1", "quantity": "few"}),
        (f"{PRODUCT}/1-0-2", {"sku": "J2"}),
    ),
]
BAD_LINES = {
    "bad-type": event_line("bad-type", (f"{PRODUCT}/1-0-0", {"sku": "F6", "quantity": "two"})),
    "bad-null": event_line("bad-null", (f"{PRODUCT}/1-0-1", {"sku": None})),
    # More decimals than multipleOf 0.01 keeps: not rounded into the column.
    "bad-scale": event_line("bad-scale", (f"{PRODUCT}/1-0-0", {"sku": "H8", "unitPrice": 12.555})),
    "bad-nested": event_line(
        "bad-nested",
        (f"{PRODUCT}/1-0-1", {"sku": "G7", "variants": [{"sizes": [{"euSize": "XL"}]}]}),
    ),
    "bad-date": event_line("bad-date", event=(f"{CLICK}/1-0-0", {"clickedOn": "someday"})),
    "unresolved": event_line("unresolved", ("com.acme/unknown/jsonschema/1-0-0", {"a": 1})),
    "bad-second": event_line(
        "bad-second",
        (f"{PRODUCT}/1-0-2", {"sku": "K1"}),
        (f"{PRODUCT}/1-0-2", {"sku": "K2", "unitPrice": "cheap"}),
    ),
    "not-object": event_line(
        "not-object", (f"{PRODUCT}/1-0-1", {"sku": "L1"}), (f"{PRODUCT}/1-0-0", [1, 2])
    ),
}


@pytest.fixture(scope="module")
def typed_read(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> EnrichedRead:
    root = tmp_path_factory.mktemp("iglu")
    repository = write_repository(root / "repository")
    run = write_run(root / "archive", [*GOOD_LINES, *BAD_LINES.values()])
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    return read_enriched(spark, run, iglu=[dead, str(repository)])


def rows_by_id(read: EnrichedRead) -> dict[str, Any]:
    return {row.event_id: row for row in read.events.collect()}


def test_minor_versions_merge_into_one_typed_column(typed_read: EnrichedRead) -> None:
    schema = typed_read.events.schema
    product = schema["contexts_com_acme_product_1"].dataType
    assert isinstance(product, T.ArrayType)
    assert product.elementType.simpleString() == (
        "struct<_schema_version:string,quantity:int,seen_at:timestamp,sku:string,"
        "unit_price:decimal(9,2),variants:array<struct<colour_name:string,"
        "sizes:array<struct<eu_size:bigint>>>>>"
    )
    rows = rows_by_id(typed_read)
    first = rows["good-1"].contexts_com_acme_product_1[0]
    assert first.asDict() == {
        "_schema_version": "1-0-0",
        "quantity": 2,
        "seen_at": datetime(2020, 1, 2, 3, 4, 5, 250000),
        "sku": "A1",
        "unit_price": Decimal("12.50"),
        "variants": None,
    }
    variants = rows["good-2"].contexts_com_acme_product_1[0].variants
    assert [(v.colour_name, [s.eu_size for s in v.sizes]) for v in variants] == [("red", [40, 41])]


def test_contexts_and_derived_contexts_share_the_column(typed_read: EnrichedRead) -> None:
    entities = rows_by_id(typed_read)["good-3"].contexts_com_acme_product_1
    assert [(e.sku, e._schema_version) for e in entities] == [("D4", "1-0-0"), ("E5", "1-0-1")]


def test_a_breaking_version_goes_to_a_recovery_column(typed_read: EnrichedRead) -> None:
    recovered = [c for c in typed_read.events.columns if "_recovered_" in c]
    assert len(recovered) == 1
    assert recovered[0].startswith("contexts_com_acme_product_1_recovered_1_0_2_")
    element = typed_read.events.schema[recovered[0]].dataType.elementType
    assert element["quantity"].dataType == T.StringType()
    rows = rows_by_id(typed_read)
    assert [(e.sku, e.quantity) for e in rows["good-2"][recovered[0]]] == [("C3", "lots")]
    assert [(e.sku, e.quantity) for e in rows["good-4"][recovered[0]]] == [
        ("J1", "few"),
        ("J2", None),
    ]
    assert rows["good-1"][recovered[0]] is None


def test_unions_and_objects_without_properties_stay_json_text(typed_read: EnrichedRead) -> None:
    column = "unstruct_event_com_acme_link_click_1"
    assert typed_read.events.schema[column].dataType.simpleString() == (
        "struct<anything:string,clicked_on:date,either:string,target_url:string>"
    )
    event = rows_by_id(typed_read)["good-1"][column]
    assert json.loads(event.anything) == {"k": [1, 2]}
    assert event.either == "5"
    assert event.clicked_on == date(2020, 2, 29)
    assert event.target_url == "https://acme.test/"


def test_values_breaking_their_schema_are_bad_rows(typed_read: EnrichedRead) -> None:
    bad = {json_field(row.line, "event_id"): row for row in typed_read.bad_rows.collect()}
    assert set(bad) == set(BAD_LINES)
    assert {row.line for row in bad.values()} == set(BAD_LINES.values())
    assert {row.failure_type for row in bad.values()} == {"LoaderIgluError"}
    wrong = bad["bad-type"].errors[0]
    assert (wrong.type, wrong.key, wrong.value) == ("WrongType", "quantity", "two")
    assert f"iglu:{PRODUCT}/1-0-0" in wrong.message
    assert "is not int" in wrong.message
    missing = bad["bad-null"].errors[0]
    assert (missing.type, missing.key) == ("MissingInValue", "sku")
    scale = bad["bad-scale"].errors[0]
    assert (scale.type, scale.key, scale.value) == ("WrongType", "unitPrice", "12.555")
    assert "is not decimal(9,2)" in scale.message
    assert bad["bad-nested"].errors[0].key == "variants"
    assert bad["bad-date"].errors[0].key == "clickedOn"
    second = bad["bad-second"].errors
    assert [(e.type, e.key, e.value) for e in second] == [("WrongType", "unitPrice", "cheap")]
    not_object = bad["not-object"].errors
    assert [(e.type, e.key, e.value) for e in not_object] == [("WrongType", None, "[1,2]")]
    assert f"iglu:{PRODUCT}/1-0-0: data is not a JSON object" in not_object[0].message
    unresolved = bad["unresolved"].message
    assert "iglu:com.acme/unknown/jsonschema/1-0-0 not resolved" in unresolved
    assert "http://127.0.0.1:9: unreachable" in unresolved
    assert "repository: not found" in unresolved


def json_field(line: str, name: str) -> str:
    from tests.test_enriched import POSITION

    return line.split("\t")[POSITION[name]]


def test_good_plus_bad_is_every_line_read(typed_read: EnrichedRead) -> None:
    events = typed_read.events.select("event_id").collect()
    assert sorted(r.event_id for r in events) == ["good-1", "good-2", "good-3", "good-4"]
    assert len(events) + typed_read.bad_rows.count() == len(GOOD_LINES) + len(BAD_LINES)


def test_http_repository_end_to_end(
    spark: SparkSession,
    tmp_path: Path,
    iglu_server: tuple[str, Path],  # noqa: F811
) -> None:
    url, root = iglu_server
    write_repository(root)
    config = {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {
            "cacheSize": 500,
            "repositories": [
                {
                    "name": "server",
                    "priority": 0,
                    "vendorPrefixes": ["com.acme"],
                    "connection": {"http": {"uri": url, "apikey": IgluServerHandler.apikey}},
                },
            ],
        },
    }
    run = write_run(tmp_path / "archive", GOOD_LINES)
    read = read_enriched(spark, run, iglu=config)
    assert read.bad_rows.count() == 0
    ids = sorted(r.event_id for r in read.events.select("event_id").collect())
    assert ids == [json_field(line, "event_id") for line in GOOD_LINES]
    # The listing found 1-0-1 for a batch that met only 1-0-0: its fields are in the type.
    only_v1 = read_enriched(spark, write_run(tmp_path / "v1", GOOD_LINES[:1]), iglu=config)
    element = only_v1.events.schema["contexts_com_acme_product_1"].dataType.elementType
    assert "variants" in element.fieldNames()
    assert any(
        p.endswith("/schemas/com.acme/product/jsonschema/1") for p in IgluServerHandler.requests
    )


def test_without_iglu_nothing_changes(spark: SparkSession, tmp_path: Path) -> None:
    run = write_run(tmp_path / "archive", GOOD_LINES)
    read = read_enriched(spark, run)
    assert read.events.schema["contexts_com_acme_product_1"].dataType == T.ArrayType(T.StringType())
    assert read.events.schema["unstruct_event_com_acme_link_click_1"].dataType == T.StringType()
    with pytest.raises(ValueError, match="shred=True"):
        read_enriched(spark, run, shred=False, iglu=[str(tmp_path)])


def test_date_times_are_instants_whatever_the_session_timestamp_type(
    spark: SparkSession, tmp_path: Path
) -> None:
    repository = write_repository(tmp_path / "repository")
    run = write_run(tmp_path / "archive", GOOD_LINES[:1])
    before = spark.conf.get("spark.sql.timestampType", None)
    spark.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
    try:
        read = read_enriched(spark, run, iglu=[str(repository)])
        assert read.bad_rows.count() == 0
        [event] = read.events.collect()
    finally:
        if before is None:
            spark.conf.unset("spark.sql.timestampType")
        else:
            spark.conf.set("spark.sql.timestampType", before)
    entity = event.contexts_com_acme_product_1[0]
    assert entity.seen_at == datetime(2020, 1, 2, 3, 4, 5, 250000)


def test_given_schemas_with_iglu_observe_every_line_and_keep_both_reasons(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The warm read (entity_schemas given) typed from Iglu: the observation sees every line,
    a schema not given is named, and each bad row keeps its own reason."""
    from spark_manifests import EntitySchemas

    repository = write_repository(tmp_path / "repository")
    run = write_run(tmp_path / "archive", [*GOOD_LINES, *BAD_LINES.values()])
    products = {f"iglu:{PRODUCT}/{v}" for v in ("1-0-0", "1-0-1", "1-0-2")}
    given = EntitySchemas(frozenset({*products, "iglu:com.acme/unknown/jsonschema/1-0-0"}))
    read = read_enriched(spark, run, entity_schemas=given, iglu=[str(repository)])
    read.events.write.format("noop").mode("overwrite").save()
    assert read.lines_read() == len(GOOD_LINES) + len(BAD_LINES)
    assert read.unknown_schemas() == EntitySchemas(
        unstruct_event=frozenset({f"iglu:{CLICK}/1-0-0"})
    )
    events = read.events.select("event_id").collect()
    assert sorted(r.event_id for r in events) == ["good-2", "good-3", "good-4"]
    bad = {json_field(row.line, "event_id"): row for row in read.bad_rows.collect()}
    assert len(events) + len(bad) == read.lines_read()
    for event_id in ("good-1", "bad-date"):  # their click event is not in the list given
        assert bad[event_id].failure_type == "RowDecodingError"
        assert "is not in the entity_schemas given to the reader" in bad[event_id].message
    iglu_errors = ("bad-type", "bad-null", "bad-second", "unresolved")
    assert {bad[i].failure_type for i in iglu_errors} == {"LoaderIgluError"}
    assert "not resolved" in bad["unresolved"].message
