"""Spark preflight: the job's session, started before a run is claimed, and a storage check.

A session that cannot start (a wrong master, no Java) is the job's failure, not the runs':
it must not use up their attempts. Nor may a job on a cluster keep its manifest or state on
the driver's disk, which goes with the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Union

from ._s3a import ensure_s3a, is_s3_uri
from ._spark import get_or_create_spark
from .exceptions import JobFailedError
from .manifest import RunManifest
from .retry import describe_error
from .state import StateStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

SparkArg = Union["SparkSession", Callable[[], "SparkSession"], None]


class SparkPreflight:
    """The session of job ``job_name``: given, made by a function on first use, or the
    active (or a new) one; started and checked once before the first claim."""

    def __init__(
        self,
        spark: SparkArg,
        *,
        job_name: str,
        manifest: RunManifest,
        state_store: StateStore,
        s3_locations: Sequence[str] = (),
        s3_setup: bool = True,
    ) -> None:
        self._spark = spark
        self._session: SparkSession | None = None
        self.job_name = job_name
        self.manifest = manifest
        self.state_store = state_store
        # Spark's own S3 reads and writes (the archive, the output): set up once, on the
        # session as it comes, unless the user leaves S3 to the session's configuration.
        self.s3 = s3_setup and any(is_s3_uri(location) for location in s3_locations)
        self._storage_checked = False

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            self._session = self._open()
        return self._session

    def _open(self) -> SparkSession:
        if self._spark is None:
            name = f"spark_manifests:{self.job_name}"
            return get_or_create_spark(name, s3_locations=("s3://",) if self.s3 else ())
        spark = self._spark() if callable(self._spark) else self._spark
        if self.s3:
            ensure_s3a(spark)
        return spark

    def start(self) -> None:
        """Start Spark before claiming a batch, and check where the job's records are kept."""
        try:
            spark = self.session
        except Exception as exc:
            advice = (
                " Check that Java 17 is installed and on PATH, or JAVA_HOME names it."
                if "JAVA_GATEWAY_EXITED" in str(exc) or "JAVA_HOME" in str(exc)
                else ""
            )
            raise JobFailedError(
                f"Job {self.job_name} stopped: Spark did not start: "
                f"{describe_error(exc).rstrip('.')}.{advice}"
            ) from exc
        if not self._storage_checked:
            # Checked again by the next run() if it refused: a retry must not get past it.
            self._check_storage_outlives_the_driver(spark)
            self._storage_checked = True

    def _check_storage_outlives_the_driver(self, spark: SparkSession) -> None:
        """Warn when the manifest or state is on the driver's disk while Spark runs on a
        cluster, whose drivers' disks are not kept; refuse in cluster deploy mode, where the
        driver's working directory goes with its YARN container."""
        local = [
            f"{what} {where}"
            for what, where, on_driver in (
                ("manifest", getattr(self.manifest, "path", ""), _is_sqlite(self.manifest)),
                ("state", self.state_store.location.uri, not self.state_store.location.is_s3),
            )
            if on_driver
        ]
        # From the session's conf, not its SparkContext: a Spark Connect session has none.
        master = spark.conf.get("spark.master", "") or ""
        if master.startswith("local") or not local:
            return
        problem = (
            f"Job {self.job_name}: the {' and the '.join(local)} "
            f"{'are' if len(local) > 1 else 'is'} on the driver's disk, but Spark runs on {master}"
        )
        advice = "give --manifest dynamodb://TABLE and --state s3://bucket/prefix/"
        if spark.conf.get("spark.submit.deployMode", "client") == "cluster":
            raise JobFailedError(
                f"{problem} in cluster mode: they would go with the driver's container and "
                f"every run would be processed again. Stopped before claiming a run; {advice}."
            )
        _logger.warning(
            "%s: unless that disk is kept between jobs, every run will be processed again; %s.",
            problem,
            advice,
        )


def _is_sqlite(manifest: RunManifest) -> bool:
    from .manifest_sqlite import SQLiteRunManifest

    return isinstance(manifest, SQLiteRunManifest)
