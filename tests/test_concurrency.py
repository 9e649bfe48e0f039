"""Four job processes at once over one archive, sharing one manifest.

Every run must be committed once, by one owner; the output must hold no event twice; and no
process may fail because another holds a run.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from spark_manifests import open_manifest, write_sample_archive

from .reliability import assert_all_committed_once, duplicate_event_ids, events_of, run_job

RUNS = 52
WORKERS = 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("busy_archive")
    write_sample_archive(path, runs=RUNS, events_per_run=20, files_per_run=1, seed=5)
    return path


def run_workers(archive: Path, output: Path, manifest: str, state_root: Path) -> list:
    def worker(number: int) -> subprocess.CompletedProcess:
        return run_job(
            archive,
            output,
            manifest,
            str(state_root / f"w{number}"),
            f"worker{number}",
            "--max-runs-per-batch",
            "4",
        )

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(worker, range(WORKERS)))


def check(spark, results: list, manifest: str, output: Path) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    with open_manifest(manifest) as runs:
        entries = list(runs.entries())
    assert_all_committed_once(entries, RUNS)
    assert all(entry.attempts == 1 for entry in entries)
    committed = sum(int(r.stdout.split(" runs committed")[0].rsplit(" ", 1)[1]) for r in results)
    assert committed == RUNS
    events = events_of(spark, output)
    assert events.count() == RUNS * 20
    assert duplicate_event_ids(events) == 0


def test_four_jobs_share_the_sqlite_manifest(spark, archive: Path, tmp_path: Path) -> None:
    manifest = str(tmp_path / "manifest.sqlite")
    results = run_workers(archive, tmp_path / "out", manifest, tmp_path)
    check(spark, results, manifest, tmp_path / "out")


def test_four_jobs_share_a_dynamodb_manifest(
    spark, archive: Path, tmp_path: Path, moto_server: str
) -> None:
    manifest = "dynamodb://concurrent-runs"
    with open_manifest(manifest) as runs:
        runs.create()
    results = run_workers(archive, tmp_path / "out", manifest, tmp_path)
    check(spark, results, manifest, tmp_path / "out")
