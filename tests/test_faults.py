"""Faults injected into AWS calls (botocore event hooks) while a job runs against a moto server.

Throttling and 503s on a share of calls must not change the output; a non-retryable fault
(AccessDenied) stops the job with a clear message, and no run is committed without its output.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from chispa import assert_df_equality

from spark_manifests import (
    JobFailedError,
    ManifestedRunSource,
    RunManifests,
    RunStatus,
    SQLiteRunManifest,
    StateStore,
    write_sample_archive,
)
from spark_manifests.retry import RetryPolicy

from .reliability import events_of

RUNS = 4

DYNAMODB_THROTTLED = (
    400,
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
    b'"message":"The level of configured provisioned throughput for the table was exceeded."}',
)
S3_SLOW_DOWN = (
    503,
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
)
S3_ACCESS_DENIED = (
    403,
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
)


class _Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: object):
        yield self.content


class FaultInjector:
    """Answers every ``every``-th request of a client with an error instead of sending it,
    once ``after`` requests have gone through."""

    def __init__(
        self,
        client,
        answer: tuple[int, bytes],
        every: int = 3,
        operations: tuple[str, ...] = (),
        after: int = 0,
    ) -> None:
        self.answer, self.every, self.after = answer, every, after
        self.counter = itertools.count(1)
        self.injected = 0
        service = client.meta.service_model.service_name
        for event in [f"before-send.{service}.{op}" for op in operations] or ["before-send"]:
            client.meta.events.register(event, self.before_send)

    def before_send(self, request, **_: object):
        if self.after:
            self.after -= 1
            return None
        if next(self.counter) % self.every:
            return None
        self.injected += 1
        status, body = self.answer
        return AWSResponse(request.url, status, {}, _Body(body))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fault_archive")
    write_sample_archive(path, runs=RUNS, events_per_run=100, files_per_run=2, seed=21)
    return path


@pytest.fixture
def aws_parts(moto_server: str):
    session = boto3.session.Session()
    s3, dynamodb = session.client("s3"), session.client("dynamodb")
    s3.create_bucket(Bucket="state")
    manifest = RunManifests(dynamodb, "fault-runs")
    manifest.create()
    return s3, dynamodb, manifest


def source_for(spark, archive: Path, output: Path, manifest, s3) -> ManifestedRunSource:
    return ManifestedRunSource(
        str(archive),
        spark=spark,
        output=str(output),
        manifest=manifest,
        state=StateStore("s3://state/jobs/", client=s3),
        job_name="faulty",
        max_runs_per_batch=1,
        retry=RetryPolicy(initial_delay=0.01),
    )


def test_throttling_and_slow_down_do_not_change_the_output(
    spark, archive, tmp_path, aws_parts
) -> None:
    s3, dynamodb, manifest = aws_parts
    clean = tmp_path / "clean"
    ManifestedRunSource(
        str(archive),
        spark=spark,
        output=str(clean),
        manifest=SQLiteRunManifest(":memory:"),
        state=StateStore(str(tmp_path / "st")),
        job_name="clean",
    ).run()
    throttled = FaultInjector(dynamodb, DYNAMODB_THROTTLED, every=3)
    slowed = FaultInjector(s3, S3_SLOW_DOWN, every=2)

    summary = source_for(spark, archive, tmp_path / "out", manifest, s3).run()

    # -s shows what was injected (the figures the reliability report quotes).
    print(f"injected {throttled.injected} DynamoDB throttles, {slowed.injected} S3 SlowDowns")
    assert summary.runs_committed == RUNS
    assert throttled.injected >= RUNS
    assert slowed.injected >= RUNS
    assert_df_equality(events_of(spark, clean), events_of(spark, tmp_path / "out"))
    assert {e.status for e in manifest.entries()} == {RunStatus.COMMITTED}


def test_access_denied_stops_the_job_and_commits_nothing_unwritten(
    spark, archive, tmp_path, aws_parts
) -> None:
    s3, _, manifest = aws_parts
    # The state saves of the start, the claim and the load go through; the one after the
    # write, which must come before the commit, is denied.
    denied = FaultInjector(s3, S3_ACCESS_DENIED, every=1, operations=("PutObject",), after=3)
    source = source_for(spark, archive, tmp_path / "out", manifest, s3)

    with pytest.raises(JobFailedError, match=r"(?i)stopped.*access denied"):
        source.run()

    assert denied.injected == 2  # the save after the write, then the note that it stopped
    # The written run is neither committed (the state that would resume it was not saved)
    # nor failed (the fault is not the run's), and close() gives it back to the next job.
    [entry] = manifest.entries()
    assert (entry.status, entry.owner) == (RunStatus.PROCESSING, source.owner)
    assert os.listdir(tmp_path / "out" / "events") == [entry.run_id.rstrip("/").split("/")[-1]]
    source.close()
    assert list(manifest.entries()) == []
