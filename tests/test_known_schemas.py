"""The schemas a job met, kept in its state: a warm start reads without the discovery scan,
and a batch that meets a new schema is written again with it before its commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from spark_manifests import ManifestedRunSource, SQLiteRunManifest, StateStore, read_enriched
from spark_manifests import _counting as counting_module
from spark_manifests import enriched as enriched_module
from spark_manifests._known_schemas import KnownSchemas
from spark_manifests._locations import parse_location
from spark_manifests._snapshots import JobSnapshots
from spark_manifests.enriched import EntitySchemas
from spark_manifests.plugins import ReaderAdapter
from spark_manifests.retry import RetryPolicy
from tests.iglu_helpers import event_line, write_run

PRODUCT = "com.acme/product/jsonschema/1-0-0"
CART = "com.acme/cart/jsonschema/1-0-0"
CLICK = "com.acme/link_click/jsonschema/1-0-0"
RUN_A, RUN_B, RUN_C = "2021-06-01-00-00-00", "2021-06-01-01-00-00", "2021-06-01-02-00-00"
RUN_D = "2021-06-01-03-00-00"


def lines(prefix: str, entities: tuple[tuple[str, Any], ...], n: int = 3) -> list[str]:
    return [event_line(f"{prefix}-{i}", *entities, event=(CLICK, {"i": i})) for i in range(n)]


def write_run_a(archive: Path) -> None:
    write_run(archive, lines("a", ((PRODUCT, {"sku": "a"}),)), label=RUN_A)


def write_run_b_meeting_cart(archive: Path) -> None:
    """Run B: 3 lines with a context schema run A's lack (events b-0 to b-2), 1 without it
    (p-0: a read not given CART still has an event to write) and 1 bad line."""
    cart = ((PRODUCT, {"sku": "b"}), (CART, {"items": 2}))
    without = lines("p", ((PRODUCT, {"sku": "p"}),), n=1)
    write_run(archive, [*lines("b", cart), *without, "too\tfew\tfields"], label=RUN_B)


def make_source(spark: SparkSession, tmp_path: Path, **options: Any) -> ManifestedRunSource:
    return ManifestedRunSource(
        str(tmp_path / "archive"),
        output=str(tmp_path / "out"),
        manifest=SQLiteRunManifest(str(tmp_path / "m.sqlite")),
        state=StateStore(str(tmp_path / "state")),
        job_name="known",
        retry=RetryPolicy(max_retries=0),
        spark=spark,
        **options,
    )


def saved_schemas(tmp_path: Path) -> dict[str, list[str]]:
    return StateStore(str(tmp_path / "state")).get_or_create("known")["entity_schemas"]


def no_scan(*args: Any) -> Any:
    raise AssertionError("the discovery scan ran although the job knew its schemas")


def test_a_later_start_meets_a_new_schema_without_a_scan_and_loses_no_entity(
    spark: SparkSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    archive = tmp_path / "archive"
    write_run(archive, lines("a", ((PRODUCT, {"sku": "a"}),)), label=RUN_A)
    assert make_source(spark, tmp_path).run().runs_committed == 1  # cold: scanned
    assert saved_schemas(tmp_path) == {
        "contexts": [f"iglu:{PRODUCT}"],
        "unstruct_event": [f"iglu:{CLICK}"],
    }

    # Run B meets a schema the job never met, and holds one line of the wrong length.
    cart = ((PRODUCT, {"sku": "b"}), (CART, {"items": 2}))
    write_run(archive, [*lines("b", cart), "too\tfew\tfields"], label=RUN_B)
    monkeypatch.setattr(enriched_module, "discover", no_scan)
    calls: list[dict[str, Any]] = []
    reader_calls(monkeypatch, calls)
    summary = make_source(spark, tmp_path).run()

    assert (summary.runs_committed, summary.rows_in, summary.bad_rows) == (1, 4, 1)
    # Given the known schemas, then again with the new one before the commit.
    assert [sorted(call["entity_schemas"].contexts) for call in calls] == [
        [f"iglu:{PRODUCT}"],
        [f"iglu:{CART}", f"iglu:{PRODUCT}"],
    ]
    events = spark.read.option("mergeSchema", "true").parquet(str(tmp_path / "out" / "events"))
    assert events.count() == events.select("event_id").distinct().count() == 6
    entities = {
        row.event_id: (row.contexts_com_acme_product_1, row.contexts_com_acme_cart_1)
        for row in events.collect()
    }
    assert entities["a-0"] == (['{"sku":"a"}'], None)
    assert all(entities[f"b-{i}"] == (['{"sku":"b"}'], ['{"items":2}']) for i in range(3))
    bad = spark.read.parquet(str(tmp_path / "out" / "bad_rows")).collect()
    assert [(row.run, row.failure_type) for row in bad] == [(RUN_B, "FieldNumberMismatch")]
    assert saved_schemas(tmp_path)["contexts"] == [f"iglu:{CART}", f"iglu:{PRODUCT}"]
    entries = {e.run_id: e for e in SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()}
    assert sorted((e.rows_in, e.rows_out, e.bad_rows) for e in entries.values()) == [
        (3, 3, 0),
        (4, 3, 1),
    ]

    # A start whose batch holds known schemas only: no scan, no redo, no bad rows computed.
    write_run(archive, lines("c", ((CART, {"items": 1}),)), label=RUN_C)
    calls.clear()
    source = make_source(spark, tmp_path)
    bad_writes: list[object] = []
    monkeypatch.setattr(source.sink, "write_bad_rows", lambda *args: bad_writes.append(args))
    assert source.run().rows_in == 3
    assert len(calls) == 1
    assert bad_writes == []

    # A sink that keeps no bad rows: the lines observed read tell there are none, so
    # they are not counted by a Spark job of their own.
    write_run(archive, lines("d", ((CART, {"items": 4}),)), label=RUN_D)
    source = make_source(spark, tmp_path)
    source.sink.writes_bad_rows = False  # type: ignore[misc]
    monkeypatch.setattr(counting_module, "_count_per_run", no_count)
    summary = source.run()
    assert (summary.runs_committed, summary.rows_in, summary.bad_rows) == (1, 3, 0)
    # Every observation reported with the write: no Spark job of its own made it.
    assert "by a Spark job of their own" not in caplog.text


def no_count(*args: Any) -> Any:
    raise AssertionError("rows counted by a Spark job of their own")


def reader_calls(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    """Record the options the default reader is called with."""

    def recorded(spark: SparkSession, paths: list[str], **options: Any) -> Any:
        calls.append(options)
        return read_enriched(spark, paths, **options)

    monkeypatch.setattr("spark_manifests.plugins.default_reader", lambda: recorded)


def test_a_custom_reader_is_called_as_before_and_refuses_iglu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def custom(spark: SparkSession, paths: list[str]) -> Any:
        raise AssertionError("not called")

    assert ReaderAdapter(None, job_name="j").takes_entity_schemas
    assert ReaderAdapter(read_enriched, job_name="j").takes_entity_schemas
    assert not ReaderAdapter(custom, job_name="j").takes_entity_schemas
    monkeypatch.setenv("SPARK_MANIFESTS_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="iglu= types the columns of the default reader"):
        ManifestedRunSource(tmp_path, output=tmp_path / "out", reader=custom, iglu=[str(tmp_path)])
    assert not (tmp_path / "home").exists()  # refused before the manifest was opened


def test_the_schemas_outlive_the_run_that_saved_them_and_a_bad_entry_means_a_scan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(str(tmp_path / "state"))
    state = store.get_or_create("known")
    state.update(entity_schemas={"contexts": [f"iglu:{PRODUCT}"]}, summary={"runs": 1})
    store.complete(state)
    snapshots = JobSnapshots(
        store, job_name="known", archive=parse_location(tmp_path), lease_seconds=60, take_over=False
    )
    snapshots.open(None)
    assert "summary" not in snapshots.state  # a new run starts anew, but for its schemas
    known = KnownSchemas(snapshots)
    assert known.get() == EntitySchemas(contexts=frozenset({f"iglu:{PRODUCT}"}))
    known.remember(EntitySchemas(unstruct_event=frozenset({f"iglu:{CLICK}"})))
    assert snapshots.state["entity_schemas"] == {
        "contexts": [f"iglu:{PRODUCT}"],
        "unstruct_event": [f"iglu:{CLICK}"],
    }
    snapshots.keep("entity_schemas", {"contexts": ["not a uri"]})
    assert known.get() is None
    assert "cannot be read" in caplog.text
