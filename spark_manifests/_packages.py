"""Maven coordinates of the Java packages a feature needs, matching the running Spark.

A feature is a name: ``"s3"`` (``hadoop-aws``), ``"delta"`` or ``"iceberg"`` (their Spark
packages); ``packages_for`` gives the ``spark.jars.packages`` value for a list of them and
the Spark, Scala and Hadoop versions they must match, and ``table_format_spark_config``
the whole Spark settings of a table format. The versions come from the JVM of a running
session (``running_versions``), or, before one starts, from the jars of the Spark
installation pyspark launches (``installed_versions``).

Each Delta and Iceberg release is built against one Spark minor version (and one Scala
version), so their package is a function of both. The tables below list the newest release of
each for every Spark minor it supports (Maven Central, checked 2026-12); a Spark minor absent
from a table has no release, and asking for it raises one clear line.

``python -m spark_manifests._packages --resolve`` downloads them once into Spark's Ivy cache
(``--ivy DIR`` names another cache folder), so that later sessions start without a download:

    python -m spark_manifests._packages --resolve --features s3,delta --ivy .cache/ivy
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

from .exceptions import TableFormatUnavailableError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_logger = logging.getLogger(__name__)

#: The table formats :func:`table_format_package` knows.
TABLE_FORMATS = ("delta", "iceberg")
#: The features :func:`packages_for` knows.
FEATURES = ("s3", *TABLE_FORMATS)

#: Spark minor -> (artifact, version) of Delta Lake's Spark package; ``{scala}`` is filled in.
DELTA_RELEASES: dict[str, tuple[str, str]] = {
    "3.5": ("io.delta:delta-spark_{scala}", "3.3.2"),
    "4.0": ("io.delta:delta-spark_4.0_{scala}", "4.4.0"),
    "4.1": ("io.delta:delta-spark_4.1_{scala}", "4.4.0"),
    "4.2": ("io.delta:delta-spark_4.2_{scala}", "4.4.0"),
}

#: Spark minor -> version of ``org.apache.iceberg:iceberg-spark-runtime-<spark>_<scala>``.
ICEBERG_RELEASES: dict[str, str] = {
    "3.5": "1.12.0",
    "4.0": "1.11.0",
    "4.1": "1.12.0",
}

_EXTENSIONS = {
    "delta": "io.delta.sql.DeltaSparkSessionExtension",
    "iceberg": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
}
_NAMES = {"delta": "Delta Lake", "iceberg": "Apache Iceberg"}

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
    missing or not a release number; ``TableFormatUnavailableError``
    for a table format without a release for that Spark.

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
        elif feature in TABLE_FORMATS:
            coordinates.append(table_format_package(feature, spark_version, scala_version))
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


def table_format_package(
    table_format: str, spark_version: str | None, scala_version: str | None
) -> str:
    """The Maven coordinate of ``table_format``'s Spark package for this Spark and Scala.

    Raises ``TableFormatUnavailableError`` when no release
    supports that Spark version.

    Examples
    --------
    >>> table_format_package("delta", "4.1.4", "2.13.17")
    'io.delta:delta-spark_4.1_2.13:4.4.0'
    >>> table_format_package("iceberg", "3.5.9", "2.12.18")
    'org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.12.0'
    """
    spark, scala = _minor(spark_version, "Spark"), _minor(scala_version, "Scala")
    releases: dict[str, str]
    if table_format == "delta":
        releases = {minor: f"{name}:{version}" for minor, (name, version) in DELTA_RELEASES.items()}
    elif table_format == "iceberg":
        releases = {
            minor: f"org.apache.iceberg:iceberg-spark-runtime-{minor}_{{scala}}:{version}"
            for minor, version in ICEBERG_RELEASES.items()
        }
    else:
        raise TableFormatUnavailableError(
            f"Unknown table format {table_format!r}: use 'delta' or 'iceberg'."
        )
    if spark not in releases:
        raise TableFormatUnavailableError(
            f"{_NAMES[table_format]} has no release for Spark {spark_version}: it supports "
            f"Spark {', '.join(sorted(releases))}; run this job with one of those pyspark "
            f"versions (pip install 'spark_manifests[{table_format}]')."
        )
    return releases[spark].format(scala=scala)


def table_format_spark_config(
    table_formats: str | Sequence[str],
    spark_version: str | None = None,
    scala_version: str | None = None,
    *,
    ivy: str | None = None,
) -> dict[str, str]:
    """The Spark settings a new session needs to write ``table_formats`` (one or several):
    their packages (from Maven Central, into the Ivy cache ``ivy`` if given) and SQL
    extensions; Delta also needs its catalog as the session catalog. The versions are the
    installed Spark's (``installed_versions``) unless given.

    Examples
    --------
    >>> table_format_spark_config("iceberg", "4.1.4", "2.13.17")["spark.jars.packages"]
    'org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0'
    """
    formats = [table_formats] if isinstance(table_formats, str) else list(table_formats)
    if spark_version is None or scala_version is None:
        installed = installed_versions()
        spark_version = spark_version or installed.spark
        scala_version = scala_version or installed.scala
    config = {
        "spark.jars.packages": ",".join(
            packages_for(formats, spark_version=spark_version, scala_version=scala_version)
        ),
        "spark.sql.extensions": ",".join(_EXTENSIONS[name] for name in formats),
    }
    if "delta" in formats:
        config["spark.sql.catalog.spark_catalog"] = (
            "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    if ivy:
        config["spark.jars.ivy"] = ivy
    return config


def _minor(version: str | None, what: str) -> str:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if not match:
        raise TableFormatUnavailableError(
            f"Cannot tell the {what} minor version from {version!r}: set "
            "spark.jars.packages to the table format's package yourself."
        )
    return f"{match.group(1)}.{match.group(2)}"


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
    parser.add_argument(
        "--features", default="s3", help="comma-separated: s3, delta, iceberg (default: s3)"
    )
    parser.add_argument("--resolve", action="store_true", help="download them into Ivy's cache")
    parser.add_argument("--ivy", help="Ivy cache folder (default: Spark's, under ~)")
    args = parser.parse_args(argv)
    features = [name.strip() for name in args.features.split(",") if name.strip()]
    try:
        packages = installed_packages(features)
    except (ValueError, TableFormatUnavailableError) as exc:
        print(exc, file=sys.stderr)
        return 2
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
