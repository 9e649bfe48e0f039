"""SparkSession helpers for the driver."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from ._s3a import ensure_s3a, is_s3_uri, with_s3a_packages

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

_LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"
_SPARK_LISTING_THRESHOLD = 32  # Spark's default for it
# The name spark-submit gives the JVM pyspark starts for a plain Python process.
_PLAIN_PYTHON_APP_NAME = "pyspark-shell"


def get_or_create_spark(
    app_name: str = "spark_manifests",
    master: str | None = None,
    config: Mapping[str, str] | None = None,
    *,
    s3_locations: Sequence[str] = (),
    s3_setup: bool = True,
) -> SparkSession:
    """The running SparkSession, or a new one.

    What Spark was launched with wins over this package's defaults: spark-submit's
    ``--master``, ``--name`` and ``--conf``, and ``spark-defaults.conf`` (EMR sets
    ``spark.master=yarn`` there). Without them the session runs on every local core, is named
    ``app_name`` and uses UTC. ``master`` (the command's ``--master``) wins over all; ``config``
    is set on the session, and on the JVM when this starts it (driver memory, jars).

    When one of ``s3_locations`` (the archive, the output) is on S3, the session is made to
    read and write it (see ``ensure_s3a``); a session started here gets the ``hadoop-aws``
    package of its Hadoop. ``s3_setup=False`` leaves S3 to the session's own configuration.

    Examples
    --------
    >>> spark = get_or_create_spark(s3_locations=["s3://acme/archive/"])  # doctest: +SKIP
    """
    from pyspark.sql import SparkSession

    s3 = s3_setup and any(is_s3_uri(location) for location in s3_locations)
    running = running_session()
    if running is not None:
        if s3:
            ensure_s3a(running)
        return running
    if s3:
        config = with_s3a_packages(config or {})
    launched = _launch_conf(config or {})
    builder = SparkSession.builder
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    if launched.get("spark.app.name") in (None, _PLAIN_PYTHON_APP_NAME):
        builder = builder.appName(app_name)
    if "spark.sql.session.timeZone" not in launched:
        builder = builder.config("spark.sql.session.timeZone", "UTC")
    master = master or launched.get("spark.master") or "local[*]"
    if master.startswith("local"):
        # Python workers must run this interpreter, or a job started from a venv cannot import
        # its own functions; on a cluster the workers' Python is the cluster's to choose.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = builder.master(master).getOrCreate()
    context = session.sparkContext
    _logger.info("Started SparkSession %s (master %s)", context.appName, context.master)
    if s3:
        ensure_s3a(session)
    return session


def running_session() -> SparkSession | None:
    """The SparkSession running in this process, if any, whichever thread started it."""
    from pyspark.sql import SparkSession

    # getActiveSession() sees only this thread's session; a notebook's may be another's.
    return SparkSession.getActiveSession() or SparkSession._instantiatedSession


def _launch_conf(config: Mapping[str, str]) -> dict[str, str]:
    """The configuration of the JVM that runs Spark, started here with ``config`` when there
    is none yet (under spark-submit it runs already, with the submit configuration).

    Read from the JVM: before it starts, SparkConf() is an empty dict, and a job submitted to
    a cluster would be started on local[*].
    """
    from pyspark import SparkConf, SparkContext

    launch = SparkConf(loadDefaults=False).setAll(list(config.items()))
    SparkContext._ensure_initialized(conf=launch)
    return dict(SparkConf().getAll())


def spark_is_gone(spark: SparkSession) -> bool:
    """Whether the session's JVM has stopped or died, so that nothing more can run on it.

    A Spark Connect session has no JVM here: its server's health is not judged.
    """
    context = getattr(spark, "_sc", None)
    if context is None:
        return False
    try:
        return context._jsc is None or bool(context._jsc.sc().isStopped())
    except Exception:  # the JVM does not answer: killed, or out of memory
        return True


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
