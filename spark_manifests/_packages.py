"""Maven coordinates of the Java packages a feature needs, matching the running Spark.

A feature is a name (``"s3"``; table formats add theirs); ``packages_for`` gives the
``spark.jars.packages`` value for a list of them and the Spark, Scala and Hadoop versions they
must match. The versions come from the JVM of a running session (``running_versions``),
or, before one starts, from the jars of the Spark installation pyspark launches
(``installed_versions``).

``python -m spark_manifests._packages --resolve`` downloads them once into Spark's Ivy cache
(``--ivy DIR`` names another cache folder), so that later sessions start without a download:

    python -m spark_manifests._packages --resolve --features s3 --ivy .cache/ivy
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

#: The features ``packages_for`` knows.
FEATURES = ("s3",)

# hadoop-aws pulls in the AWS SDK bundle its Hadoop release was built with (aws-java-sdk-bundle
# 1.12.x up to Hadoop 3.3, software.amazon.awssdk:bundle 2.x from 3.4): Ivy and Maven resolve
# it transitively, so the SDK version never has to be named, nor kept in step, here.
_HADOOP_AWS = "org.apache.hadoop:hadoop-aws:{hadoop}"
# "3.3.6-amzn-3" (EMR), "3.4.1-SNAPSHOT": the release is the leading numbers.
_RELEASE_RE = re.compile(r"^(\d+\.\d+\.\d+)")
# Jars whose name carries the Hadoop / Scala version of a Spark installation.
_HADOOP_JARS = ("hadoop-client-api-*.jar", "hadoop-common-*.jar")
_SCALA_JAR = "scala-library-*.jar"


class SparkVersions(NamedTuple):
    """The versions a package must match; ``None`` where one is unknown."""

    spark: str | None
    scala: str | None
    hadoop: str | None


def packages_for(
    features: Sequence[str],
    *,
    spark_version: str | None = None,
    scala_version: str | None = None,
    hadoop_version: str | None = None,
) -> list[str]:
    """The Maven coordinates ``features`` need with these Spark, Scala and Hadoop versions.

    Raises ``ValueError`` for an unknown feature, or a version a feature needs that is
    missing or not a release number.

    Examples
    --------
    >>> packages_for(("s3",), hadoop_version="3.3.4")
    ['org.apache.hadoop:hadoop-aws:3.3.4']
    >>> packages_for(("s3",), hadoop_version="3.3.6-amzn-3")
    ['org.apache.hadoop:hadoop-aws:3.3.6']
    """
    coordinates: list[str] = []
    for feature in features:
        if feature == "s3":
            coordinates.append(_HADOOP_AWS.format(hadoop=hadoop_release(hadoop_version)))
        else:
            raise ValueError(f"Unknown feature {feature!r}: expected one of {', '.join(FEATURES)}.")
    return coordinates


def hadoop_release(version: str | None) -> str:
    """The Maven release of a Hadoop version string as the JVM reports it.

    Examples
    --------
    >>> hadoop_release("3.4.1")
    '3.4.1'
    """
    found = _RELEASE_RE.match(version or "")
    if not found:
        raise ValueError(
            f"Cannot tell the Hadoop release from {version!r}: give the hadoop-aws package "
            "of your Hadoop version yourself (spark.jars.packages)."
        )
    return found.group(1)


def running_versions(spark: SparkSession) -> SparkVersions:
    """The Spark, Scala and Hadoop versions of a running session's JVM."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return SparkVersions(
        spark=spark.version,
        scala=str(jvm.scala.util.Properties.versionNumberString()),
        hadoop=str(jvm.org.apache.hadoop.util.VersionInfo.getVersion()),
    )


def installed_versions(spark_home: str | None = None) -> SparkVersions:
    """The versions of the Spark installation pyspark launches (``SPARK_HOME``, or pyspark's
    own), read from its jars' names: what the JVM will report, known before it starts.

    A Spark built without Hadoop ("hadoop-provided") has no Hadoop jar: its ``hadoop`` is
    ``None``, and the version is read from the JVM once it runs.
    """
    import pyspark

    home = spark_home or _spark_home()
    jars = os.path.join(home, "jars") if home else ""
    return SparkVersions(
        spark=pyspark.__version__,
        scala=_jar_version(jars, (_SCALA_JAR,)),
        hadoop=_jar_version(jars, _HADOOP_JARS),
    )


def installed_packages(features: Sequence[str]) -> list[str]:
    """The coordinates of ``features`` for the installed Spark (see ``packages_for``)."""
    versions = installed_versions()
    return packages_for(
        features,
        spark_version=versions.spark,
        scala_version=versions.scala,
        hadoop_version=versions.hadoop,
    )


def _spark_home() -> str | None:
    try:
        from pyspark.find_spark_home import _find_spark_home

        return str(_find_spark_home())
    except Exception:  # no Spark found: pyspark reports it when a session starts
        return None


def _jar_version(folder: str, patterns: Sequence[str]) -> str | None:
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            stem = os.path.basename(path)[: -len(".jar")]
            version = stem[len(pattern) - len("*.jar") :]
            if _RELEASE_RE.match(version):
                return version
    return None


def resolve(features: Sequence[str], *, ivy: str | None = None) -> list[str]:
    """Download the packages of ``features`` for the installed Spark into Ivy's cache
    (``ivy``, or Spark's default); the jar files.

    Runs Spark's own resolver (``spark.jars.packages``) in a JVM started for it alone, so
    later sessions find every jar cached.
    """
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    packages = installed_packages(features)
    conf = SparkConf(loadDefaults=False).set("spark.jars.packages", ",".join(packages))
    if ivy:
        conf.set("spark.jars.ivy", os.path.abspath(ivy))
    gateway = launch_gateway(conf)
    try:
        jars = str(gateway.jvm.System.getProperty("spark.jars") or "")
    finally:
        gateway.shutdown()
        gateway.proc.stdin.close()  # the JVM exits when its stdin closes
        gateway.proc.wait()
    return [urllib.parse.urlparse(jar).path for jar in jars.split(",") if jar]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_manifests._packages",
        description="Print, or download once, the Java packages of features for this Spark.",
    )
    parser.add_argument("--features", default="s3", help="comma-separated (default: s3)")
    parser.add_argument("--resolve", action="store_true", help="download them into Ivy's cache")
    parser.add_argument("--ivy", help="Ivy cache folder (default: Spark's, under ~)")
    args = parser.parse_args(argv)
    features = [name.strip() for name in args.features.split(",") if name.strip()]
    packages = installed_packages(features)
    if not args.resolve:
        print(",".join(packages))
        return 0
    started = time.monotonic()
    jars = resolve(features, ivy=args.ivy)
    megabytes = sum(os.path.getsize(jar) for jar in jars if os.path.exists(jar)) / 1e6
    print(
        f"{','.join(packages)}: {len(jars)} jars, {megabytes:.0f} MB, "
        f"{time.monotonic() - started:.1f} s"
    )
    for jar in jars:
        print(f"  {jar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
