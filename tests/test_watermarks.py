"""Per-archive watermarks in the manifest, and listing an archive from a run on (issue 23)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from snowplow_analytics_sdk.run_manifests import RunManifests as SdkRunManifests

from spark_manifests import RunManifest, RunManifests, SQLiteRunManifest, list_runs
from spark_manifests._watermarks import archive_of, next_watermark
from spark_manifests.exceptions import RunInProgressError
from spark_manifests.manifest import Watermark
from spark_manifests.runs import archive_key

START = 1_491_906_665.0  # 2017-04-11 10:31:05 UTC
ARCHIVE = "enriched/archive/"
RUNS = [f"{ARCHIVE}run=2017-04-11-{hour:02d}-31-05/" for hour in range(10, 16)]
OTHER_ARCHIVE_RUN = "other/run=2017-04-11-09-00-00/"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["dynamodb", "sqlite"])
def manifest(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunManifest]:
    if request.param == "dynamodb":
        session = request.getfixturevalue("aws")
        request.getfixturevalue("atomic_moto_dynamodb")
        backend: RunManifest = RunManifests(session.client("dynamodb"), "runs", clock=Clock())
    else:
        backend = SQLiteRunManifest(tmp_path / "manifest.sqlite", clock=Clock())
    backend.create()
    yield backend
    backend.close()


def advanced(manifest: RunManifest, run_id: str, **options: Any) -> Watermark:
    assert manifest.advance_watermark(manifest.watermark(archive_of(run_id)), run_id, **options)
    return manifest.watermark(archive_of(run_id))


# -- the record ----------------------------------------------------------------------------


def test_an_archive_without_a_record_has_no_watermark(manifest: RunManifest) -> None:
    assert manifest.watermark(ARCHIVE) == Watermark(ARCHIVE)


def test_advancing_writes_the_run_and_raises_the_version(manifest: RunManifest) -> None:
    first = advanced(manifest, RUNS[1])
    assert (first.run_id, first.version, first.reconciled_at) == (RUNS[1], 1, None)
    second = advanced(manifest, RUNS[3], reconciled=True)
    assert (second.run_id, second.version) == (RUNS[3], 2)
    assert second.reconciled_at == datetime.fromtimestamp(START, timezone.utc)
    # Kept by a later advance that is not a reconciliation.
    assert advanced(manifest, RUNS[4]).reconciled_at == second.reconciled_at


def test_an_advance_from_a_stale_read_writes_nothing(manifest: RunManifest) -> None:
    stale = manifest.watermark(ARCHIVE)
    advanced(manifest, RUNS[2])
    assert not manifest.advance_watermark(stale, RUNS[4])
    assert manifest.watermark(ARCHIVE).run_id == RUNS[2]


def test_a_watermark_only_advances_forward_and_in_its_archive(manifest: RunManifest) -> None:
    current = advanced(manifest, RUNS[3])
    with pytest.raises(ValueError, match="only moves forward"):
        manifest.advance_watermark(current, RUNS[1])
    with pytest.raises(ValueError, match="not in the archive"):
        manifest.advance_watermark(current, "elsewhere/run=2018-01-01-00-00-00/")
    assert manifest.advance_watermark(current, RUNS[3])  # staying put is allowed


def test_archives_keep_their_own_watermarks(manifest: RunManifest) -> None:
    advanced(manifest, RUNS[3])
    advanced(manifest, OTHER_ARCHIVE_RUN)
    assert manifest.watermark(ARCHIVE).run_id == RUNS[3]
    assert manifest.watermark("other/").run_id == OTHER_ARCHIVE_RUN


def test_concurrent_advances_from_one_read_have_one_winner(manifest: RunManifest) -> None:
    read = advanced(manifest, RUNS[0])
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda run_id: manifest.advance_watermark(read, run_id), RUNS * 3))
    assert wins.count(True) == 1
    assert manifest.watermark(ARCHIVE).version == read.version + 1


def test_concurrent_first_advances_create_one_record(manifest: RunManifest) -> None:
    empty = manifest.watermark(ARCHIVE)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda run_id: manifest.advance_watermark(empty, run_id), RUNS))
    assert wins.count(True) == 1
    assert manifest.watermark(ARCHIVE).run_id == RUNS[wins.index(True)]


# -- unmark lowers it ----------------------------------------------------------------------


def test_unmark_below_the_watermark_lowers_it_to_that_run(manifest: RunManifest) -> None:
    for run_id in RUNS:
        manifest.add(run_id)
    advanced(manifest, RUNS[4])
    manifest.unmark(RUNS[2])
    assert manifest.watermark(ARCHIVE).run_id == RUNS[2]
    assert manifest.get(RUNS[2]) is None


def test_unmark_above_the_watermark_fails_an_advance_read_before_it(
    manifest: RunManifest,
) -> None:
    # A worker read the watermark and the statuses (RUNS[4] committed), then an operator
    # unmarks RUNS[4]: the worker's advance past it must fail.
    manifest.add(RUNS[4])
    read = advanced(manifest, RUNS[1])
    manifest.unmark(RUNS[4])
    assert manifest.watermark(ARCHIVE).run_id == RUNS[1]
    assert not manifest.advance_watermark(read, RUNS[5])


def test_unmark_without_a_record_fails_a_first_advance_read_before_it(
    manifest: RunManifest,
) -> None:
    manifest.add(RUNS[2])
    empty = manifest.watermark(ARCHIVE)
    manifest.unmark(RUNS[2])
    assert manifest.watermark(ARCHIVE).run_id is None
    assert not manifest.advance_watermark(empty, RUNS[5])


def test_edit_many_unmark_lowers_each_archive_once_to_its_oldest_run(
    manifest: RunManifest,
) -> None:
    for run_id in [*RUNS, OTHER_ARCHIVE_RUN]:
        manifest.add(run_id)
    advanced(manifest, RUNS[5])
    advanced(manifest, OTHER_ARCHIVE_RUN)
    before = manifest.watermark(ARCHIVE).version
    assert manifest.edit_many("unmark", [RUNS[4], RUNS[1], RUNS[3], OTHER_ARCHIVE_RUN]) == []
    lowered = manifest.watermark(ARCHIVE)
    # Lowered before the runs are forgotten and again after: twice per archive, not per run.
    assert (lowered.run_id, lowered.version) == (RUNS[1], before + 2)
    assert manifest.watermark("other/").run_id == OTHER_ARCHIVE_RUN
    assert {entry.run_id for entry in manifest.entries()} == {RUNS[0], RUNS[2], RUNS[5]}


@pytest.mark.parametrize("edit", ["unmark", "edit_many"])
def test_a_start_between_the_lowering_and_the_forgetting_cannot_step_over_the_run(
    manifest: RunManifest, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    # A worker starts after the unmark lowered the watermark to RUNS[2] but reads the
    # statuses before RUNS[2] is forgotten (a bulk unmark forgets for seconds): it sees
    # every run settled. Its advance must not leave RUNS[2] below the watermark.
    for run_id in RUNS:
        manifest.add(run_id)
    advanced(manifest, RUNS[5])
    forget, seen = manifest._unmark, {}

    def a_start_then_forget(run_id: str) -> None:
        seen["watermark"] = manifest.watermark(ARCHIVE)
        seen["pending"] = manifest.pending(RUNS[2:])
        forget(run_id)

    monkeypatch.setattr(manifest, "_unmark", a_start_then_forget)
    if edit == "unmark":
        manifest.unmark(RUNS[2])
    else:
        assert manifest.edit_many("unmark", [RUNS[2]]) == []
    assert seen["watermark"].run_id == RUNS[2]
    assert seen["pending"] == []
    manifest.advance_watermark(seen["watermark"], next_watermark(RUNS[2:], seen["pending"]))
    assert manifest.get(RUNS[2]) is None
    assert manifest.watermark(ARCHIVE).run_id == RUNS[2]


def test_a_refused_unmark_still_lowers_the_watermark(manifest: RunManifest) -> None:
    assert manifest.claim(RUNS[1], owner="job-1")
    advanced(manifest, RUNS[3])
    with pytest.raises(RunInProgressError):
        manifest.unmark(RUNS[1])
    assert manifest.watermark(ARCHIVE).run_id == RUNS[1]  # lower than needed: harmless


def test_unmark_of_an_id_that_is_no_run_folder_leaves_watermarks_alone(
    manifest: RunManifest,
) -> None:
    manifest.add("not-a-run")
    advanced(manifest, RUNS[3])
    manifest.unmark("not-a-run")
    assert manifest.watermark(ARCHIVE).version == 1


# -- readers do not see it -----------------------------------------------------------------


def test_entries_hide_the_watermark_record(manifest: RunManifest) -> None:
    manifest.add(RUNS[0])
    advanced(manifest, RUNS[1])
    assert [entry.run_id for entry in manifest.entries()] == [RUNS[0]]
    assert manifest.pending(RUNS[:2]) == [RUNS[1]]


def test_the_snowplow_sdk_reads_runs_as_before_beside_a_watermark(aws: Any) -> None:
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs")
    manifest.create()
    manifest.add(RUNS[0])
    advanced(manifest, RUNS[1])
    sdk = SdkRunManifests(client, "runs")
    assert sdk.contains(RUNS[0])
    assert not sdk.contains(RUNS[1])
    sdk.add(RUNS[2])
    assert manifest.contains(RUNS[2])
    assert manifest.watermark(ARCHIVE).run_id == RUNS[1]


# -- the next watermark --------------------------------------------------------------------


def test_next_watermark_is_the_first_pending_run_in_run_order() -> None:
    dashed = "a/run-2017-04-11-10-00-00/"  # S3 sorts it after run=, its time before
    listed = ["a/run=2017-04-11-11-00-00/", dashed, "a/run=2017-04-11-12-00-00/"]
    assert next_watermark(listed, [listed[0], listed[2]]) == listed[0]
    assert next_watermark(listed, [dashed]) == dashed
    assert next_watermark(listed, []) == listed[2]
    assert next_watermark([], []) is None


# -- listing from a run on -----------------------------------------------------------------

FOLDERS = [
    "run=2017-04-11-10-31-05",
    "run-2017-04-11-11-31-05",
    "run=2017-04-11-12-31-05",
    "run-2017-04-11-13-31-05",
    "run=2017-04-11-14-31-05",
]


def test_list_runs_from_a_local_run_on(tmp_path: Path) -> None:
    for name in [*FOLDERS, "notes"]:
        (tmp_path / name).mkdir()
    every = list_runs(tmp_path)
    assert [run.name for run in list_runs(tmp_path, from_run=every[2].id)] == FOLDERS[2:]
    assert {archive_of(run.id) for run in every} == {archive_key(tmp_path)}
    assert list_runs(tmp_path, from_run=every[2].id, limit=1) == [every[2]]


def test_list_runs_from_an_s3_run_on_starts_the_listings_there(aws: Any) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    for number, name in enumerate(FOLDERS):
        for part in range(3):
            s3.put_object(Bucket="acme", Key=f"{ARCHIVE}{name}/part-{part}", Body=b"x")
        s3.put_object(Bucket="acme", Key=f"{ARCHIVE}{name}-not-a-run-{number}/x", Body=b"x")
    every = list_runs(f"s3://acme/{ARCHIVE}", client=s3)
    assert [run.name for run in every] == FOLDERS
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(params)
    )
    found = list_runs(f"s3://acme/{ARCHIVE}", client=s3, from_run=every[2].id)
    assert [run.name for run in found] == FOLDERS[2:]
    assert sorted((call["Prefix"], call["StartAfter"]) for call in calls) == [
        (f"{ARCHIVE}run-", f"{ARCHIVE}run-2017-04-11-12-31-05"),
        (f"{ARCHIVE}run=", f"{ARCHIVE}run=2017-04-11-12-31-05"),
    ]
    assert {archive_of(run.id) for run in every} == {archive_key(f"s3://acme/{ARCHIVE}")}


def test_list_runs_from_the_newest_run_finds_only_it(aws: Any) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    for name in FOLDERS:
        s3.put_object(Bucket="acme", Key=f"{name}/part-0", Body=b"x")  # at the bucket's root
    newest = list_runs("s3://acme/", client=s3)[-1]
    assert list_runs("s3://acme/", client=s3, from_run=newest.id) == [newest]
    assert archive_of(newest.id) == archive_key("s3://acme/") == ""
