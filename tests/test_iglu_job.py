"""Iglu in a job: ``spark-manifests process --iglu`` writes typed entity columns, with one
resolver (and its cache) for the whole job."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_manifests import SQLiteRunManifest
from spark_manifests.cli._job import iglu_option
from spark_manifests.iglu import IgluResolver
from tests.commands import error_line, process
from tests.iglu_helpers import event_line, write_run, write_schema

PRODUCT = "com.acme/product/jsonschema/1-0-0"
RUNS = ("2021-06-01-00-00-00", "2021-06-01-01-00-00")


def test_process_with_iglu_writes_typed_columns_with_one_resolver(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "iglu"
    write_schema(repository, PRODUCT, {"sku": {"type": "string"}, "quantity": {"type": "integer"}})
    for n, label in enumerate(RUNS):
        entity = (PRODUCT, {"sku": f"s{n}", "quantity": n})
        write_run(
            tmp_path / "archive", [event_line(f"e{n}-{i}", entity) for i in range(2)], label=label
        )
    resolved: Counter[str] = Counter()
    resolve = IgluResolver._resolve

    def counted(self: IgluResolver, uri: str) -> Any:
        resolved[uri] += 1
        return resolve(self, uri)

    monkeypatch.setattr(IgluResolver, "_resolve", counted)
    # One run per batch: the second batch is warm (known schemas) and typed the same.
    options = ("--iglu", str(repository), "--max-runs-per-batch", "1")
    assert process(tmp_path, tmp_path / "archive", *options) == 0

    events = spark.read.parquet(str(tmp_path / "out" / "events"))
    column = events.schema["contexts_com_acme_product_1"].dataType
    assert isinstance(column, T.ArrayType)
    assert isinstance(column.elementType, T.StructType)
    assert events.count() == events.select("event_id").distinct().count() == 4
    typed = {
        (row.run, item.sku, item.quantity)
        for row in events.select("run", "contexts_com_acme_product_1").collect()
        for item in row.contexts_com_acme_product_1
    }
    assert typed == {(RUNS[0], "s0", 0), (RUNS[1], "s1", 1)}
    entries = list(SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries())
    assert sorted((e.rows_in, e.rows_out, e.bad_rows) for e in entries) == [(2, 2, 0)] * 2
    assert resolved == {f"iglu:{PRODUCT}": 1}  # fetched once for both batches


def test_iglu_values_are_a_resolver_config_or_repositories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert iglu_option(None) is None
    assert iglu_option(["resolver.JSON"]) == "resolver.JSON"
    assert iglu_option(["iglu", "https://iglu.acme.test"]) == ["iglu", "https://iglu.acme.test"]
    (tmp_path / "archive" / f"run={RUNS[0]}").mkdir(parents=True)
    assert process(tmp_path, tmp_path / "archive", "--iglu", "r.json", "--iglu", "iglu") == 2
    assert "give it alone" in error_line(capsys)
