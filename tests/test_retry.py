"""Which errors are retried: classify_error on Python, AWS and Spark (Py4J) errors, and
what decide says the driver loop does about them."""

from __future__ import annotations

import pytest

from spark_manifests import AccessDeniedError, JobFailedError, RetryableError, RunInputError
from spark_manifests.retry import (
    FAIL_RUN,
    RAISE,
    RETRY,
    SPLIT,
    RetryPolicy,
    classify_error,
    decide,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TimeoutError("read timed out"), RetryableError),
        (ConnectionResetError("reset by peer"), RetryableError),
        (FileNotFoundError("part-0.gz"), RunInputError),
        (ValueError("cannot cast"), RunInputError),
    ],
)
def test_python_errors(error: Exception, kind: type) -> None:
    assert type(classify_error(error, what="batch 1")) is kind


# Spark's own wording; the cause sits below Py4J's "An error occurred while calling" line.
SPARK_FAILURES = {
    "Job aborted due to stage failure: Task 3 in stage 7.0 failed 4 times, most recent "
    "failure: Lost task 3.3 (TID 88) (10.0.0.5 executor 2): ExecutorLostFailure (executor 2 "
    "exited caused by one of the running tasks)": RetryableError,
    "Job aborted due to stage failure: AmazonS3Exception: Please reduce your request rate. "
    "(Service: Amazon S3; Status Code: 503; Error Code: SlowDown)": RetryableError,
    "java.nio.file.AccessDeniedException: s3a://acme/archive/run=2017-04-11-10-31-05/part-0: "
    "getFileStatus: AmazonS3Exception: Forbidden (Status Code: 403)": AccessDeniedError,
    "[PATH_NOT_FOUND] Path does not exist: file:/archive/run=2017-04-11-10-31-05": RunInputError,
    "java.io.IOException: com.amazonaws.services.s3.model.AmazonS3Exception: The operation "
    "is not valid for the object's access tier (Error Code: InvalidObjectState)": RunInputError,
    # Cancelled by a user: stop the job, fail no run.
    "[SPARK_JOB_CANCELLED] Job 2 cancelled part of cancelled job group 7 SQLSTATE: "
    "XXKDA": JobFailedError,
    "Job 3 cancelled because SparkContext was shut down": JobFailedError,
}


@pytest.mark.parametrize(("message", "kind"), SPARK_FAILURES.items())
def test_spark_errors_are_classified_by_their_java_cause(spark, message: str, kind: type) -> None:
    from py4j.protocol import Py4JJavaError

    java_error = spark._jvm.org.apache.spark.SparkException(message)
    error = Py4JJavaError("An error occurred while calling o142.parquet.\n", java_error)

    classified = classify_error(error, what="batch 1")

    assert type(classified) is kind
    # The message shows the Java error, not Py4J's call.
    assert "SparkException: " + message[:40] in str(classified)
    assert "o142" not in str(classified)


def test_backoff_grows_and_stops_at_the_ceiling() -> None:
    delays = list(RetryPolicy(max_retries=4, initial_delay=1, max_delay=3).delays())
    assert len(delays) == 4
    assert 0.5 <= delays[0] <= 1
    assert 1 <= delays[1] <= 2
    assert all(1.5 <= delay <= 3 for delay in delays[2:])


def test_an_archived_object_says_to_restore_it(spark) -> None:
    from py4j.protocol import Py4JJavaError

    java_error = spark._jvm.java.io.IOException(
        "AmazonS3Exception: The operation is not valid for the object's access tier "
        "(Error Code: InvalidObjectState)"
    )
    error = Py4JJavaError("An error occurred while calling o142.parquet.\n", java_error)
    assert "is archived" in str(classify_error(error, what="batch 1"))


DECIDE = {"what": "batch 1", "job_name": "job", "policy": RetryPolicy(initial_delay=0)}


def test_a_transient_error_is_retried_until_its_retries_are_used_up() -> None:
    timeout = TimeoutError("read timed out")
    first = decide(timeout, retry=0, runs=1, **DECIDE)
    assert (first.action, first.delay) == (RETRY, 0.0)
    assert isinstance(first.error, RetryableError)
    assert decide(timeout, retry=3, runs=1, **DECIDE).action == FAIL_RUN
    # Outlasting its retries in a batch, it may be any run's: each is tried alone.
    split = decide(timeout, retry=3, runs=4, **DECIDE)
    assert (split.action, split.each_alone) == (SPLIT, True)


def test_a_run_error_splits_its_batch_in_halves_or_fails_its_only_run() -> None:
    bad = ValueError("cannot cast")
    split = decide(bad, retry=0, runs=4, **DECIDE)
    assert (split.action, split.each_alone) == (SPLIT, False)
    failed = decide(bad, retry=0, runs=1, **DECIDE)
    assert failed.action == FAIL_RUN
    assert "batch 1 failed: ValueError: cannot cast" in str(failed.error)


@pytest.mark.parametrize(
    ("error", "spark_gone", "says"),
    [
        (JobFailedError("already the job's"), False, "already the job's"),
        (ValueError("spark-manifests: the run value 2017-04-11; x"), False, "The run value"),
        (ValueError("anything"), True, "Spark stopped while processing batch 1"),
        (PermissionError("Access Denied"), False, "Job job stopped: batch 1 failed: access"),
        (ValueError("[SPARK_JOB_CANCELLED] Job 2 cancelled"), False, "was cancelled"),
    ],
)
def test_the_jobs_own_trouble_stops_it_at_once(error, spark_gone, says) -> None:
    decision = decide(error, retry=0, runs=4, spark_gone=lambda: spark_gone, **DECIDE)
    assert decision.action == RAISE
    assert isinstance(decision.error, JobFailedError)
    assert says in str(decision.error)
