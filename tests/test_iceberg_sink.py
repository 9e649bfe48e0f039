"""IcebergSink: exactly-once batch commits into Iceberg tables (a Hadoop catalog on a
warehouse folder), read back with ``spark.read.table``. Skipped on a pyspark no Iceberg
release supports (CI runs them in a second venv with a supported one, see .ci/run)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

import pytest

from spark_manifests._packages import table_format_package
from spark_manifests._table_sink import EVENTS, TableSink
from spark_manifests.exceptions import OutputInUseError, TableFormatUnavailableError
from spark_manifests.iceberg_sink import IcebergSink

from . import table_sinks

_catalogs = itertools.count()


@pytest.fixture
def iceberg(spark: Any) -> Any:
    if "org.apache.iceberg" not in (spark.conf.get("spark.jars.packages", "") or ""):
        pytest.skip("no Iceberg release supports this pyspark (see docs/iceberg.md)")
    return spark


@pytest.fixture
def make_sink(iceberg: Any, tmp_path: Path) -> Callable[[], IcebergSink]:
    """Sinks on one warehouse of this test, under a catalog name of its own."""
    catalog = f"test_lake_{next(_catalogs)}"
    return lambda: IcebergSink(str(tmp_path / "warehouse"), catalog=catalog)


def read_iceberg(sink: TableSink, table: str, *, snapshot: int | None = None) -> Any:
    """The table, or with ``snapshot`` the table as of that snapshot."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if snapshot is None:
        return spark.read.table(sink.table_name(table))
    # SQL, as the docs say: Spark 3.5's read.table() drops a versionAsOf option.
    return spark.sql(f"SELECT * FROM {sink.table_name(table)} VERSION AS OF {snapshot}")


@pytest.mark.parametrize("scenario", table_sinks.ALL_SCENARIOS, ids=lambda f: f.__name__)
def test_iceberg_scenario(
    iceberg: Any,
    make_sink: Callable[[], IcebergSink],
    tmp_path: Path,
    scenario: Callable[..., None],
) -> None:
    runs = table_sinks.sample_runs(tmp_path)
    scenario(iceberg, make_sink, read_iceberg, runs)


def test_one_snapshot_per_batch_and_time_travel(
    iceberg: Any, make_sink: Callable[[], IcebergSink], tmp_path: Path
) -> None:
    runs = table_sinks.sample_runs(tmp_path)
    sink = make_sink()
    for batch in (runs[:2], runs[2:3], runs[3:]):
        table_sinks.write(sink, iceberg, batch)
    assert iceberg.read.table(f"{sink.table_name(EVENTS)}.snapshots").count() == 3
    before = sink.snapshot_before(runs[2])
    assert before is not None
    table_sinks.time_travel_excludes(
        read_iceberg(sink, EVENTS, snapshot=before),
        runs[2],
        table_sinks.read_runs(iceberg, runs[:2])[0],
    )
    assert sink.snapshot_before(runs[0]) is None


def test_prepare_refuses_another_manifests_tables(
    iceberg: Any, make_sink: Callable[[], IcebergSink], tmp_path: Path
) -> None:
    runs = table_sinks.sample_runs(tmp_path, runs=1)
    first = make_sink()
    first.prepare(job_name="a", manifest="sqlite:///a.db")
    table_sinks.write(first, iceberg, runs)
    make_sink().prepare(job_name="a", manifest="sqlite:///a.db")
    with pytest.raises(OutputInUseError, match=r"a\.db"):
        make_sink().prepare(job_name="b", manifest="sqlite:///b.db")


def test_a_manifest_path_with_quotes_is_recorded_as_it_is(
    iceberg: Any, make_sink: Callable[[], IcebergSink], tmp_path: Path
) -> None:
    runs = table_sinks.sample_runs(tmp_path, runs=1)
    manifest = "sqlite:///o'brien\\runs.db"
    table_sinks.write(make_sink(), iceberg, runs)
    make_sink().prepare(job_name="a", manifest=manifest)
    make_sink().prepare(job_name="a", manifest=manifest)  # the same manifest: accepted
    with pytest.raises(OutputInUseError, match="o'brien"):
        make_sink().prepare(job_name="b", manifest="sqlite:///b.db")


def test_unconfigured_catalog_is_one_clear_line(iceberg: Any) -> None:
    with pytest.raises(
        TableFormatUnavailableError, match="catalog 'glue_nowhere' is not configured"
    ):
        IcebergSink(catalog="glue_nowhere").batch_committed("job/1")


def test_unsupported_spark_is_one_clear_line() -> None:
    with pytest.raises(TableFormatUnavailableError) as raised:
        table_format_package("iceberg", "4.2.1", "2.13.17")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "Apache Iceberg has no release for Spark 4.2.1: it supports Spark 3.5, 4.0, 4.1;"
    )


@pytest.mark.parametrize(
    ("spark_version", "scala_version", "package"),
    [
        ("3.5.9", "2.12.18", "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.12.0"),
        ("4.0.1", "2.13.16", "org.apache.iceberg:iceberg-spark-runtime-4.0_2.13:1.11.0"),
        ("4.1.4", "2.13.17", "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0"),
    ],
)
def test_package_matches_spark(spark_version: str, scala_version: str, package: str) -> None:
    assert table_format_package("iceberg", spark_version, scala_version) == package


def test_a_catalog_the_session_configures_is_used_as_it_is(iceberg: Any, tmp_path: Path) -> None:
    """A catalog the session configures as another kind than the sink's Hadoop catalog (here
    by ``catalog-impl``, as Glue or REST would be) keeps its settings: the sink's warehouse
    is not forced on it."""
    catalog = f"users_{next(_catalogs)}"
    prefix = f"spark.sql.catalog.{catalog}"
    users_warehouse = tmp_path / "users_warehouse"
    iceberg.conf.set(prefix, "org.apache.iceberg.spark.SparkCatalog")
    iceberg.conf.set(f"{prefix}.catalog-impl", "org.apache.iceberg.hadoop.HadoopCatalog")
    iceberg.conf.set(f"{prefix}.warehouse", str(users_warehouse))
    sink = IcebergSink(str(tmp_path / "sinks_warehouse"), catalog=catalog)
    landed = table_sinks.write(sink, iceberg, table_sinks.sample_runs(tmp_path, runs=1))
    assert sink.batch_committed(landed)
    assert iceberg.conf.get(f"{prefix}.warehouse") == str(users_warehouse)
    assert iceberg.conf.get(f"{prefix}.type", None) is None
    assert (users_warehouse / "snowplow" / "events" / "metadata").is_dir()
    assert not (tmp_path / "sinks_warehouse").exists()
