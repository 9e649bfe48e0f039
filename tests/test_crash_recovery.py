"""The job process is killed with SIGKILL at each stage boundary, then started again.

Invariants after the restart: the output equals a clean run's, every run is committed once,
no event_id is written twice, and the job's state snapshot is completed.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from spark_manifests import SQLiteRunManifest, StateStore, write_sample_archive
from spark_manifests._faults import KILL_AFTER_ENV, KILL_AT_ENV, KILL_SIGNAL_ENV, POINTS
from spark_manifests.source import ManifestedRunSource

from .reliability import (
    assert_all_committed_once,
    bad_rows_of,
    duplicate_event_ids,
    events_of,
    run_job,
)

RUNS = 16  # batches of 2: enough for a kill at each point, one start after another
BATCH = ["--max-runs-per-batch", "2"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash_archive")
    write_sample_archive(
        path,
        runs=RUNS,
        events_per_run=60,
        files_per_run=2,
        bad_line_ratio=0.04,
        seed=11,
        compress=True,
    )
    return path


@pytest.fixture(scope="module")
def clean_output(spark, archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("clean")
    ManifestedRunSource(
        str(archive),
        spark=spark,
        output=str(work / "out"),
        manifest=SQLiteRunManifest(str(work / "m.sqlite")),
        state=StateStore(str(work / "state")),
        job_name="clean",
    ).run()
    return work / "out"


def test_killed_at_each_stage_boundary_the_job_resumes_to_the_clean_result(
    spark, archive: Path, clean_output: Path, tmp_path: Path
) -> None:
    """One start killed at each stage boundary in turn, each resuming the batch the last
    one left in flight, then one that finishes: one job start per kill point, not two."""
    output, manifest, state = tmp_path / "out", str(tmp_path / "m.sqlite"), str(tmp_path / "st")
    for point in POINTS:
        # Past the point once (the batch resumed, or a new one), so the kill lands with work
        # both done and in flight.
        crashed = run_job(
            archive,
            output,
            manifest,
            state,
            "crashy",
            *BATCH,
            env={KILL_AT_ENV: point, KILL_AFTER_ENV: "1"},
        )
        assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr[-2000:])
        assert StateStore(state).get_or_create("crashy").origin == "running"

    resumed = run_job(archive, output, manifest, state, "crashy", *BATCH)

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with SQLiteRunManifest(manifest) as runs:
        assert_all_committed_once(list(runs.entries()), RUNS)
    events = events_of(spark, output)
    assert duplicate_event_ids(events) == 0
    assert_df_equality(events_of(spark, clean_output), events)
    assert_df_equality(bad_rows_of(spark, clean_output), bad_rows_of(spark, output))
    assert StateStore(state).get_or_create("crashy").origin == "completed"


def test_a_terminated_job_releases_its_claims_and_resumes_on_any_host(
    spark, archive: Path, clean_output: Path, tmp_path: Path
) -> None:
    """SIGTERM (YARN, a step cancelled, `timeout`): the job stops cleanly instead of dying
    with its claims held for a lease, during which a start elsewhere would be refused."""
    output, manifest, state = tmp_path / "out", str(tmp_path / "m.sqlite"), str(tmp_path / "st")
    stop_in_batch_2 = {KILL_AT_ENV: "after_load", KILL_AFTER_ENV: "1", KILL_SIGNAL_ENV: "SIGTERM"}

    stopped = run_job(archive, output, manifest, state, "stoppy", *BATCH, env=stop_in_batch_2)

    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "spark-manifests: terminated (SIGTERM)" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    with SQLiteRunManifest(manifest) as runs:
        assert len(list(runs.entries())) == 2  # batch 1's, committed
    running = Path(state) / "stoppy_running.json"
    document = json.loads(running.read_text())
    assert document["data"]["stopped_at"]
    # As if the next start ran in another container: the stop lets it resume at once.
    document["data"]["owner"] = "stoppy@elsewhere.example:4242:0123abcd"
    document["data"]["process"] = "elsewhere.example:4242"
    running.write_text(json.dumps(document))

    resumed = run_job(archive, output, manifest, state, "stoppy", *BATCH)

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with SQLiteRunManifest(manifest) as runs:
        entries = list(runs.entries())
    assert_all_committed_once(entries, RUNS)
    assert all(entry.attempts == 1 for entry in entries)  # released, not abandoned
    assert_df_equality(events_of(spark, clean_output), events_of(spark, output))
