"""read_enriched given its entity schemas (no discovery scan): the same events and bad rows
as with the scan, the schemas met observed during the write, a schema not given detected and
nothing lost; no job logs a code generation failure; a count splits each line once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from spark_manifests import EntitySchemas, read_enriched

from . import test_enriched
from .test_enriched import contexts, tsv, unstruct, write_run

PRODUCT = "com.acme/product/jsonschema/1-0-0"
NEW_CONTEXT = "com.acme/coupon/jsonschema/1-0-0"
CLICK = "com.acme/click/jsonschema/1-0-0"
NEW_EVENT = "com.acme/refund/jsonschema/1-0-0"
# The sample archive fixture of test_enriched: two runs of 220 lines, 10% of them bad.
archive = test_enriched.archive
KNOWN = EntitySchemas(frozenset({f"iglu:{PRODUCT}"}), frozenset({f"iglu:{CLICK}"}))


def write_all(read_events: object, tmp_path: Path, name: str) -> None:
    """Write the events as a job does (the observation reports after a full action)."""
    read_events.write.mode("overwrite").parquet(str(tmp_path / name))  # type: ignore[attr-defined]


def test_given_schemas_read_as_the_scan_does(
    spark: SparkSession, archive: list[str], tmp_path: Path
) -> None:
    cold = read_enriched(spark, archive)
    warm = read_enriched(spark, archive, entity_schemas=cold.schemas_met())
    write_all(warm.events, tmp_path, "events")
    assert_df_equality(warm.events, cold.events, ignore_row_order=True)
    assert_df_equality(warm.bad_rows, cold.bad_rows, ignore_row_order=True)
    assert warm.lines_per_run is None
    assert warm.schemas_met() == cold.schemas_met()
    assert cold.schemas_met().contexts
    assert cold.schemas_met().unstruct_event
    assert not warm.unknown_schemas()
    assert warm.lines_read() == cold.lines_read() == 440


def test_a_schema_not_given_is_detected_and_its_lines_are_bad_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    lines = [
        tsv(event_id="known", contexts=contexts((PRODUCT, {"sku": "a"}))),
        tsv(event_id="new-context", contexts=contexts((PRODUCT, {}), (NEW_CONTEXT, {"c": 1}))),
        tsv(event_id="new-derived", derived_contexts=contexts((NEW_CONTEXT, {"c": 2}))),
        tsv(event_id="new-event", unstruct_event=unstruct(NEW_EVENT, {"r": 3})),
        tsv(event_id="click", unstruct_event=unstruct(CLICK, {"x": 4})),
    ]
    run = write_run(tmp_path, lines)
    read = read_enriched(spark, run, entity_schemas=KNOWN.as_dict())
    write_all(read.events, tmp_path, "events")
    assert read.unknown_schemas() == EntitySchemas(
        frozenset({f"iglu:{NEW_CONTEXT}"}), frozenset({f"iglu:{NEW_EVENT}"})
    )
    assert read.schemas_met() == KNOWN | read.unknown_schemas()
    assert sorted(r.event_id for r in read.events.collect()) == ["click", "known"]
    messages = [r.message for r in read.bad_rows.collect()]
    assert len(messages) == 3
    assert all("is not in the entity_schemas given to the reader" in m for m in messages)
    # The job redoes the batch with the wider list: every event, every entity.
    wider = read_enriched(spark, run, entity_schemas=KNOWN | read.unknown_schemas())
    write_all(wider.events, tmp_path, "wider")
    assert not wider.unknown_schemas()
    assert wider.bad_rows.count() == 0
    coupons = {
        r.event_id: r.contexts_com_acme_coupon_1
        for r in wider.events.collect()
        if r.contexts_com_acme_coupon_1
    }
    assert coupons == {"new-context": ['{"c":1}'], "new-derived": ['{"c":2}']}
    refund = wider.events.where("event_id = 'new-event'").first()
    assert refund is not None
    assert refund.unstruct_event_com_acme_refund_1 == '{"r":3}'


def test_given_schemas_make_their_columns_even_when_no_line_has_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    run = write_run(tmp_path, [tsv(event_id="plain")])
    read = read_enriched(spark, run, entity_schemas=KNOWN)
    assert {"contexts_com_acme_product_1", "unstruct_event_com_acme_click_1"} <= set(
        read.events.columns
    )
    write_all(read.events, tmp_path, "events")
    assert read.schemas_met() == EntitySchemas()
    assert read.lines_read() == 1


@pytest.mark.parametrize(
    ("schemas", "error"),
    [
        ({"contexts": ["com.acme/product/jsonschema/1-0-0"]}, "not Iglu URIs"),
        ({"unstruct": [f"iglu:{CLICK}"]}, "Unknown entity_schemas keys"),
    ],
)
def test_entity_schemas_are_checked(
    spark: SparkSession, tmp_path: Path, schemas: dict[str, list[str]], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        read_enriched(spark, str(tmp_path), entity_schemas=schemas)


def test_entity_schemas_round_trip_through_json() -> None:
    both = EntitySchemas.from_dict(
        {"contexts": [f"iglu:{PRODUCT}"], "derived_contexts": [f"iglu:{NEW_CONTEXT}"]}
    )
    assert both.contexts == {f"iglu:{PRODUCT}", f"iglu:{NEW_CONTEXT}"}
    assert EntitySchemas.from_dict(both.as_dict()) == both


# -- code generation ----------------------------------------------------------------------

_CODEGEN_LOGGERS = (
    "org.apache.spark.sql.catalyst.expressions.codegen",
    "org.apache.spark.sql.execution.WholeStageCodegenExec",
)
# The loggers that write those failures (children of the loggers above).
_REPORTING_LOGGERS = (
    f"{_CODEGEN_LOGGERS[0]}.CodeGenerator",
    _CODEGEN_LOGGERS[1],
)
_FAILURES = ("failed to compile", "grows beyond 64 KB", "Whole-stage codegen disabled")


@contextmanager
def jvm_log(spark: SparkSession) -> Iterator[object]:
    """Spark's own log4j output (WARN and above for code generation) into a StringWriter."""
    jvm = spark._jvm  # type: ignore[attr-defined]
    log4j = jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    config = context.getConfiguration()
    writer = jvm.java.io.StringWriter()
    layout = log4j.core.layout.PatternLayout.createDefaultLayout()
    appender = log4j.core.appender.WriterAppender.createAppender(
        layout, None, writer, "spark_manifests_test", False, True
    )
    appender.start()
    config.addAppender(appender)
    config.getRootLogger().addAppender(appender, None, None)
    levels = {name: log4j.LogManager.getLogger(name).getLevel() for name in _CODEGEN_LOGGERS}
    for name in _CODEGEN_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.WARN)
    context.updateLoggers()
    try:
        yield writer
    finally:
        for name, level in levels.items():
            log4j.core.config.Configurator.setLevel(name, level)
        config.getRootLogger().removeAppender("spark_manifests_test")
        appender.stop()
        context.updateLoggers()


def test_no_job_logs_a_code_generation_failure(
    spark: SparkSession, archive: list[str], tmp_path: Path
) -> None:
    with jvm_log(spark) as log:
        # Proof that the capture works: a warning of each logger that reports a code
        # generation failure is seen (CodeGenerator logs "failed to compile" and "grows
        # beyond 64 KB", WholeStageCodegenExec "Whole-stage codegen disabled").
        log_manager = spark._jvm.org.apache.logging.log4j.LogManager  # type: ignore[attr-defined]
        for name in _REPORTING_LOGGERS:
            log_manager.getLogger(name).warn(f"capture check {name}")
        cold = read_enriched(spark, archive)
        warm = read_enriched(spark, archive, entity_schemas=cold.schemas_met())
        narrow = read_enriched(spark, archive, entity_schemas=EntitySchemas())
        for name, read in (("cold", cold), ("warm", warm), ("narrow", narrow)):
            read.events.write.partitionBy("run").parquet(str(tmp_path / name / "events"))
            read.bad_rows.write.partitionBy("run").parquet(str(tmp_path / name / "bad_rows"))
        assert warm.lines_read() == 440
    text = str(log.toString())  # type: ignore[attr-defined]
    for name in _REPORTING_LOGGERS:
        assert f"capture check {name}" in text
    found = [line for line in text.splitlines() if any(f in line for f in _FAILURES)]
    assert not found, "\n".join(found[:5])


def test_the_demo_and_a_typed_read_log_no_code_generation_failure(
    spark: SparkSession, tmp_path: Path
) -> None:
    from spark_manifests.cli import main
    from tests.test_iglu_read import BAD_LINES, GOOD_LINES, write_repository, write_run

    repository = write_repository(tmp_path / "repository")
    run = write_run(tmp_path / "typed", [*GOOD_LINES, *BAD_LINES.values()])
    where = ["--manifest", str(tmp_path / "m.sqlite"), "--state", str(tmp_path / "state")]
    with jvm_log(spark) as log:
        log_manager = spark._jvm.org.apache.logging.log4j.LogManager  # type: ignore[attr-defined]
        for name in _REPORTING_LOGGERS:
            log_manager.getLogger(name).warn(f"capture check {name}")
        demo = ["demo", "--dir", str(tmp_path / "demo"), "--runs", "2", "--events", "50", *where]
        assert main(demo) == 0
        typed = read_enriched(spark, run, iglu=[str(repository)])
        typed.events.write.parquet(str(tmp_path / "typed_out" / "events"))
        typed.bad_rows.write.parquet(str(tmp_path / "typed_out" / "bad_rows"))
    text = str(log.toString())  # type: ignore[attr-defined]
    for name in _REPORTING_LOGGERS:
        assert f"capture check {name}" in text
    found = [line for line in text.splitlines() if any(f in line for f in _FAILURES)]
    assert not found, "\n".join(found[:5])


def _splits_per_line(frame: DataFrame) -> int:
    """How many times the optimized plan of ``frame`` splits a line into its fields."""
    return str(frame._jdf.queryExecution().optimizedPlan().toString()).count("split(")


def _parses_of_parsed_json(frame: DataFrame) -> int:
    """How many ``from_json`` in the optimized plan of ``frame`` read the output of another
    ``from_json`` written out in their input: Spark would evaluate that input again,
    interpreted, a second parse of the line's JSON."""
    plan = str(frame._jdf.queryExecution().optimizedPlan().toString())
    nested, opened_by_parse = 0, []
    position = 0
    while position < len(plan):
        if plan.startswith("from_json(", position):
            nested += any(opened_by_parse)
            opened_by_parse.append(True)
            position += len("from_json(")
            continue
        if plan[position] == "(":
            opened_by_parse.append(False)
        elif plan[position] == ")" and opened_by_parse:
            opened_by_parse.pop()
        position += 1
    return nested


def test_a_typed_read_parses_each_entity_from_a_column_of_the_layer_below(
    spark: SparkSession, tmp_path: Path
) -> None:
    # The typed entities' from_json must read the entities as a column of the entity layer
    # under the typed layer; merged into one layer, each entity's parse would parse its
    # contexts field again, interpreted.
    from tests.test_iglu_read import BAD_LINES, GOOD_LINES, write_repository, write_run

    repository = write_repository(tmp_path / "repository")
    run = write_run(tmp_path / "typed", [*GOOD_LINES, *BAD_LINES.values()])
    read = read_enriched(spark, run, iglu=[str(repository)])
    events, bad_rows = read.events, read.bad_rows
    frames = [events, events.groupBy().count(), events.select("event_id"), bad_rows]
    assert "from_json(" in str(events._jdf.queryExecution().optimizedPlan().toString())
    for frame in frames:
        assert _parses_of_parsed_json(frame) == 0, frame
    merged = spark.createDataFrame([('{"data": [{"schema": "s", "data": "{}"}]}',)], ["value"])
    parsed = "from_json(value, 'struct<data: array<struct<schema: string, data: string>>>')"
    both = merged.selectExpr(f"from_json({parsed}.data[0].data, 'struct<a: int>') AS entity")
    assert _parses_of_parsed_json(both) == 1


def test_a_count_or_a_narrow_select_splits_each_line_once(
    spark: SparkSession, archive: list[str], tmp_path: Path
) -> None:
    # Plans that do not output the source file once lost input_file_name(), and with it
    # what held the good-line filter above the typed layer: the filter went down to the
    # text scan, with the split written out at each use (300 times a line, 5,000 with
    # iglu=; a count of a typed read of 20,000 events took 88 s, and takes 7 s).
    from tests.test_iglu_read import BAD_LINES, GOOD_LINES, write_repository, write_run

    repository = write_repository(tmp_path / "repository")
    typed_run = write_run(tmp_path / "typed", [*GOOD_LINES, *BAD_LINES.values()])
    cold = read_enriched(spark, archive)
    reads = {
        "cold": cold,
        "warm": read_enriched(spark, archive, entity_schemas=cold.schemas_met()),
        "not shredded": read_enriched(spark, archive, shred=False),
        "typed": read_enriched(spark, typed_run, iglu=[str(repository)]),
    }
    for name, read in reads.items():
        events, bad_rows = read.events, read.bad_rows
        for frame in (events.groupBy().count(), events.select("event_id"), bad_rows.select("line")):
            assert _splits_per_line(frame) == 1, (name, frame)
    for name in ("cold", "warm", "not shredded"):
        assert reads[name].events.count() + reads[name].bad_rows.count() == 440, name
    assert reads["typed"].events.count() == len(GOOD_LINES)
    assert reads["typed"].bad_rows.count() == len(BAD_LINES)
