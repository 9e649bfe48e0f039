"""DeltaSink: exactly-once batch commits into Delta Lake tables, read back with
``spark.read.format("delta")``. Skipped on a pyspark no Delta release supports (CI runs them
in a second venv with a supported one, see .ci/run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from spark_manifests._packages import table_format_package
from spark_manifests._table_sink import EVENTS, TableSink
from spark_manifests.delta_sink import DeltaSink
from spark_manifests.exceptions import OutputInUseError, TableFormatUnavailableError

from . import table_sinks


@pytest.fixture
def delta(spark: Any) -> Any:
    if "io.delta" not in (spark.conf.get("spark.jars.packages", "") or ""):
        pytest.skip("no Delta Lake release supports this pyspark (see docs/delta.md)")
    return spark


def read_delta(sink: TableSink, table: str, **options: str) -> Any:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    return spark.read.format("delta").options(**options).load(sink.table_name(table))


@pytest.mark.parametrize("scenario", table_sinks.ALL_SCENARIOS, ids=lambda f: f.__name__)
def test_delta_scenario(delta: Any, tmp_path: Path, scenario: Callable[..., None]) -> None:
    runs = table_sinks.sample_runs(tmp_path)
    scenario(delta, lambda: DeltaSink(tmp_path / "lake"), read_delta, runs)


def test_one_commit_per_batch_and_time_travel(delta: Any, tmp_path: Path) -> None:
    runs = table_sinks.sample_runs(tmp_path)
    sink = DeltaSink(tmp_path / "lake")
    for batch in (runs[:2], runs[2:3], runs[3:]):
        table_sinks.write(sink, delta, batch)
    history = delta.sql(f"DESCRIBE HISTORY delta.`{sink.table_name(EVENTS)}`").collect()
    assert len(history) == 3
    before = sink.version_before(runs[2])
    assert before == 0
    table_sinks.time_travel_excludes(
        read_delta(sink, EVENTS, versionAsOf=str(before)),
        runs[2],
        table_sinks.read_runs(delta, runs[:2])[0],
    )
    assert sink.version_before(runs[0]) is None


def test_prepare_refuses_another_manifests_tables(delta: Any, tmp_path: Path) -> None:
    DeltaSink(tmp_path / "lake").prepare(job_name="a", manifest="sqlite:///a.db")
    with pytest.raises(OutputInUseError, match=r"a\.db"):
        DeltaSink(tmp_path / "lake").prepare(job_name="b", manifest="sqlite:///b.db")


def test_unsupported_spark_is_one_clear_line() -> None:
    with pytest.raises(TableFormatUnavailableError) as raised:
        table_format_package("delta", "4.3.0", "2.13.17")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "Delta Lake has no release for Spark 4.3.0: it supports Spark 3.5, 4.0"
    )
    assert "spark_manifests[delta]" in message


@pytest.mark.parametrize(
    ("spark_version", "scala_version", "package"),
    [
        ("3.5.9", "2.12.18", "io.delta:delta-spark_2.12:3.3.2"),
        ("4.0.1", "2.13.16", "io.delta:delta-spark_4.0_2.13:4.4.0"),
        ("4.2.1", "2.13.17", "io.delta:delta-spark_4.2_2.13:4.4.0"),
    ],
)
def test_package_matches_spark(spark_version: str, scala_version: str, package: str) -> None:
    assert table_format_package("delta", spark_version, scala_version) == package
