"""The run manifest contract, run against both backends: DynamoDB (moto) and SQLite."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import queue
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from snowplow_analytics_sdk.run_manifests import RunManifests as SdkRunManifests

from spark_manifests import (
    AccessDeniedError,
    InvalidLocationError,
    ManifestTableNotFoundError,
    OwnershipLostError,
    RunManifest,
    RunManifests,
    RunStatus,
    SQLiteRunManifest,
    open_manifest,
)
from spark_manifests.exceptions import (
    InvalidRunIdError,
    RetryableError,
    RunInProgressError,
    SparkManifestsError,
)

UTC = timezone.utc
START = 1_491_906_665.0  # 2017-04-11 10:31:05 UTC
RUN = "enriched/archive/run=2017-04-11-10-31-05/"
OTHER = "enriched/archive/run=2017-04-11-11-31-05/"


class Clock:
    """A clock the test moves by hand, for lease expiry."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["dynamodb", "sqlite"])
def manifest(request: pytest.FixtureRequest, clock: Clock, tmp_path: Path) -> Any:
    if request.param == "dynamodb":
        session = request.getfixturevalue("aws")
        backend: RunManifest = RunManifests(session.client("dynamodb"), "runs", clock=clock)
    else:
        backend = SQLiteRunManifest(tmp_path / "state" / "manifest.sqlite", clock=clock)
    backend.create()
    yield backend
    backend.close()


def at(seconds_after_start: float) -> datetime:
    return datetime.fromtimestamp(START + seconds_after_start, tz=UTC)


# -- the contract --------------------------------------------------------------------------


def test_create_is_idempotent_and_a_new_manifest_is_empty(manifest: RunManifest) -> None:
    manifest.create()
    manifest.create()
    assert list(manifest.entries()) == []
    assert manifest.get(RUN) is None
    assert not manifest.contains(RUN)


def test_add_and_contains_as_the_sdk(manifest: RunManifest, clock: Clock) -> None:
    manifest.add(RUN)
    assert manifest.contains(RUN)
    assert not manifest.contains(OTHER)
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.committed_at) == (RunStatus.COMMITTED, at(0))

    clock.advance(60)
    manifest.add(RUN)  # a committed run keeps its record
    assert manifest.get(RUN) == entry


def test_claim_commit_records_owner_times_and_metrics(manifest: RunManifest, clock: Clock) -> None:
    assert manifest.claim(RUN, "job-a", lease_seconds=600)
    held = manifest.get(RUN)
    assert held is not None
    assert (held.status, held.owner, held.attempts) == (RunStatus.PROCESSING, "job-a", 1)
    assert (held.started_at, held.lease_expires_at) == (at(0), at(600))
    assert held.lease_expires_at.tzinfo is not None
    assert not manifest.contains(RUN)
    assert manifest.pending([RUN]) == [RUN]

    clock.advance(30)
    manifest.commit(
        RUN, "job-a", rows_in=1000, rows_out=990, bad_rows=10, output_path="s3://out/run=x/"
    )
    entry = manifest.get(RUN)
    assert entry is not None
    assert entry.status is RunStatus.COMMITTED
    assert (entry.rows_in, entry.rows_out, entry.bad_rows) == (1000, 990, 10)
    assert entry.output_path == "s3://out/run=x/"
    assert (entry.started_at, entry.committed_at, entry.updated_at) == (at(0), at(30), at(30))
    assert entry.lease_expires_at is None
    assert entry.owner == "job-a"
    assert manifest.contains(RUN)
    assert not manifest.claim(RUN, "job-b")
    assert not manifest.claim(RUN, "job-a")


def test_claim_rules(manifest: RunManifest, clock: Clock) -> None:
    assert manifest.claim(RUN, "job-a", lease_seconds=60)
    assert not manifest.claim(RUN, "job-b", lease_seconds=60)  # live lease
    clock.advance(10)
    # Its own live claim again (repeated, or resent by botocore after a timeout): renewed,
    # no attempt counted, and not refused for want of one.
    assert manifest.claim(RUN, "job-a", lease_seconds=60, max_attempts=1)
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.attempts, entry.lease_expires_at) == (1, at(70))
    clock.advance(61)  # expired: a claim of its own is a new attempt
    assert manifest.claim(RUN, "job-a", lease_seconds=60)
    assert manifest.get(RUN).attempts == 2  # type: ignore[union-attr]

    manifest.skip(OTHER, "empty run")
    assert not manifest.claim(OTHER, "job-a")


def test_a_repeated_commit_or_failure_counts_as_done(manifest: RunManifest) -> None:
    """What the second sending of a write finds when botocore resends it after a timeout
    that hid its success: its own work, not a lost claim."""
    assert manifest.claim(RUN, "job-a")
    manifest.commit(RUN, "job-a", rows_in=5)
    manifest.commit(RUN, "job-a", rows_in=5)
    assert manifest.contains(RUN)
    with pytest.raises(OwnershipLostError, match="COMMITTED"):
        manifest.commit(RUN, "job-b")

    assert manifest.claim(OTHER, "job-a")
    manifest.fail(OTHER, "job-a", "boom")
    manifest.fail(OTHER, "job-a", "boom")
    entry = manifest.get(OTHER)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.error) == (RunStatus.FAILED, 1, "boom")
    with pytest.raises(OwnershipLostError, match="FAILED"):
        manifest.commit(OTHER, "job-a")


def test_lease_takeover_after_expiry(manifest: RunManifest, clock: Clock) -> None:
    assert manifest.claim(RUN, "job-a", lease_seconds=60)
    clock.advance(59.5)
    assert not manifest.claim(RUN, "job-b", lease_seconds=60)
    clock.advance(0.5)  # the lease has run out: job-a crashed or stalled
    assert manifest.claim(RUN, "job-b", lease_seconds=60)
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.owner, entry.attempts, entry.started_at) == ("job-b", 2, at(60))

    # job-a wakes up: its commit must not overwrite job-b's claim.
    with pytest.raises(OwnershipLostError, match=r"held by 'job-b'"):
        manifest.commit(RUN, "job-a", rows_in=1)
    assert manifest.get(RUN) == entry
    with pytest.raises(OwnershipLostError):
        manifest.fail(RUN, "job-a", "boom")
    with pytest.raises(OwnershipLostError):
        manifest.release(RUN, "job-a")
    assert manifest.get(RUN) == entry
    manifest.commit(RUN, "job-b", rows_in=5)
    assert manifest.contains(RUN)


def test_renew_extends_the_lease_without_an_attempt(manifest: RunManifest, clock: Clock) -> None:
    assert manifest.claim(RUN, "job-a", lease_seconds=60, max_attempts=1)
    clock.advance(50)
    manifest.renew(RUN, "job-a", lease_seconds=60)
    clock.advance(50)  # 100 s after the claim: still held, thanks to the renewal
    assert not manifest.claim(RUN, "job-b", lease_seconds=60)
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.owner, entry.attempts, entry.lease_expires_at) == ("job-a", 1, at(110))

    with pytest.raises(OwnershipLostError):
        manifest.renew(RUN, "job-b", lease_seconds=60)
    manifest.commit(RUN, "job-a")
    with pytest.raises(OwnershipLostError):  # a committed run has no lease to renew
        manifest.renew(RUN, "job-a", lease_seconds=60)
    assert manifest.get(RUN).lease_expires_at is None


def test_takeovers_count_against_max_attempts(manifest: RunManifest, clock: Clock) -> None:
    # A run whose jobs keep dying while they process it (a poison run) stops being claimed.
    for attempt in (1, 2, 3):
        assert manifest.claim(RUN, f"job-{attempt}", lease_seconds=60, max_attempts=3)
        clock.advance(61)
    assert not manifest.claim(RUN, "job-4", lease_seconds=60, max_attempts=3)
    assert not manifest.claim(RUN, "job-3", lease_seconds=60, max_attempts=3)
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.owner, entry.attempts) == (RunStatus.PROCESSING, "job-3", 3)
    # It stays pending and visible; an operator unmarks it to try again, or skips it.
    assert manifest.pending([RUN]) == [RUN]
    manifest.unmark(RUN)
    assert manifest.claim(RUN, "job-4", lease_seconds=60, max_attempts=3)


def test_a_run_abandoned_out_of_attempts_can_be_marked_failed(
    manifest: RunManifest, clock: Clock
) -> None:
    assert not manifest.fail_abandoned(RUN, "gone", max_attempts=2)  # never seen
    assert manifest.claim(RUN, "job-1", lease_seconds=60, max_attempts=2)
    clock.advance(61)
    assert not manifest.fail_abandoned(RUN, "gone", max_attempts=2)  # an attempt left
    assert manifest.claim(RUN, "job-2", lease_seconds=60, max_attempts=2)
    assert not manifest.fail_abandoned(RUN, "gone", max_attempts=2)  # job-2 holds it
    clock.advance(61)

    assert manifest.fail_abandoned(RUN, "gone", max_attempts=2)

    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.error, entry.attempts, entry.lease_expires_at) == (
        RunStatus.FAILED,
        "gone",
        2,
        None,
    )
    assert not manifest.fail_abandoned(RUN, "again", max_attempts=2)
    assert not manifest.claim(RUN, "job-3", max_attempts=2)
    manifest.unmark(RUN)
    assert manifest.claim(RUN, "job-3", max_attempts=2)


def test_commit_of_a_run_never_claimed_or_done_raises(manifest: RunManifest) -> None:
    with pytest.raises(OwnershipLostError, match="not in the manifest"):
        manifest.commit(RUN, "job-a")
    assert manifest.get(RUN) is None
    manifest.add(RUN)
    with pytest.raises(OwnershipLostError, match="COMMITTED"):
        manifest.commit(RUN, "job-a", rows_in=3)
    entry = manifest.get(RUN)
    assert entry is not None
    assert entry.rows_in is None


def test_failed_runs_are_retried_until_attempts_run_out(
    manifest: RunManifest, clock: Clock
) -> None:
    for attempt in (1, 2):
        assert manifest.claim(RUN, f"job-{attempt}", max_attempts=2)
        manifest.fail(RUN, f"job-{attempt}", f"boom {attempt}")
        entry = manifest.get(RUN)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.error) == (
            RunStatus.FAILED,
            attempt,
            f"boom {attempt}",
        )
        assert entry.lease_expires_at is None
    assert not manifest.claim(RUN, "job-3", max_attempts=2)
    assert manifest.claim(RUN, "job-3", max_attempts=3)
    assert manifest.pending([RUN]) == [RUN]


def test_long_errors_are_cut(manifest: RunManifest) -> None:
    manifest.claim(RUN, "job-a")
    manifest.fail(RUN, "job-a", "x" * 100_000)
    entry = manifest.get(RUN)
    assert entry is not None
    assert entry.error is not None
    assert len(entry.error) == 8000
    assert entry.error.endswith("[truncated]")


def test_release_makes_the_run_claimable_at_once(manifest: RunManifest) -> None:
    assert manifest.claim(RUN, "job-a", lease_seconds=3600)
    with pytest.raises(OwnershipLostError):
        manifest.release(RUN, "job-b")
    manifest.release(RUN, "job-a")
    assert manifest.get(RUN) is None
    assert manifest.pending([RUN]) == [RUN]
    assert manifest.claim(RUN, "job-b")
    with pytest.raises(OwnershipLostError, match="not in the manifest"):
        manifest.release(OTHER, "job-a")


def test_skip(manifest: RunManifest, clock: Clock) -> None:
    manifest.skip(RUN, "objects are in Glacier")
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.error) == (RunStatus.SKIPPED, "objects are in Glacier")
    assert manifest.pending([RUN]) == []
    assert not manifest.contains(RUN)

    manifest.add(OTHER)
    manifest.skip(OTHER)  # committed stays committed
    other = manifest.get(OTHER)
    assert other is not None
    assert other.status is RunStatus.COMMITTED

    third = "enriched/archive/run=2017-04-11-12-31-05/"
    manifest.claim(third, "job-a", lease_seconds=60)
    with pytest.raises(RunInProgressError, match=r"held by 'job-a'"):
        manifest.skip(third)
    clock.advance(60)
    manifest.skip(third)
    skipped = manifest.get(third)
    assert skipped is not None
    assert (skipped.status, skipped.lease_expires_at) == (RunStatus.SKIPPED, None)


def test_mark_refuses_a_run_a_job_holds(manifest: RunManifest, clock: Clock) -> None:
    # Marked under a live job, the run would be committed even if the job then failed it.
    manifest.claim(RUN, "job-a", lease_seconds=60)
    with pytest.raises(RunInProgressError, match=r"held by 'job-a'"):
        manifest.add(RUN)
    entry = manifest.get(RUN)
    assert entry is not None
    assert entry.status is RunStatus.PROCESSING
    manifest.fail(RUN, "job-a", "boom")
    failed = manifest.get(RUN)
    assert failed is not None
    assert failed.status is RunStatus.FAILED

    manifest.claim(OTHER, "job-a", lease_seconds=60)
    clock.advance(61)  # its job died: an operator may settle it
    manifest.add(OTHER)
    marked = manifest.get(OTHER)
    assert marked is not None
    assert marked.status is RunStatus.COMMITTED


def test_unmark_forgets_a_run_unless_it_is_leased(manifest: RunManifest, clock: Clock) -> None:
    manifest.add(RUN)
    manifest.unmark(RUN)
    assert manifest.get(RUN) is None
    assert manifest.pending([RUN]) == [RUN]
    manifest.unmark(OTHER)  # never seen: nothing to do

    manifest.claim(RUN, "job-a", lease_seconds=60)
    with pytest.raises(RunInProgressError, match="Wait for that job"):
        manifest.unmark(RUN)
    assert manifest.get(RUN) is not None
    clock.advance(61)
    manifest.unmark(RUN)
    assert manifest.get(RUN) is None


def test_edit_many_edits_every_run_but_the_held_ones(manifest: RunManifest, clock: Clock) -> None:
    # More runs than SQLite writes in one transaction, one of them held by a live job.
    run_ids = [
        f"archive/run=2017-04-11-{i // 3600:02d}-{i // 60 % 60:02d}-{i % 60:02d}/"
        for i in range(1_100)
    ]
    held = run_ids[700]
    manifest.add(run_ids[0])
    assert manifest.claim(held, "job-a", lease_seconds=60)

    refused = manifest.edit_many("skip", run_ids, reason="bad tracker release")

    assert [str(refusal) for refusal in refused] == [str(manifest_refusal(manifest, "skip", held))]
    entries = manifest.get_many(run_ids)
    assert entries[run_ids[0]].status is RunStatus.COMMITTED  # committed stays committed
    assert entries[held].status is RunStatus.PROCESSING
    skipped = [entries[run_id] for run_id in run_ids[1:] if run_id != held]
    assert {(e.status, e.error) for e in skipped} == {(RunStatus.SKIPPED, "bad tracker release")}

    assert [refusal.args for refusal in manifest.edit_many("unmark", run_ids)] == [
        manifest_refusal(manifest, "unmark", held).args
    ]
    assert set(manifest.get_many(run_ids)) == {held}
    assert [str(refusal) for refusal in manifest.edit_many("mark", run_ids + run_ids[:5])] == [
        str(manifest_refusal(manifest, "mark", held))
    ]
    marked = manifest.get_many(run_ids)
    assert {marked[run_id].status for run_id in run_ids if run_id != held} == {RunStatus.COMMITTED}

    clock.advance(61)
    assert manifest.edit_many("unmark", run_ids) == []
    assert manifest.pending(run_ids) == run_ids


def manifest_refusal(manifest: RunManifest, edit: str, run_id: str) -> RunInProgressError:
    """The refusal the one-run method gives, to compare edit_many's with."""
    with pytest.raises(RunInProgressError) as refused:
        {"mark": manifest.add, "skip": manifest.skip, "unmark": manifest.unmark}[edit](run_id)
    return refused.value


def test_edit_many_checks_its_arguments_before_writing(manifest: RunManifest) -> None:
    with pytest.raises(ValueError, match="Unknown edit 'forget'"):
        manifest.edit_many("forget", [RUN])
    with pytest.raises(ValueError, match="A reason goes with skip"):
        manifest.edit_many("mark", [RUN], reason="why")
    with pytest.raises(InvalidRunIdError):
        manifest.edit_many("mark", [RUN, ""])
    assert manifest.get(RUN) is None


def test_pending_keeps_order_and_skips_settled_runs(manifest: RunManifest) -> None:
    run_ids = [f"archive/run=2017-04-11-10-{minute:02d}-00/" for minute in range(60)]
    run_ids += [f"archive/run=2017-04-12-{hour:02d}-00-00/" for hour in range(24)] * 2
    run_ids += [f"archive/run=2017-05-{day:02d}-00-00-00/" for day in range(1, 31)]
    unique = list(dict.fromkeys(run_ids))
    assert len(unique) == 114  # more than one BatchGetItem call
    manifest.add(unique[0])
    manifest.skip(unique[1])
    manifest.claim(unique[2], "job-a")
    manifest.claim(unique[3], "job-a")
    manifest.fail(unique[3], "job-a", "boom")
    manifest.add(unique[113])

    pending = manifest.pending(reversed(run_ids))

    settled = {unique[0], unique[1], unique[113]}
    assert pending == [run_id for run_id in reversed(unique) if run_id not in settled]
    assert manifest.pending([]) == []
    assert set(manifest.get_many(unique)) == {
        unique[0],
        unique[1],
        unique[2],
        unique[3],
        unique[113],
    }


def test_entries_list_every_run(manifest: RunManifest) -> None:
    manifest.add(RUN)
    manifest.claim(OTHER, "job-a")
    statuses = {entry.run_id: entry.status for entry in manifest.entries()}
    assert statuses == {RUN: RunStatus.COMMITTED, OTHER: RunStatus.PROCESSING}


@pytest.mark.parametrize("run_id", ["", None, 42, b"run=2017-04-11-10-31-05/"])
def test_run_ids_must_be_non_empty_strings(manifest: RunManifest, run_id: Any) -> None:
    calls = [
        lambda: manifest.add(run_id),
        lambda: manifest.contains(run_id),
        lambda: manifest.get(run_id),
        lambda: manifest.get_many([RUN, run_id]),
        lambda: manifest.pending([RUN, run_id]),
        lambda: manifest.claim(run_id, "job-a"),
        lambda: manifest.commit(run_id, "job-a"),
        lambda: manifest.fail(run_id, "job-a", "boom"),
        lambda: manifest.release(run_id, "job-a"),
        lambda: manifest.skip(run_id),
        lambda: manifest.unmark(run_id),
    ]
    for call in calls:
        with pytest.raises(InvalidRunIdError, match="non-empty string"):
            call()
    assert list(manifest.entries()) == []


def test_claim_arguments_are_checked(manifest: RunManifest) -> None:
    for kwargs, message in [
        ({"owner": ""}, "owner must be a non-empty string"),
        ({"owner": None}, "owner must be a non-empty string"),
        *(
            ({"owner": "job-a", "lease_seconds": bad}, "lease_seconds must be more than 0")
            # The expiry of an endless lease is no time a manifest can store.
            for bad in (0, -5, math.inf, math.nan, 366 * 24 * 3600)
        ),
        ({"owner": "job-a", "max_attempts": 0}, "max_attempts must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            manifest.claim(RUN, **kwargs)
    assert manifest.get(RUN) is None
    assert manifest.claim(RUN, "job-a")
    with pytest.raises(ValueError, match="owner"):
        manifest.commit(RUN, "")


def test_pending_with_max_attempts_leaves_out_failed_runs_out_of_attempts(
    manifest: RunManifest, caplog: pytest.LogCaptureFixture
) -> None:
    # A claim refuses such runs: listing them pending made a limited job stall on them.
    for attempt in range(2):
        assert manifest.claim(RUN, f"job-{attempt}", max_attempts=2)
        manifest.fail(RUN, f"job-{attempt}", f"bad schema {attempt}")
    assert manifest.claim(OTHER, "job-a", max_attempts=2)
    manifest.fail(OTHER, "job-a", "bad schema")
    caplog.set_level("WARNING", logger="spark_manifests")

    assert manifest.pending([RUN, OTHER]) == [RUN, OTHER]
    assert "no attempts left" not in caplog.text
    assert manifest.pending([RUN, OTHER], max_attempts=2) == [OTHER]
    assert (
        f"1 failed runs have no attempts left and are not processed again: {RUN} (bad schema 1)"
        in caplog.text
    )
    assert manifest.pending([RUN, OTHER], max_attempts=3) == [RUN, OTHER]


def test_pending_refuses_a_bare_string(manifest: RunManifest) -> None:
    # Iterating it would ask for one-character run ids.
    with pytest.raises(TypeError, match="single string"):
        manifest.pending(RUN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single string"):
        manifest.get_many(RUN)  # type: ignore[arg-type]


def test_context_manager_closes(manifest: RunManifest, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    monkeypatch.setattr(manifest, "close", lambda: closed.append(True))
    with manifest as opened:
        assert opened is manifest
        opened.add(RUN)
    assert closed == [True]


def test_a_closed_sqlite_manifest_says_so(tmp_path: Path) -> None:
    with SQLiteRunManifest(tmp_path / "manifest.sqlite") as manifest:
        manifest.add(RUN)
    with pytest.raises(SparkManifestsError, match="the manifest was closed; open it again"):
        manifest.get(RUN)


# -- DynamoDB specifics ----------------------------------------------------------------------


def test_times_written_by_other_tools_are_read_on_every_python(aws: Any) -> None:
    """ISO times ending in Z, or with a short fraction: Python 3.9's fromisoformat (EMR 7)
    refuses both."""
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs")
    manifest.create()
    client.put_item(
        TableName="runs",
        Item={
            "RunId": {"S": RUN},
            "RunStatus": {"S": "COMMITTED"},
            "CommittedAt": {"S": "2017-04-11T10:31:05Z"},
            "StartedAt": {"S": "2017-04-11T10:30:00.5+00:00"},
        },
    )
    entry = manifest.get(RUN)
    assert entry is not None
    assert entry.committed_at == datetime(2017, 4, 11, 10, 31, 5, tzinfo=UTC)
    assert entry.started_at == datetime(2017, 4, 11, 10, 30, 0, 500000, tzinfo=UTC)


def test_a_failed_open_closes_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda *a, **k: opened.append(connect(*a, **k)) or opened[-1]
    )
    monkeypatch.setattr(SQLiteRunManifest, "create", _refuse)
    with pytest.raises(SparkManifestsError):
        SQLiteRunManifest(tmp_path / "manifest.sqlite")
    [connection] = opened
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")


def _refuse(self: Any) -> None:
    raise SparkManifestsError("refused")


def test_items_written_by_the_snowplow_sdk_count_as_processed(aws: Any) -> None:
    client = aws.client("dynamodb")
    sdk = SdkRunManifests(client, "snowplow-runs")
    sdk.create()  # the SDK's own table: provisioned 5/5, hash key RunId
    sdk.add(RUN)

    manifest = RunManifests(client, "snowplow-runs")
    manifest.create()  # accepts the SDK's table as it is
    assert manifest.contains(RUN)
    assert manifest.pending([RUN, OTHER]) == [OTHER]
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.owner) == (RunStatus.LEGACY, 0, None)
    assert not manifest.claim(RUN, "job-a")
    manifest.add(RUN)
    assert client.get_item(TableName="snowplow-runs", Key={"RunId": {"S": RUN}})["Item"] == {
        "RunId": {"S": RUN}
    }

    # ... and the SDK reads what we commit.
    manifest.claim(OTHER, "job-a")
    manifest.commit(OTHER, "job-a", rows_in=1)
    assert sdk.contains(OTHER)
    billing = client.describe_table(TableName="snowplow-runs")["Table"]
    assert billing["ProvisionedThroughput"]["ReadCapacityUnits"] == 5


def test_table_layout_and_attribute_names(aws: Any) -> None:
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs", clock=Clock())
    manifest.create()
    table = client.describe_table(TableName="runs")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "RunId", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "RunId", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TableStatus"] == "ACTIVE"

    manifest.claim(RUN, "job-a", lease_seconds=60)
    manifest.commit(RUN, "job-a", rows_in=3, rows_out=2, bad_rows=1, output_path="out/")
    item = client.get_item(TableName="runs", Key={"RunId": {"S": RUN}})["Item"]
    assert item == {
        "RunId": {"S": RUN},
        "RunStatus": {"S": "COMMITTED"},
        "Owner": {"S": "job-a"},
        "Attempts": {"N": "1"},
        "StartedAt": {"S": "2017-04-11T10:31:05+00:00"},
        "CommittedAt": {"S": "2017-04-11T10:31:05+00:00"},
        "UpdatedAt": {"S": "2017-04-11T10:31:05+00:00"},
        "RowsIn": {"N": "3"},
        "RowsOut": {"N": "2"},
        "BadRows": {"N": "1"},
        "OutputPath": {"S": "out/"},
    }


def test_create_with_provisioned_capacity(aws: Any) -> None:
    client = aws.client("dynamodb")
    RunManifests(client, "runs").create(read_capacity=20, write_capacity=10)
    table = client.describe_table(TableName="runs")["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 20
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 10
    with pytest.raises(ValueError, match="both"):
        RunManifests(client, "runs").create(read_capacity=20)


def test_create_refuses_a_table_with_another_key(aws: Any) -> None:
    client = aws.client("dynamodb")
    client.create_table(
        TableName="other",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(SparkManifestsError, match=r"hash key RunId \(type S\)"):
        RunManifests(client, "other").create()


def test_a_missing_table_says_how_to_create_it(aws: Any) -> None:
    manifest = RunManifests(aws.client("dynamodb"), "acme-runs")
    for call in (
        lambda: manifest.contains(RUN),
        lambda: manifest.pending([RUN]),
        lambda: manifest.claim(RUN, "job-a"),
        lambda: list(manifest.entries()),
    ):
        with pytest.raises(ManifestTableNotFoundError) as caught:
            call()
        assert "acme-runs" in str(caught.value)
        assert "manifest create" in str(caught.value)
        assert ".create()" in str(caught.value)


def test_writes_resent_by_botocore_after_a_timeout_are_not_lost(aws: Any) -> None:
    """Each UpdateItem is applied, then sent again, as botocore does when the answer times
    out: the claim must not count a second attempt (and be refused on the last), nor the
    commit report a lost claim."""
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs")
    manifest.create()
    sent: list[str] = []

    def send_again(attempts: int, operation: Any, **_: Any) -> float | None:
        sent.append(operation.name)
        return 0 if attempts == 1 else None  # the answer "timed out": retry at once

    client.meta.events.register("needs-retry.dynamodb.UpdateItem", send_again)

    assert manifest.claim(RUN, "job-a", max_attempts=1)
    manifest.commit(RUN, "job-a", rows_in=3)

    assert sent.count("UpdateItem") >= 4  # claim (and the renewal it became), commit: twice
    entry = manifest.get(RUN)
    assert entry is not None
    assert (entry.status, entry.owner, entry.attempts, entry.rows_in) == (
        RunStatus.COMMITTED,
        "job-a",
        1,
        3,
    )


def test_a_lost_condition_is_explained_from_the_item_it_failed_on(aws: Any) -> None:
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs")
    manifest.create()
    manifest.claim(RUN, "job-b", lease_seconds=60)
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    with pytest.raises(OwnershipLostError, match=r"held by 'job-b' \(lease until"):
        manifest.commit(RUN, "job-a")
    with pytest.raises(RunInProgressError, match=r"held by 'job-b'"):
        manifest.unmark(RUN)
    with pytest.raises(OwnershipLostError, match="not in the manifest"):
        manifest.release(OTHER, "job-a")
    # ALL_OLD returns the item with the failed condition: no second read, no race. (The
    # GetItem and UpdateItem before and after the unmark's DeleteItem lower its archive's
    # watermark.)
    lowering = ["GetItem", "UpdateItem"]
    assert calls == ["UpdateItem", *lowering, "DeleteItem", *lowering, "DeleteItem"]


def test_access_denied_names_the_table(aws: Any) -> None:
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "acme-runs")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "update_item", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(AccessDeniedError, match="acme-runs"):
            manifest.claim(RUN, "job-a")


def test_pending_is_batched_100_keys_a_call(aws: Any) -> None:
    client = aws.client("dynamodb")
    manifest = RunManifests(client, "runs")
    manifest.create()
    run_ids = [f"archive/run=2017-04-11-{i // 60:02d}-{i % 60:02d}-00/" for i in range(250)]
    for run_id in run_ids[::2]:
        manifest.add(run_id)
    calls: list[tuple[int, str | None]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        request = params["RequestItems"]["runs"]
        calls.append((len(request["Keys"]), request.get("ProjectionExpression")))

    client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", record)
    assert manifest.pending(run_ids) == run_ids[1::2]
    # Only the attributes pending needs are read back, not the metrics.
    facts = "#id, #status, #attempts, #error"
    assert calls == [(100, facts), (100, facts), (50, facts)]
    calls.clear()
    assert len(manifest.get_many(run_ids)) == 125
    assert calls == [(100, None), (100, None), (50, None)]


class UnprocessedKeysClient:
    """A DynamoDB client whose BatchGetItem hands back half of its keys ``times`` times."""

    def __init__(self, client: Any, times: float) -> None:
        self._client = client
        self.times = times
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(len(keys))
        if self.times <= 0:
            return self._client.batch_get_item(RequestItems=RequestItems)  # type: ignore[no-any-return]
        self.times -= 1
        half = len(keys) // 2
        response: dict[str, Any] = {"Responses": {table: []}}
        if half:
            response = self._client.batch_get_item(
                RequestItems={table: {**request, "Keys": keys[:half]}}
            )
        response["UnprocessedKeys"] = {table: {**request, "Keys": keys[half:]}}
        return response


def test_unprocessed_keys_are_retried_with_backoff(aws: Any) -> None:
    client = aws.client("dynamodb")
    RunManifests(client, "runs").create()
    throttled = UnprocessedKeysClient(client, times=2)
    manifest = RunManifests(throttled, "runs", read_concurrency=1)
    sleeps: list[float] = []
    manifest._sleep = sleeps.append
    run_ids = [f"archive/run=2017-04-11-10-{i // 60:02d}-{i % 60:02d}/" for i in range(150)]
    for run_id in run_ids[:75]:
        manifest.add(run_id)

    assert manifest.pending(run_ids) == run_ids[75:]
    # 100 keys -> 50 read, 50 handed back and asked again after a pause -> 25 read, 25
    # handed back -> all read; then the other 50 keys.
    assert throttled.calls == [100, 50, 25, 50]
    assert len(sleeps) == 2
    assert all(0 <= pause <= 5 for pause in sleeps)

    forever = RunManifests(UnprocessedKeysClient(client, times=float("inf")), "runs")
    forever._sleep = sleeps.append
    with pytest.raises(RetryableError, match="every key unprocessed"):
        forever.pending(run_ids)


class SlowBatchGetClient:
    """A DynamoDB client whose BatchGetItem takes a while and records calls in flight."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.keys_asked: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.keys_asked.extend(len(r["Keys"]) for r in RequestItems.values())
        return self._slowly(self._client.batch_get_item, RequestItems=RequestItems)

    def _slowly(self, call: Any, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.05)
            return call(**request)  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self.in_flight -= 1


class SlowWritesClient(SlowBatchGetClient):
    """A DynamoDB client whose single-item writes take a while and are counted in flight."""

    def update_item(self, **request: Any) -> dict[str, Any]:
        return self._slowly(self._client.update_item, **request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self._slowly(self._client.delete_item, **request)


def test_pending_reads_batches_concurrently(aws: Any) -> None:
    client = aws.client("dynamodb")
    RunManifests(client, "runs").create()
    run_ids = [
        f"archive/run=2017-04-{11 + i // 600}-{i // 60 % 10:02d}-{i % 60:02d}-00/"
        for i in range(950)
    ]
    RunManifests(client, "runs").add(run_ids[3])
    slow = SlowBatchGetClient(client)

    pending = RunManifests(slow, "runs", read_concurrency=4).pending(run_ids)

    assert pending == run_ids[:3] + run_ids[4:]
    assert sorted(slow.keys_asked) == [50] + [100] * 9
    assert 1 < slow.peak <= 4
    with pytest.raises(ValueError, match="read_concurrency"):
        RunManifests(client, "runs", read_concurrency=0)


def test_edit_many_keeps_several_writes_in_flight(aws: Any) -> None:
    client = aws.client("dynamodb")
    RunManifests(client, "runs").create()
    run_ids = [f"archive/run=2017-04-11-10-{i:02d}-00/" for i in range(40)]
    slow = SlowWritesClient(client)

    assert RunManifests(slow, "runs").edit_many("mark", run_ids) == []

    assert 1 < slow.peak <= 8
    assert {e.status for e in RunManifests(client, "runs").get_many(run_ids).values()} == {
        RunStatus.COMMITTED
    }


def test_concurrent_claims_in_threads_have_one_winner(aws: Any, atomic_moto_dynamodb: None) -> None:
    manifest = RunManifests(aws.client("dynamodb"), "runs")
    manifest.create()
    run_ids = [f"archive/run=2017-04-11-10-{i:02d}-00/" for i in range(40)]
    workers = 6
    barrier = threading.Barrier(workers)

    def claim_all(owner: str) -> list[str]:
        barrier.wait()
        return [run_id for run_id in run_ids if manifest.claim(run_id, owner)]

    with ThreadPoolExecutor(workers) as pool:
        won = list(pool.map(claim_all, [f"job-{i}" for i in range(workers)]))

    winners = Counter(run_id for runs in won for run_id in runs)
    assert winners == Counter(run_ids)  # each run exactly once
    owners = {entry.run_id: entry.owner for entry in manifest.entries()}
    assert all(owners[run_id] == f"job-{i}" for i, runs in enumerate(won) for run_id in runs)


# -- SQLite specifics ------------------------------------------------------------------------


def test_opening_a_new_file_waits_for_another_writer(tmp_path: Path) -> None:
    """Jobs starting together on a new manifest: the switch to WAL mode waits its turn
    (SQLite refuses it at once, without its busy timeout, while another connection writes)."""
    path = tmp_path / "manifest.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_job (x)")  # a new file, not yet in WAL mode
    other.execute("BEGIN IMMEDIATE")
    done_writing = threading.Timer(0.5, other.execute, ("COMMIT",))
    done_writing.start()

    with SQLiteRunManifest(path, timeout=30) as manifest:
        manifest.add(RUN)
        assert manifest.contains(RUN)
    done_writing.join()
    other.close()
    with contextlib.closing(sqlite3.connect(path)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _claim_in_process(path: str, owner: str, run_ids: list[str], barrier: Any, out: Any) -> None:
    manifest = SQLiteRunManifest(path, timeout=60)
    barrier.wait()
    out.put((owner, [run_id for run_id in run_ids if manifest.claim(run_id, owner)]))
    manifest.close()


def test_concurrent_claims_in_processes_have_one_winner(tmp_path: Path) -> None:
    path = str(tmp_path / "manifest.sqlite")
    run_ids = [f"archive/run=2017-04-11-10-{i:02d}-00/" for i in range(60)]
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier, out = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(path, f"p{i}", run_ids, barrier, out))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    results = {}
    while len(results) < workers:
        try:
            owner, runs = out.get(timeout=1)
            results[owner] = runs
        except queue.Empty:
            # A worker that died cannot report: fail now instead of waiting forever.
            assert all(p.exitcode in (None, 0) for p in processes), "a worker process failed"
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    winners = Counter(run_id for runs in results.values() for run_id in runs)
    assert winners == Counter(run_ids)
    with SQLiteRunManifest(path) as manifest:
        owners = {entry.run_id: entry.owner for entry in manifest.entries()}
    assert all(owners[run_id] == owner for owner, runs in results.items() for run_id in runs)


def test_sqlite_threads_sharing_one_manifest(tmp_path: Path) -> None:
    manifest = SQLiteRunManifest(tmp_path / "manifest.sqlite")
    run_ids = [f"archive/run=2017-04-11-10-{i:02d}-00/" for i in range(30)]
    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(lambda owner: [r for r in run_ids if manifest.claim(r, owner)], "abcd"))
    assert sorted(run_id for runs in won for run_id in runs) == sorted(run_ids)


def test_sqlite_file_is_in_wal_mode_and_rows_without_status_are_legacy(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "manifest.sqlite"
    manifest = SQLiteRunManifest(path)
    manifest.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("INSERT INTO run_manifest (run_id) VALUES (?)", (RUN,))
    with SQLiteRunManifest(path) as reopened:
        assert reopened.contains(RUN)
        entry = reopened.get(RUN)
        assert entry is not None
        assert entry.status is RunStatus.LEGACY


def test_sqlite_edit_many_commits_once_per_group_of_runs(tmp_path: Path) -> None:
    manifest = SQLiteRunManifest(tmp_path / "manifest.sqlite")
    statements: list[str] = []
    manifest._conn.set_trace_callback(statements.append)
    run_ids = [f"archive/run=2017-04-11-10-{i // 60:02d}-{i % 60:02d}/" for i in range(1_200)]

    manifest.edit_many("mark", run_ids)

    assert statements.count("COMMIT") == 3  # 500 + 500 + 200
    assert len(manifest.get_many(run_ids)) == 1_200


def test_uri_names_where_a_manifest_lives(aws: Any, tmp_path: Path) -> None:
    assert RunManifests(aws.client("dynamodb"), "runs").uri == "dynamodb://runs"
    path = tmp_path / "manifest.sqlite"
    assert SQLiteRunManifest(path).uri == str(path)
    assert SQLiteRunManifest(":memory:").uri is None


def test_sqlite_in_memory(clock: Clock) -> None:
    with SQLiteRunManifest(":memory:", clock=clock) as manifest:
        assert manifest.path == ":memory:"
        assert manifest.claim(RUN, "job-a", lease_seconds=60)
        assert not manifest.claim(RUN, "job-b", lease_seconds=60)
        manifest.commit(RUN, "job-a", rows_in=2)
        assert manifest.pending([RUN, OTHER]) == [OTHER]


def test_sqlite_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidLocationError, match="is a directory"):
        SQLiteRunManifest(tmp_path)
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello, this is not a database file at all" * 100)
    with pytest.raises(SparkManifestsError, match=r"notes\.txt"):
        SQLiteRunManifest(not_sqlite)


# -- open_manifest ---------------------------------------------------------------------------


def test_open_manifest_forms(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_manifest("dynamodb://acme-runs") as manifest:
        assert isinstance(manifest, RunManifests)
        assert manifest.table_name == "acme-runs"
        manifest.create()
        manifest.add(RUN)
    assert open_manifest("dynamodb://acme-runs", session=aws).contains(RUN)

    monkeypatch.chdir(tmp_path)
    for uri, expected in [
        (str(tmp_path / "a.sqlite"), tmp_path / "a.sqlite"),
        (tmp_path / "b.sqlite", tmp_path / "b.sqlite"),
        (f"file://{tmp_path}/c.sqlite", tmp_path / "c.sqlite"),
        ("sqlite:///rel/d.sqlite", tmp_path / "rel" / "d.sqlite"),
        (f"sqlite:///{tmp_path}/e.sqlite", tmp_path / "e.sqlite"),
    ]:
        with open_manifest(uri) as manifest:
            assert isinstance(manifest, SQLiteRunManifest)
            manifest.add(RUN)
        assert expected.is_file(), uri
    with open_manifest("sqlite:///:memory:") as manifest:
        assert manifest.pending([RUN]) == [RUN]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://acme/manifest", "unsupported scheme 's3'"),
        ("dynamodb://ab", "valid DynamoDB table"),
        ("dynamodb://", "valid DynamoDB table"),
        ("dynamodb://acme/runs", "valid DynamoDB table"),
        ("dynamodb:/acme-runs", "write dynamodb:// as in dynamodb://TABLE"),
        ("sqlite:runs.sqlite", "write sqlite:// as in"),
        ("file://host/runs.sqlite", "not a file:// URI of this machine"),
        ("", "empty"),
    ],
)
def test_open_manifest_refuses_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(InvalidLocationError, match=message) as caught:
        open_manifest(uri)
    assert "dynamodb://TABLE" in str(caught.value)


# -- the Snowplow documentation's loop -------------------------------------------------------


def test_snowplow_documentation_loop(aws: Any) -> None:
    from spark_manifests import RunManifests, list_runids  # the one import that changes

    s3 = aws.client("s3")
    dynamodb = aws.client("dynamodb")
    s3.create_bucket(Bucket="acme-events")
    folders = ["run=2017-04-11-10-31-05", "run-2017-04-11-11-31-05", "run=2017-04-11-12-31-05"]
    for folder in folders:
        s3.put_object(Bucket="acme-events", Key=f"enriched/archive/{folder}/part-0", Body=b"x")
    archive = "s3://acme-events/enriched/archive"
    manifests = RunManifests(dynamodb, "snowplow-run-manifests")
    manifests.create()
    manifests.add("enriched/archive/run=2017-04-11-10-31-05/")
    processed = []

    def process(run_id: str) -> None:
        processed.append(run_id)

    for _ in range(2):  # the second pass finds nothing new
        for run_id in list_runids(s3, archive):
            if not manifests.contains(run_id):
                process(run_id)
                manifests.add(run_id)

    assert processed == [
        "enriched/archive/run-2017-04-11-11-31-05/",
        "enriched/archive/run=2017-04-11-12-31-05/",
    ]
    assert SdkRunManifests(dynamodb, "snowplow-run-manifests").contains(processed[0])
