"""S3 for Spark off EMR: the ``hadoop-aws`` package and the s3a settings a session needs.

On EMR and Glue, ``s3://`` is EMRFS and is left as it is. Elsewhere (a laptop, a notebook,
Kubernetes, a standalone cluster) ``s3://``, ``s3a://`` and ``s3n://`` are all served by
Hadoop's ``S3AFileSystem``, with credentials from the AWS default chain and, when
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` is set, that endpoint with path-style access
(MinIO, LocalStack, moto). Settings a user made are never replaced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ._locations import S3_SCHEMES
from ._packages import hadoop_release, installed_versions, packages_for
from .exceptions import JobFailedError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"
_S3A_ABSTRACT_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3A"
_PACKAGES = "spark.jars.packages"
# The AWS SDK's own default chain: environment, system properties, web identity, profile
# (~/.aws), container and instance role. S3A's default list leaves out the profile.
_DEFAULT_CHAIN_SDK_V2 = "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
_DEFAULT_CHAIN_SDK_V1 = "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
# The source Spark's SparkHadoopUtil gives the Hadoop settings it fills in when unset.
_SET_BY_SPARK_AS_DEFAULT = "Set by Spark to default values"
# Where EMR installs its own jars (EMRFS among them).
_EMR_SHARE = "/usr/share/aws/emr"


def is_s3_uri(location: object) -> bool:
    """Whether ``location`` is an ``s3://``, ``s3a://`` or ``s3n://`` URI.

    Examples
    --------
    >>> is_s3_uri("s3a://acme/out/"), is_s3_uri("/data/out")
    (True, False)
    """
    return str(location).split("://", 1)[0].lower() in S3_SCHEMES and "://" in str(location)


def with_s3a_packages(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` with the ``hadoop-aws`` package of the installed Spark's Hadoop added to
    ``spark.jars.packages``, for a session about to start; as it is on EMR, when it names a
    ``hadoop-aws`` already, or when the Hadoop version cannot be told before the JVM runs
    (``ensure_s3a`` then names the package to add)."""
    merged = dict(config)
    present = [item for item in merged.get(_PACKAGES, "").split(",") if item.strip()]
    if any(":hadoop-aws:" in item for item in present) or _on_emr():
        return merged
    hadoop = installed_versions().hadoop
    if hadoop is None or "amzn" in hadoop:
        return merged
    added = packages_for(("s3",), hadoop_version=hadoop)
    merged[_PACKAGES] = ",".join([*present, *added])
    _logger.info("Adding %s to the session for S3 (s3a)", ",".join(added))
    return merged


def ensure_s3a(spark: SparkSession, environ: Mapping[str, str] | None = None) -> None:
    """Make ``spark`` read and write ``s3://``, ``s3a://`` and ``s3n://`` through s3a.

    A session whose ``s3://`` is another file system (EMRFS on EMR and Glue) is left as it
    is. Otherwise the settings below are made on its Hadoop configuration, each unless the
    user set it: ``fs.s3.impl`` and ``fs.s3n.impl`` to ``S3AFileSystem``; credentials from the
    AWS default chain; and with ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, that endpoint
    with path-style access, the region of ``AWS_REGION`` (or ``us-east-1``), and no checksum
    or change checks that S3-compatible stores may not support.

    Raises ``JobFailedError`` in one line naming the exact
    ``--packages`` value when the session has no ``hadoop-aws``: jars cannot be added to a
    running JVM. A Spark Connect session is left to its server.

    Examples
    --------
    >>> ensure_s3a(spark)  # doctest: +SKIP
    """
    context = getattr(spark, "_sc", None)
    if context is None or context._jsc is None:
        return
    hadoop_conf = context._jsc.hadoopConfiguration()
    current = hadoop_conf.get("fs.s3.impl")
    if current and current != S3A_FILESYSTEM:
        _logger.debug("s3:// is served by %s: S3 set-up left to it", current)
        return
    jvm = context._jvm
    hadoop = str(jvm.org.apache.hadoop.util.VersionInfo.getVersion())
    if not _s3a_loadable(jvm, hadoop_conf):
        raise JobFailedError(missing_package_message(hadoop))
    for key, value in s3a_settings(hadoop, os.environ if environ is None else environ).items():
        if _unset(hadoop_conf, key):
            hadoop_conf.set(key, value)


def missing_package_message(hadoop: str) -> str:
    """The one line that says which package a session without S3A needs.

    Examples
    --------
    >>> missing_package_message("3.3.4")[:60]
    'Spark has no S3 file system (hadoop-aws is not on its classp'
    """
    try:
        package = ",".join(packages_for(("s3",), hadoop_version=hadoop))
    except ValueError:
        package = "org.apache.hadoop:hadoop-aws:<your Hadoop version>"
    return (
        f"Spark has no S3 file system (hadoop-aws is not on its classpath; its Hadoop is "
        f"{hadoop}): start it with --packages {package} (spark-submit, pyspark), or set "
        f"spark.jars.packages={package} before the session starts (a notebook: restart "
        "its kernel); on EMR and Glue, s3:// works as it is."
    )


def s3a_settings(hadoop: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The Hadoop settings that make s3a work with these credentials and endpoint.

    Examples
    --------
    >>> s3a_settings("3.4.1", {})["fs.s3.impl"]
    'org.apache.hadoop.fs.s3a.S3AFileSystem'
    """
    major_minor = tuple(int(part) for part in hadoop_release(hadoop).split(".")[:2])
    settings = {
        "fs.s3.impl": S3A_FILESYSTEM,
        "fs.s3n.impl": S3A_FILESYSTEM,
        "fs.AbstractFileSystem.s3.impl": _S3A_ABSTRACT_FILESYSTEM,
        "fs.AbstractFileSystem.s3n.impl": _S3A_ABSTRACT_FILESYSTEM,
        "fs.s3a.aws.credentials.provider": (
            _DEFAULT_CHAIN_SDK_V2 if major_minor >= (3, 4) else _DEFAULT_CHAIN_SDK_V1
        ),
    }
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings.update(
            {
                "fs.s3a.endpoint": endpoint,
                "fs.s3a.path.style.access": "true",
                "fs.s3a.connection.ssl.enabled": str(urlparse(endpoint).scheme == "https").lower(),
                # A store other than AWS may not return the checksums or version ids s3a
                # checks (Hadoop's third_party_stores.md).
                "fs.s3a.checksum.validation": "false",
                "fs.s3a.change.detection.mode": "none",
            }
        )
        region = region or "us-east-1"
    if region:
        settings["fs.s3a.endpoint.region"] = region
    return settings


def _unset(hadoop_conf: Any, key: str) -> bool:
    """Whether ``key`` has no value but a default: Hadoop's (``core-default.xml``) or one Spark
    fills in. Spark 3.x sets ``fs.s3a.endpoint`` to ``s3.amazonaws.com`` when it is unset, so
    an endpoint from the environment must replace that, or s3a goes to AWS (and, with no
    route there, retries for many minutes)."""
    if hadoop_conf.get(key) is None:
        return True
    sources = hadoop_conf.getPropertySources(key)
    return sources is not None and all(
        str(source).endswith("-default.xml") or str(source) == _SET_BY_SPARK_AS_DEFAULT
        for source in sources
    )


def _s3a_loadable(jvm: Any, hadoop_conf: Any) -> bool:
    """Whether the session's Hadoop finds a file system class for ``s3a://``."""
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass("s3a", hadoop_conf)
        return True
    except Exception as exc:  # No FileSystem for scheme, or ClassNotFoundException
        _logger.debug("No s3a file system: %s", exc)
        return False


def _on_emr() -> bool:
    return os.path.isdir(_EMR_SHARE)
