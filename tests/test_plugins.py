"""The declared plug-in contracts: reader and transform forms, and a sink's capabilities.

Older forms keep working with a DeprecationWarning; declared ones give none.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from spark_manifests import JobFailedError, ParquetSink, Sink
from spark_manifests.plugins import ReaderAdapter, TransformAdapter, with_runs
from spark_manifests.runs import Run, parse_run_id


def frame(*columns: str) -> SimpleNamespace:
    """Enough of a DataFrame for the adapters: columns, write, schema."""
    return SimpleNamespace(columns=list(columns) or ["run"], write=None, schema=None)


FOLDER = "archive/run=2017-04-11-10-31-05/"
RUNS = [Run(id=FOLDER, timestamp=parse_run_id(FOLDER), path=FOLDER, name="run=2017-04-11-10-31-05")]


@contextlib.contextmanager
def no_deprecation() -> Iterator[None]:
    """Within the block, a DeprecationWarning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        yield


def test_a_one_argument_transform_gets_the_events_only() -> None:
    seen: list[object] = []

    def tagged(events, tag: str = "x"):
        seen.append(events)
        return events

    with no_deprecation():
        events = TransformAdapter(tagged, job_name="job").apply(frame(), RUNS)
    assert seen == [events]


def test_a_transform_marked_with_runs_gets_them_without_a_warning() -> None:
    @with_runs
    def per_run(events, runs):
        assert runs == RUNS
        return events

    with no_deprecation():
        adapter = TransformAdapter(per_run, job_name="job")
    events = frame()
    assert adapter.apply(events, RUNS) is events


def test_a_two_argument_transform_still_gets_the_runs_with_a_deprecation_warning() -> None:
    def per_run(events, runs):
        assert runs == RUNS
        return events

    with pytest.deprecated_call(match="mark it with spark_manifests.plugins.with_runs"):
        adapter = TransformAdapter(per_run, job_name="job")
    events = frame()
    assert adapter.apply(events, RUNS) is events


def test_a_transform_breaking_its_contract_stops_the_job() -> None:
    with pytest.raises(JobFailedError, match="The transform returned None"):
        TransformAdapter(lambda events: None, job_name="job").apply(frame(), RUNS)
    with pytest.raises(JobFailedError, match="The transform dropped the 'run' column"):
        TransformAdapter(lambda events: frame("x"), job_name="job").apply(frame(), RUNS)


@pytest.mark.parametrize(
    "returned",
    [
        frame(),
        SimpleNamespace(events=frame(), bad_rows=frame(), lines_per_run={"l": 1}),
        SimpleNamespace(events=frame(), bad_rows=None),
    ],
    ids=["dataframe", "enriched-read", "no-bad-rows"],
)
def test_declared_reader_forms_load_without_a_warning(returned) -> None:
    adapter = ReaderAdapter(lambda spark, paths: returned, job_name="job")
    with no_deprecation():
        loaded = adapter.load(None, ["p"])  # type: ignore[arg-type]
    assert loaded.events is getattr(returned, "events", returned)
    assert loaded.bad_rows is getattr(returned, "bad_rows", None)
    assert loaded.lines_per_run == getattr(returned, "lines_per_run", None)
    assert adapter.is_custom


def test_a_reader_returning_a_pair_still_loads_with_a_deprecation_warning() -> None:
    events, bad_rows = frame(), frame()
    adapter = ReaderAdapter(lambda spark, paths: (events, bad_rows), job_name="job")
    with pytest.deprecated_call(match="pair"):
        loaded = adapter.load(None, ["p"])  # type: ignore[arg-type]
    assert (loaded.events, loaded.bad_rows) == (events, bad_rows)


def test_a_reader_breaking_its_contract_stops_the_job() -> None:
    with pytest.raises(JobFailedError, match=r"The reader returned a builtins\.str"):
        ReaderAdapter(lambda spark, paths: "x", job_name="job").load(None, [])  # type: ignore[arg-type]
    with pytest.raises(JobFailedError, match="The reader's events have no 'run' column"):
        ReaderAdapter(lambda spark, paths: frame("x"), job_name="job").load(None, [])  # type: ignore[arg-type]


class NowhereSink(Sink):
    def write(self, events, runs) -> None: ...

    def has_output(self, run) -> bool:
        return False

    def output_path(self, run) -> str:
        return ""


def test_sinks_declare_whether_they_keep_bad_rows() -> None:
    assert ParquetSink.writes_bad_rows
    assert not ParquetSink.supports_batch_commits

    with no_deprecation():

        class Declared(NowhereSink):
            writes_bad_rows = True

            def write_bad_rows(self, bad_rows, runs) -> None: ...

        class KeepsNone(Declared):
            writes_bad_rows = False

    assert Declared.writes_bad_rows
    assert not KeepsNone.writes_bad_rows


def test_a_sink_known_by_its_write_bad_rows_method_still_keeps_them_with_a_warning() -> None:
    with pytest.deprecated_call(match="without declaring writes_bad_rows = True"):

        class Legacy(NowhereSink):
            def write_bad_rows(self, bad_rows, runs) -> None: ...

    assert Legacy().writes_bad_rows
    sink = Legacy()
    sink.writes_bad_rows = False  # an instance may still leave them out
    assert not sink.writes_bad_rows
