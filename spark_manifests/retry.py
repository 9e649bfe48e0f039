"""Which failures are worth retrying, how long to wait between tries, and what to do.

Errors raised while a batch runs come from boto3, from Spark through Py4J, or from user code.
``classify_error`` maps each onto a package exception whose ``retryable`` flag says
whether it is worth another try; ``decide`` turns a batch's failure into the one thing the
driver loop does next (``RetryDecision``): stop the job, retry after a delay, split the
batch to find its bad run, or fail the run.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ._aws import translate_error
from .exceptions import (
    AccessDeniedError,
    CredentialsMissingError,
    InvalidLocationError,
    JobFailedError,
    RetryableError,
    RunInputError,
    SparkManifestsError,
)

_logger = logging.getLogger(__name__)

__all__ = ["RetryDecision", "RetryPolicy", "classify_error", "decide", "describe_error"]

# Spark reports executor-side and storage failures as text inside a Java exception; these
# fragments mark the transient ones.
_TRANSIENT = re.compile(
    r"ExecutorLostFailure|FetchFailed|SocketTimeout|Connection reset|Connection refused"
    r"|TimeoutException|SlowDown|Throttl|ProvisionedThroughputExceeded|Service Unavailable"
    r"|status code: 5\d\d|Status Code: 5\d\d|InternalError|RequestTimeout|Too Many Requests",
)
_ACCESS_DENIED = re.compile(
    r"AccessDenied|Access Denied|Forbidden|status code: 403|Status Code: 403"
    r"|Permission denied"
)
# A folder Spark must create cannot be: a file stands where a folder of the path should be.
_UNWRITABLE = re.compile(r"ParentNotDirectoryException|Mkdirs failed to create")
# Spark cannot reach the location at all: the job's setup, not the run, is wrong.
_NO_FILESYSTEM = re.compile(
    r"No FileSystem for scheme|UnsupportedFileSystemException|ClassNotFoundException: "
    r"\S*S3AFileSystem"
)
# Someone cancelled the Spark jobs (the UI's kill link, cancelAllJobs, a notebook's stop
# button, Spark Connect's interrupt): they want the job to stop, not its runs failed.
_CANCELLED = re.compile(
    r"SPARK_JOB_CANCELLED|OPERATION_CANCELED|\b(?:Job|Stage) \d+ (?:was )?cancelled"
)
# S3 refuses to read an object in Glacier, Deep Archive or an Intelligent-Tiering archive
# tier until it is restored.
_ARCHIVED = re.compile(r"InvalidObjectState")
_PY4J_PREAMBLE = "An error occurred while calling"
_MISSING_INPUT = re.compile(r"PATH_NOT_FOUND|Path does not exist|FileNotFoundException|NoSuchKey")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently retryable failures are retried.

    Parameters
    ----------
    max_retries
        Tries after the first one; 3 by default.
    initial_delay, multiplier, max_delay
        Exponential backoff in seconds, with full jitter.

    Examples
    --------
    >>> list(RetryPolicy(max_retries=2, initial_delay=0).delays())
    [0.0, 0.0]
    """

    max_retries: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0

    def delays(self) -> Iterator[float]:
        """The wait before each retry."""
        for attempt in range(self.max_retries):
            yield self._delay(attempt)

    def delay(self, retry: int) -> float | None:
        """The wait before retry number ``retry`` (0 for the first), or ``None`` when the
        retries are used up.

        Examples
        --------
        >>> RetryPolicy(max_retries=1, initial_delay=0).delay(1) is None
        True
        """
        return self._delay(retry) if 0 <= retry < self.max_retries else None

    def _delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        return random.uniform(ceiling / 2, ceiling) if ceiling else 0.0


def classify_error(exc: BaseException, *, what: str) -> SparkManifestsError:
    """The package exception standing for ``exc``, raised while doing ``what``.

    Examples
    --------
    >>> classify_error(TimeoutError("read timed out"), what="batch 1").retryable
    True
    """
    if isinstance(exc, SparkManifestsError):
        return exc
    if isinstance(exc, (ClientError, BotoCoreError)):
        translated = translate_error(exc, action=what, resource="AWS")
        if isinstance(translated, SparkManifestsError):
            return translated
    lines = _message_lines(exc)
    # Spark wraps the cause several levels deep ("Caused by: ..."): every line counts.
    text = "\n".join(lines)
    shown = _describe(exc, lines)
    if _CANCELLED.search(text):
        return JobFailedError(
            f"{what} was cancelled ({shown}): the job stops. Its runs are not marked failed; "
            "start the job again to process them."
        )
    if isinstance(exc, (TimeoutError, ConnectionError)) or _TRANSIENT.search(text):
        return RetryableError(f"{what} failed with a transient error: {shown}")
    if _ACCESS_DENIED.search(text):
        return AccessDeniedError(f"{what} failed: access denied: {shown}")
    if _UNWRITABLE.search(text):
        return InvalidLocationError(
            f"{what} failed: a folder cannot be created there: {shown}. Check the output "
            "location: a file may stand where a folder of its path should be."
        )
    if _NO_FILESYSTEM.search(text):
        return InvalidLocationError(
            f"{what} failed: Spark has no file system for a location: {shown}. On EMR, use "
            "s3://; elsewhere s3a:// with the hadoop-aws jars on the classpath."
        )
    if _ARCHIVED.search(text):
        return RunInputError(
            f"{what} failed: an object is archived (Glacier, Deep Archive or an "
            f"Intelligent-Tiering archive tier): {shown}. Restore it, then process the run "
            "again (`spark-manifests manifest unmark`), or skip the run."
        )
    if isinstance(exc, FileNotFoundError) or _MISSING_INPUT.search(text):
        return RunInputError(f"{what} failed: input not found: {shown}")
    return RunInputError(f"{what} failed: {shown}")


def describe_error(exc: BaseException) -> str:
    """One line for a message: the exception's type and the first line of what it says.

    Examples
    --------
    >>> describe_error(ValueError("bad\\nvalue"))
    'ValueError: bad'
    """
    return _describe(exc, _message_lines(exc))


def _message_lines(exc: BaseException) -> list[str]:
    """The non-empty lines of the exception's text, without Java stack frames."""
    lines = (line.strip() for line in str(exc).splitlines())
    return [line for line in lines if line and not line.startswith(("at ", "... "))]


def _describe(exc: BaseException, lines: list[str]) -> str:
    """One line: the exception type and the first line of its message.

    Py4J's own first line ("An error occurred while calling o97.parquet.") says nothing;
    the Java error it wraps comes next.
    """
    told = [line for line in lines if not line.startswith(_PY4J_PREAMBLE)]
    first = told[0].lstrip(": ") if told else ""
    return f"{type(exc).__name__}: {first}"[:1000]


# -- what to do about a batch's failure ------------------------------------------------------

#: The start of the error a row with a wrong run value raises from inside the Spark job (see
#: ``spark_manifests.plugins.runs_checked``).
WRONG_RUN_VALUE = "spark-manifests: the run value "

RAISE = "raise"
RETRY = "retry"
SPLIT = "split"
FAIL_RUN = "fail_run"


@dataclass(frozen=True)
class RetryDecision:
    """What the driver loop does about a batch that failed.

    ``action`` is one of:

    - ``"raise"``: stop the job with ``error`` (its runs are not marked failed: the trouble
      is the job's, and would fail every run alike);
    - ``"retry"``: try the batch again after ``delay`` seconds;
    - ``"split"``: find the bad run by processing the batch in parts, each run alone when
      ``each_alone`` (a retryable error that outlasted its retries may be any run's), else
      its two halves;
    - ``"fail_run"``: record the batch's only run failed with ``error``.
    """

    action: str
    error: SparkManifestsError
    delay: float = 0.0
    each_alone: bool = False


def decide(
    exc: BaseException,
    *,
    what: str,
    job_name: str,
    policy: RetryPolicy,
    retry: int,
    runs: int,
    spark_gone: Callable[[], bool] = lambda: False,
) -> RetryDecision:
    """What to do about ``exc``, raised while processing ``what`` (a batch of ``runs`` runs)
    after ``retry`` retries; ``spark_gone`` tells whether the Spark session died.

    Examples
    --------
    >>> decide(TimeoutError("timed out"), what="batch 1", job_name="job",
    ...        policy=RetryPolicy(initial_delay=0), retry=0, runs=1).action
    'retry'
    >>> decide(ValueError("bad"), what="batch 1", job_name="job",
    ...        policy=RetryPolicy(), retry=0, runs=4).action
    'split'
    """
    error = classify_error(exc, what=what)
    stop = _job_stopped_by(exc, error, what=what, job_name=job_name, spark_gone=spark_gone)
    if stop is not None:
        return RetryDecision(RAISE, stop)
    delay = policy.delay(retry) if error.retryable else None
    if delay is not None:
        return RetryDecision(RETRY, error, delay=delay)
    if runs > 1:
        return RetryDecision(SPLIT, error, each_alone=error.retryable)
    return RetryDecision(FAIL_RUN, error)


def _job_stopped_by(
    exc: BaseException,
    error: SparkManifestsError,
    *,
    what: str,
    job_name: str,
    spark_gone: Callable[[], bool],
) -> JobFailedError | None:
    """The job's error when ``exc`` (classified as ``error``) is the job's trouble, not a
    run's: retrying, or going on with the next run, would fail every run alike, each using
    up an attempt."""
    if isinstance(exc, JobFailedError):
        return exc
    if WRONG_RUN_VALUE in str(exc):
        return plugin_broke(job_name, wrong_run_value_message(exc))
    if spark_gone():
        return JobFailedError(
            f"Job {job_name} stopped: Spark stopped while processing {what} "
            f"(its JVM was stopped or died: out of memory, killed?): "
            f"{describe_error(exc)}. Its runs are not marked failed; start the job again."
        )
    if isinstance(error, JobFailedError):  # the Spark jobs were cancelled
        return error
    if isinstance(error, (AccessDeniedError, CredentialsMissingError, InvalidLocationError)):
        # A permission, credential or location problem is the job's, not the run's.
        return JobFailedError(f"Job {job_name} stopped: {error}")
    return None


def plugin_broke(job_name: str, problem: str) -> JobFailedError:
    """The job's error for a reader, transform or sink that breaks its contract: it would
    fail every run alike, so no run is marked failed or uses up an attempt."""
    return JobFailedError(
        f"Job {job_name} stopped: {problem} Its runs are not marked failed; fix it and start "
        "the job again."
    )


def wrong_run_value_message(exc: BaseException) -> str:
    text = str(exc)
    start = text.index(WRONG_RUN_VALUE) + len(WRONG_RUN_VALUE)
    end = text.find("; ", start)
    return (
        f"The run value {text[start : end if end >= 0 else None]}: written, it would replace "
        "the output of the run (or partition) it names. Keep the run column as the reader "
        "set it (group by it too)."
    )
