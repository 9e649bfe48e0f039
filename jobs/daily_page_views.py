"""spark-submit entry: page views per app and day, from every pending run, exactly once.

A custom transform in a few lines: the library lists, claims, reads, writes and commits, and
the arguments, exit status and error lines are those of ``spark-manifests process``::

    spark-submit --py-files spark_manifests.zip jobs/daily_page_views.py \\
        --archive s3://acme/enriched/archive/ --output s3://acme/page_views/ \\
        --manifest dynamodb://acme-page-view-runs --state s3://acme/state/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_manifests.cli import main as spark_manifests

JOB = "daily_page_views"


def daily_page_views(events: DataFrame) -> DataFrame:
    """Page views and visitors per app and day.

    Grouped by run too, so each run keeps its own partition: a day spread over several runs
    has a row in each. Page views add up across them; visitors do not (one visitor can be
    in several runs), so each row keeps a sketch of its visitors, whose union counts a
    day's:

    >>> views = spark.read.parquet("s3://acme/page_views/events")  # doctest: +SKIP
    >>> views.groupBy("app_id", "day").agg(  # doctest: +SKIP
    ...     F.sum("page_views").alias("page_views"),
    ...     F.hll_sketch_estimate(F.hll_union_agg("visitors_sketch")).alias("visitors"),
    ... )
    """
    return (
        events.where(F.col("event") == "page_view")
        .groupBy("run", "app_id", F.to_date("collector_tstamp").alias("day"))
        .agg(
            F.count("*").alias("page_views"),
            F.hll_sketch_agg("domain_userid").alias("visitors_sketch"),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # The job's own name first: a --job given by the user comes later and wins.
    return spark_manifests(["process", "--job", JOB, *arguments], transform=daily_page_views)


if __name__ == "__main__":
    sys.exit(main())
