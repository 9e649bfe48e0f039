"""A start lists from its archive's watermark on; reconciliations find late runs (issue 23)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from spark_manifests import RunManifest, RunManifests, SQLiteRunManifest, write_sample_archive
from spark_manifests import _batch_writer as batch_writer_module
from spark_manifests._faults import POINTS
from spark_manifests._run_folders import run_position
from spark_manifests.manifest import RunStatus
from spark_manifests.retry import RetryPolicy
from spark_manifests.runs import archive_key, list_runs
from spark_manifests.samples import DEFAULT_START
from spark_manifests.source import ManifestedRunSource
from spark_manifests.state import StateStore

from .reliability import duplicate_event_ids, run_job

START = DEFAULT_START.replace(tzinfo=timezone.utc)
DAY = 24 * 3600
NO_WAIT = RetryPolicy(max_retries=2, initial_delay=0, max_delay=0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now


def label(hours: float) -> str:
    return (START + timedelta(hours=hours)).strftime("%Y-%m-%d-%H-%M-%S")


def add_runs(archive: Path, *hours: float) -> None:
    for hour in hours:
        folder = archive / f"run={label(hour)}"
        folder.mkdir()
        (folder / "part-00000").write_text("x\n")


@pytest.fixture(params=["sqlite", "dynamodb"])
def manifest(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunManifest]:
    clock = Clock()
    if request.param == "dynamodb":
        session = request.getfixturevalue("aws")
        request.getfixturevalue("atomic_moto_dynamodb")
        backend: RunManifest = RunManifests(session.client("dynamodb"), "runs", clock=clock)
    else:
        backend = SQLiteRunManifest(tmp_path / "manifest.sqlite", clock=clock)
    backend.create()
    yield backend
    backend.close()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "archive"
    path.mkdir()
    return path


def first_start(
    archive: Path, manifest: RunManifest, *hours: float, committed: tuple[float, ...] | None = None
) -> ManifestedRunSource:
    """Runs at ``hours``, and a start that commits them (or ``committed``) and moves the
    watermark on."""
    add_runs(archive, *hours)
    source = source_on(archive, manifest)
    start(source)
    finish(source, *(hours if committed is None else committed))
    return source


def source_on(archive: Path, manifest: RunManifest, **options: Any) -> ManifestedRunSource:
    return ManifestedRunSource(
        str(archive), output=str(archive.parent / "out"), manifest=manifest, **options
    )


def start(source: ManifestedRunSource) -> tuple[list[str], list[str]]:
    """One start's discovery: the runs it listed and the runs it found pending (labels)."""
    runs, _ = source._planner.discover()
    pending = source._planner.pending_among(runs)
    return [run.label for run in runs], [run.label for run in pending]


def finish(source: ManifestedRunSource, *committed: float) -> None:
    """The start's batches commit these runs; then it moves the watermark on."""
    for hour in committed:
        source.manifest.add(run_id(source, hour))
    source._planner.settle_watermark()


def run_id(source: ManifestedRunSource, hours: float | str) -> str:
    name = hours if isinstance(hours, str) else label(hours)
    return f"{archive_key(source.archive)}run={name}/"


def watermark_label(source: ManifestedRunSource) -> str | None:
    found = source.manifest.watermark(archive_key(source.archive)).run_id
    return None if found is None else found.rstrip("/").rsplit("/", 1)[-1][len("run=") :]


def assert_never_skips(manifest: RunManifest, archive: Path) -> None:
    """Every run ordered before the watermark is settled."""
    watermark = manifest.watermark(archive_key(archive)).run_id
    runs = list_runs(archive)
    below = [
        run.id for run in runs if watermark and (run.timestamp, run.id) < run_position(watermark)
    ]
    assert manifest.pending(below, max_attempts=3) == []


# -- one start's discovery -----------------------------------------------------------------


def test_a_start_lists_from_the_watermark_and_moves_it_past_what_settled(
    manifest: RunManifest, archive: Path
) -> None:
    add_runs(archive, 0, 1, 2)
    first = source_on(archive, manifest)
    assert start(first) == ([label(h) for h in (0, 1, 2)],) * 2  # a full listing
    finish(first, 0, 1, 2)
    assert watermark_label(first) == label(2)
    reconciled = manifest.watermark(archive_key(archive)).reconciled_at
    assert reconciled is not None

    add_runs(archive, 3, 4)
    second = source_on(archive, manifest)
    listed, pending = start(second)
    assert listed == [label(h) for h in (2, 3, 4)]  # from the watermark on
    assert pending == [label(h) for h in (3, 4)]
    finish(second, 3)  # run 4 stays pending (failed, deferred, another job's)
    assert watermark_label(second) == label(4)
    assert manifest.watermark(archive_key(archive)).reconciled_at == reconciled

    third = source_on(archive, manifest)
    assert start(third) == ([label(4)], [label(4)])
    assert_never_skips(manifest, archive)


def test_failed_runs_hold_the_watermark_until_out_of_attempts(
    manifest: RunManifest, archive: Path
) -> None:
    add_runs(archive, 0, 1, 2)
    source = source_on(archive, manifest, retry=RetryPolicy(max_retries=0))  # one attempt
    start(source)
    held = run_id(source, 1)
    assert manifest.claim(held, "job", max_attempts=2)
    manifest.fail(held, "job", "boom")
    finish(source, 0, 2)
    assert watermark_label(source) == label(2)  # out of attempts for this job: settled

    patient = source_on(archive, manifest, full_scan=True)  # three attempts
    assert start(patient)[1] == [label(1)]
    patient._planner.settle_watermark()
    assert watermark_label(patient) == label(1)  # lowered to it: retryable again
    assert_never_skips(manifest, archive)


def test_a_limit_or_a_since_never_moves_the_watermark_past_unlisted_runs(
    manifest: RunManifest, archive: Path
) -> None:
    add_runs(archive, 0, 1, 2, 3)
    limited = source_on(archive, manifest, limit=1)
    assert start(limited)[1] == [label(0)]
    finish(limited, 0)
    assert watermark_label(limited) == label(1)

    windowed = source_on(archive, manifest, since=START + timedelta(hours=3), full_scan=True)
    assert start(windowed)[1] == [label(3)]
    finish(windowed, 3)
    assert watermark_label(windowed) == label(1)  # runs 1 and 2 were not listed

    before = source_on(archive, manifest, until=START)  # all listed runs before the mark
    start(before)
    finish(before)
    assert watermark_label(before) == label(1)
    assert_never_skips(manifest, archive)


# -- reconciliation and unmark -------------------------------------------------------------


def test_a_late_run_below_the_watermark_is_found_by_the_next_reconciliation(
    manifest: RunManifest, archive: Path
) -> None:
    first_start(archive, manifest, 0, 2)
    add_runs(archive, 1)  # copied late, below the watermark

    assert start(source_on(archive, manifest))[1] == []  # not due yet: not listed
    manifest._clock.now += DAY  # type: ignore[attr-defined]
    due = source_on(archive, manifest)
    listed, pending = start(due)
    assert (len(listed), pending) == (3, [label(1)])
    # Lowered before it is processed: a stop now would not lose it.
    assert watermark_label(due) == label(1)
    assert_never_skips(manifest, archive)
    finish(due, 1)
    assert watermark_label(due) == label(1)

    # The reconciliation that lowered the watermark recorded none: the next one completes it.
    after = source_on(archive, manifest)
    assert start(after) == ([label(h) for h in (0, 1, 2)], [])
    finish(after)
    assert watermark_label(after) == label(2)
    assert start(source_on(archive, manifest)) == ([label(2)], [])


def test_full_scan_reconciles_at_once(manifest: RunManifest, archive: Path) -> None:
    first_start(archive, manifest, 0, 2)
    add_runs(archive, 1)
    assert start(source_on(archive, manifest, full_scan=True))[1] == [label(1)]
    every_start = source_on(archive, manifest, reconcile_seconds=0)
    assert len(start(every_start)[0]) == 3


def test_an_unmark_below_the_watermark_is_listed_at_the_next_start(
    manifest: RunManifest, archive: Path
) -> None:
    first = first_start(archive, manifest, 0, 1, 2, 3)
    manifest.unmark(run_id(first, 1))
    redo = source_on(archive, manifest)
    assert start(redo) == ([label(h) for h in (1, 2, 3)], [label(1)])


def test_an_unmark_during_a_start_fails_its_advance(manifest: RunManifest, archive: Path) -> None:
    first_start(archive, manifest, 0, 1, 2, committed=(0, 1))
    racing = source_on(archive, manifest)
    start(racing)  # lists from run 2, read as pending
    manifest.add(run_id(racing, 2))
    manifest.unmark(run_id(racing, 2))  # an operator, meanwhile
    racing._planner.settle_watermark()
    assert watermark_label(racing) == label(2)
    assert_never_skips(manifest, archive)


def test_concurrent_starts_keep_one_correct_watermark(manifest: RunManifest, archive: Path) -> None:
    add_runs(archive, *range(24))

    def worker(number: int) -> int:
        done = 0
        for _ in range(30):  # until a start finds nothing pending
            source = source_on(archive, manifest)
            _, pending = start(source)
            if not pending:
                break
            for name in pending[:3]:
                run = run_id(source, name)
                if manifest.claim(run, f"w{number}"):
                    manifest.commit(run, f"w{number}")
                    done += 1
            source._planner.settle_watermark()
            assert_never_skips(manifest, archive)
        return done

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(worker, range(4))) == 24
    last = source_on(archive, manifest)
    start(last)
    finish(last)
    assert watermark_label(last) == label(23)
    assert all(entry.attempts == 1 for entry in manifest.entries())


# -- what a start costs --------------------------------------------------------------------


def s3_source(manifest: RunManifest, s3: Any) -> ManifestedRunSource:
    return ManifestedRunSource(
        "s3://acme/archive/", output="s3://acme/out/", manifest=manifest, client=s3
    )


def s3_history(aws: Any, runs: int, settled: int) -> tuple[Any, RunManifest, Counter[str]]:
    """An S3 archive of ``runs`` runs, the first ``settled`` committed by a start that moved
    the watermark on; and the AWS calls made from then on, by operation."""
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
    s3.create_bucket(Bucket="acme")
    for hour in range(runs):
        s3.put_object(Bucket="acme", Key=f"archive/run={label(hour)}/part-0", Body=b"x")
    manifest = RunManifests(dynamodb, "runs")
    manifest.create()
    first = s3_source(manifest, s3)
    start(first)
    finish(first, *range(settled))
    calls: Counter[str] = Counter()
    for client in (s3, dynamodb):
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    return s3, manifest, calls


def test_a_steady_start_costs_what_is_new_not_the_history(aws: Any) -> None:
    s3, manifest, calls = s3_history(aws, runs=305, settled=300)
    listed, pending = start(s3_source(manifest, s3))
    assert pending == [label(hour) for hour in range(300, 305)]
    assert listed == pending  # the watermark is the first of them, still pending
    assert sum(calls.values()) <= 5, calls


def test_a_start_with_nothing_new_costs_five_calls_at_most(aws: Any) -> None:
    s3, manifest, calls = s3_history(aws, runs=300, settled=300)
    source = s3_source(manifest, s3)
    listed, pending = start(source)
    source._planner.settle_watermark()
    assert (listed, pending) == ([label(299)], [])  # the watermark run alone, settled
    assert sum(calls.values()) <= 5, calls
    assert "UpdateItem" not in calls  # nothing moved: no write
    assert "PutItem" not in calls
    assert watermark_label(source) == label(299)


def test_reconcile_seconds_must_be_a_finite_number_of_seconds(
    manifest: RunManifest, archive: Path
) -> None:
    for wrong in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="reconcile_seconds must be 0 or more"):
            source_on(archive, manifest, reconcile_seconds=wrong)
    assert source_on(archive, manifest, reconcile_seconds=0).reconcile_seconds == 0


def test_the_pre_commit_check_lists_no_run_older_than_the_settle_time(
    manifest: RunManifest, archive: Path
) -> None:
    add_runs(archive, 0, 1)
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).timestamp()
    os.utime(archive / f"run={label(0)}" / "part-00000", (old, old))
    source = source_on(archive, manifest, settle_seconds=3600)
    planner = source._planner
    listings = planner.inspect(list_runs(archive))
    listed: list[Any] = []
    planner.inspect = lambda runs: listed.extend(runs) or []  # type: ignore[method-assign]
    planner.changed_since_listed(listings)
    assert [run.label for run in listed] == [label(1)]


# -- end to end ----------------------------------------------------------------------------

EVENTS = 20


def sample_runs(archive: Path, first_hour: float, runs: int, seed: int) -> None:
    write_sample_archive(
        archive,
        runs=runs,
        events_per_run=EVENTS,
        files_per_run=1,
        start=START + timedelta(hours=first_hour),
        seed=seed,
    )


def spark_source(spark: Any, archive: Path, manifest: str, **options: Any) -> ManifestedRunSource:
    work = archive.parent
    return ManifestedRunSource(
        str(archive),
        spark=spark,
        output=str(work / "out"),
        manifest=manifest,
        state=StateStore(str(work / "state")),
        job_name="wm",
        retry=NO_WAIT,
        **options,
    )


def assert_output_once(spark: Any, archive: Path, runs: int) -> None:
    events = spark.read.parquet(str(archive.parent / "out" / "events"))
    assert events.count() == runs * EVENTS
    assert events.select("event_id").distinct().count() == runs * EVENTS
    assert duplicate_event_ids(events) == 0


def processed(spark: Any, archive: Path, manifest: str, **options: Any) -> int:
    return spark_source(spark, archive, manifest, **options).run().runs_committed


def test_a_late_run_is_processed_after_the_next_reconciliation_and_never_twice(
    spark: Any, tmp_path: Path
) -> None:
    archive, manifest = tmp_path / "archive", str(tmp_path / "m.sqlite")
    sample_runs(archive, 0, 2, seed=1)
    sample_runs(archive, 2, 1, seed=2)
    assert processed(spark, archive, manifest) == 3
    sample_runs(archive, 0.5, 1, seed=3)  # copied late, below the watermark

    assert processed(spark, archive, manifest) == 0  # not listed until a reconciliation
    assert processed(spark, archive, manifest, full_scan=True) == 1
    assert processed(spark, archive, manifest, full_scan=True) == 0
    assert processed(spark, archive, manifest) == 0

    assert_output_once(spark, archive, 4)
    with SQLiteRunManifest(manifest) as runs:
        entries = list(runs.entries())
        assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
        assert len(entries) == 4
        assert all(entry.attempts == 1 for entry in entries)
        assert_never_skips(runs, archive)


def test_an_unmark_below_the_watermark_is_redone_at_the_next_start(
    spark: Any, tmp_path: Path
) -> None:
    archive, manifest = tmp_path / "archive", str(tmp_path / "m.sqlite")
    sample_runs(archive, 0, 3, seed=4)
    assert processed(spark, archive, manifest) == 3
    first = list_runs(archive)[0]
    with SQLiteRunManifest(manifest) as runs:
        runs.unmark(first.id)
    assert processed(spark, archive, manifest) == 1  # no reconciliation needed
    assert processed(spark, archive, manifest) == 0
    assert_output_once(spark, archive, 3)


class SimulatedCrash(BaseException):
    """The driver dying: not an Exception, so nothing in the loop catches it."""


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_any_stage_leaves_a_watermark_that_skips_no_unsettled_run(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    archive, manifest = tmp_path / "archive", str(tmp_path / "m.sqlite")
    sample_runs(archive, 0, 2, seed=5)
    assert processed(spark, archive, manifest) == 2
    sample_runs(archive, 2, 3, seed=6)
    passes = Counter[str]()

    def crash_in_batch_2(name: str) -> None:
        passes[name] += 1
        if name == point and passes[name] == 2:
            raise SimulatedCrash(point)

    monkeypatch.setattr(batch_writer_module, "fault_point", crash_in_batch_2)
    with pytest.raises(SimulatedCrash):
        spark_source(spark, archive, manifest, max_runs_per_batch=1).run()
    monkeypatch.undo()
    with SQLiteRunManifest(manifest) as runs:
        assert_never_skips(runs, archive)

    spark_source(spark, archive, manifest, max_runs_per_batch=1).run()
    assert_output_once(spark, archive, 5)
    with SQLiteRunManifest(manifest) as runs:
        assert {entry.status for entry in runs.entries()} == {RunStatus.COMMITTED}
        assert runs.watermark(archive_key(archive)).run_id == list_runs(archive)[-1].id


@pytest.mark.slow
def test_concurrent_worker_processes_keep_one_watermark(spark: Any, tmp_path: Path) -> None:
    archive, manifest = tmp_path / "archive", str(tmp_path / "m.sqlite")
    sample_runs(archive, 0, 6, seed=7)

    def worker(number: int) -> Any:
        state = str(tmp_path / f"state{number}")
        return run_job(
            archive, tmp_path / "out", manifest, state, f"w{number}", "--max-runs-per-batch", "2"
        )

    assert processed(spark, archive, manifest) == 6  # the archive has a watermark
    sample_runs(archive, 6, 4, seed=8)
    with ThreadPoolExecutor(2) as pool:
        for result in pool.map(worker, range(2)):
            assert result.returncode == 0, result.stderr[-2000:]
    with SQLiteRunManifest(manifest) as runs:
        assert_never_skips(runs, archive)
    assert_output_once(spark, archive, 10)
    with SQLiteRunManifest(manifest) as runs:
        entries = list(runs.entries())
        assert len(entries) == 10
        assert all(entry.attempts == 1 for entry in entries)
        last = list_runs(archive)[-1].id
        watermark = runs.watermark(archive_key(archive)).run_id
    # A worker that lost the race left it for the next start: never past a pending run.
    assert watermark is not None
    assert run_position(watermark) <= run_position(last)
