"""Every exception the package raises.

All derive from ``SparkManifestsError``. Each carries ``retryable``: ``True`` when the
same call may succeed if tried again later (throttling, 5xx, timeouts, lost executors), so a
driver loop can decide between a retry with backoff and marking a run failed.

Messages name the input they are about (table, bucket, path, job, run) and say what to do.
They never contain credentials.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ArchiveNotFoundError",
    "CorruptStateError",
    "CredentialsMissingError",
    "IgluConfigError",
    "InvalidJobNameError",
    "InvalidLocationError",
    "InvalidRunIdError",
    "JobAlreadyRunningError",
    "JobFailedError",
    "ManifestTableNotFoundError",
    "OutputInUseError",
    "OwnershipLostError",
    "RetryableError",
    "RunInProgressError",
    "RunInputError",
    "SchemaResolutionError",
    "SparkManifestsError",
    "StateConflictError",
    "StateValueError",
    "TableFormatUnavailableError",
]


class SparkManifestsError(Exception):
    """Base class of every error raised by spark_manifests."""

    #: True when trying the same operation again later may succeed.
    retryable: bool = False


class RetryableError(SparkManifestsError):
    """A transient failure: throttling, a 5xx answer, a timeout or a lost executor."""

    retryable = True


class InvalidRunIdError(SparkManifestsError, ValueError):
    """A run folder name or run id is not of an accepted form or names an impossible date."""


class InvalidLocationError(SparkManifestsError, ValueError):
    """A location (archive, output, state, manifest URI) is malformed."""


class ArchiveNotFoundError(SparkManifestsError, FileNotFoundError):
    """The archive location (a local directory or an S3 bucket) does not exist."""


class RunInputError(SparkManifestsError):
    """A run's input cannot be read: missing files, unreadable data, a bad schema."""


class ManifestTableNotFoundError(SparkManifestsError):
    """The manifest table does not exist yet."""


class AccessDeniedError(SparkManifestsError, PermissionError):
    """AWS refused an action on a table or bucket."""


class CredentialsMissingError(SparkManifestsError):
    """No AWS credentials could be found for a call that needs them."""


class OwnershipLostError(SparkManifestsError):
    """A conditional manifest write lost its condition: the run is not held by this owner.

    Raised by ``commit``, ``fail`` and ``release`` when another job took the run over (for
    example after this job's lease expired). Nothing was written.
    """


class RunInProgressError(SparkManifestsError):
    """A run is held by a job under a live lease, so it cannot be marked, skipped or unmarked now.

    Wait for the job to finish, or for its lease to expire.
    """


class IgluConfigError(SparkManifestsError, ValueError):
    """An Iglu resolver configuration or repository list cannot be used (unreadable file,
    not a resolver-config document, a repository without a connection)."""


class SchemaResolutionError(SparkManifestsError, LookupError):
    """No Iglu repository gave a schema; the message names each repository tried and its
    answer (not found, unreachable). Check the resolver configuration and the schema URI."""


class InvalidJobNameError(SparkManifestsError, ValueError):
    """A job name cannot be used as a state file name."""


class StateValueError(SparkManifestsError, TypeError):
    """A state value is not JSON-serialisable."""


class StateConflictError(SparkManifestsError):
    """Another writer changed a job's state since this store last read or wrote it."""


class CorruptStateError(SparkManifestsError):
    """A state file cannot be read: not a valid state document (truncated, not JSON,
    foreign), or one of a newer format than this version reads (upgrade, keep the file)."""


class OutputInUseError(SparkManifestsError):
    """An output location holds the runs of another manifest (another job's output).

    Each job replaces its runs' partitions under its output: jobs of two manifests on one
    output would overwrite each other's. Give each job its own output.
    """


class JobAlreadyRunningError(SparkManifestsError):
    """A job's running state was saved recently by another process that may still be at work.

    Two runs of one job would resume the same snapshot and process the same runs as one
    owner. Wait for the other run to end, or take over when it is known to be dead.
    """


class JobFailedError(SparkManifestsError):
    """A job stopped: at the first failed run with ``fail_fast``, or for a reason of its own
    (access denied, Spark or a location unusable, its state not saved).

    ``run_id`` names the failed run in the first case, and is ``None`` in the others.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class TableFormatUnavailableError(SparkManifestsError):
    """A Delta Lake or Iceberg table cannot be written from this Spark: no release of the
    format supports its version, or the session lacks the format's package or settings."""
