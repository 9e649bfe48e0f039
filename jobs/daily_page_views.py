"""spark-submit entry: page views per app and day, from every pending run, exactly once.

A custom transform in a few lines: the library lists, claims, reads, writes and commits.

    spark-submit --py-files spark_manifests.zip jobs/daily_page_views.py ARCHIVE OUTPUT [MANIFEST]
"""

from __future__ import annotations

import sys

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_manifests import ManifestedRunSource


def daily_page_views(events: DataFrame) -> DataFrame:
    """Page views per app and day; grouped by run too, so each run keeps its own partition."""
    return (
        events.where(F.col("event") == "page_view")
        .groupBy("run", "app_id", F.to_date("collector_tstamp").alias("day"))
        .agg(F.count("*").alias("page_views"), F.countDistinct("domain_userid").alias("visitors"))
    )


if __name__ == "__main__":
    archive, output, *rest = sys.argv[1:]
    source = ManifestedRunSource(
        archive,
        output=output,
        manifest=rest[0] if rest else None,
        job_name="daily_page_views",
        transform=daily_page_views,
    )
    with source:
        summary = source.run()
    print(summary.to_dict())
    sys.exit(0 if summary.ok else 1)
