"""SparkSession helpers for the driver."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

_LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"
_SPARK_LISTING_THRESHOLD = 32  # Spark's default for it


def get_or_create_spark(
    app_name: str = "spark_manifests",
    master: str | None = None,
    config: Mapping[str, str] | None = None,
) -> SparkSession:
    """The active SparkSession, or a new one (with ``config`` set on it).

    Under spark-submit or on a cluster the master comes from the submit configuration; on a
    plain machine (the CLI, a notebook without Spark config) a local session on every core is
    started. Outputs and parsing assume UTC.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run this interpreter, or a pyspark job started from a venv fails to
    # import its own functions on the workers.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).config("spark.sql.session.timeZone", "UTC")
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    if master:
        builder = builder.master(master)
    elif "spark.master" not in _submit_conf_keys():
        builder = builder.master("local[*]")
    session = builder.getOrCreate()
    _logger.info("Started SparkSession %s (master %s)", app_name, session.sparkContext.master)
    return session


def _submit_conf_keys() -> set[str]:
    """The keys of the configuration Spark is launched with: spark-submit's ``--master`` and
    ``--conf``, ``spark-defaults.conf`` (EMR sets ``spark.master`` there)."""
    from pyspark import SparkConf, SparkContext

    # They live in the JVM: without it SparkConf() is an empty dict, and a job submitted to a
    # cluster was started on local[*] instead. Under spark-submit the JVM is already running.
    SparkContext._ensure_initialized()
    return {key for key, _ in SparkConf().getAll()}


def set_job_description(spark: SparkSession, description: str | None) -> None:
    """Label the Spark jobs started next, so the Spark UI shows which runs they process."""
    try:
        # None clears the description; pyspark's hint only admits str.
        spark.sparkContext.setJobDescription(description)  # type: ignore[arg-type]
    except Exception:  # Spark Connect sessions have no SparkContext
        _logger.debug("Could not set the Spark job description", exc_info=True)


@contextlib.contextmanager
def local_paths_listed_serially(spark: SparkSession, paths: Sequence[str]) -> Iterator[None]:
    """Within the block, Spark lists local input paths on the driver, not with a Spark job.

    Above 32 paths (a batch of runs passes one per file) Spark lists them with a job of a
    task per path: seconds on local disk, where the driver lists them in milliseconds.
    Object-store paths keep Spark's parallel listing, which pays off there.
    """
    if not paths or not all("://" not in path or path.startswith("file:") for path in paths):
        yield
        return
    previous = spark.conf.get(_LISTING_THRESHOLD) or str(_SPARK_LISTING_THRESHOLD)
    spark.conf.set(_LISTING_THRESHOLD, str(max(len(paths), _SPARK_LISTING_THRESHOLD)))
    try:
        yield
    finally:
        spark.conf.set(_LISTING_THRESHOLD, previous)
