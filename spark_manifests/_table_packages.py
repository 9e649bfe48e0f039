"""Maven coordinates of the Delta Lake and Apache Iceberg Spark packages for a Spark version.

Each Delta and Iceberg release is built against one Spark minor version (and one Scala
version), so the package is a function of both. The tables below list the newest release of
each for every Spark minor it supports (Maven Central, checked 2026-12); a Spark minor
absent from a table has no release, and asking for it raises one clear line.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

from .exceptions import TableFormatUnavailableError

__all__ = [
    "DELTA_RELEASES",
    "ICEBERG_RELEASES",
    "installed_spark_versions",
    "table_format_package",
    "table_format_spark_config",
]

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


def _minor(version: str) -> str:
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise TableFormatUnavailableError(f"{version!r} is not a Spark or Scala version (X.Y[.Z]).")
    return f"{match.group(1)}.{match.group(2)}"


def table_format_package(table_format: str, spark_version: str, scala_version: str) -> str:
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
    spark, scala = _minor(spark_version), _minor(scala_version)
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
    spark_version: str,
    scala_version: str,
    *,
    ivy: str | None = None,
) -> dict[str, str]:
    """The Spark settings a new session needs to write ``table_formats`` (one or several):
    their packages (from Maven Central, into the Ivy cache ``ivy`` if given) and SQL
    extensions; Delta also needs its catalog as the session catalog.

    Examples
    --------
    >>> table_format_spark_config("iceberg", "4.1.4", "2.13.17")["spark.jars.packages"]
    'org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0'
    """
    formats = [table_formats] if isinstance(table_formats, str) else list(table_formats)
    packages = [table_format_package(name, spark_version, scala_version) for name in formats]
    config = {
        "spark.jars.packages": ",".join(packages),
        "spark.sql.extensions": ",".join(_EXTENSIONS[name] for name in formats),
    }
    if "delta" in formats:
        config["spark.sql.catalog.spark_catalog"] = (
            "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    if ivy:
        config["spark.jars.ivy"] = ivy
    return config


def installed_spark_versions() -> tuple[str, str]:
    """The (Spark, Scala) versions of the installed pyspark, read without starting Spark:
    the Scala version from the ``scala-library`` jar pyspark ships.

    Examples
    --------
    >>> installed_spark_versions()  # doctest: +SKIP
    ('4.1.4', '2.13.17')
    """
    import pyspark

    jars = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "scala-library-*.jar"))
    scala = re.search(r"scala-library-(\d+\.\d+(?:\.\d+)?)\.jar$", jars[0]) if jars else None
    if scala is None:
        raise TableFormatUnavailableError(
            f"Cannot tell pyspark {pyspark.__version__}'s Scala version (no scala-library jar "
            "in pyspark/jars): set spark.jars.packages yourself."
        )
    return pyspark.__version__, scala.group(1)
