"""spark-submit entry: Snowplow enriched events of every pending run -> Parquet (or, with
``--format``, a Delta or Iceberg table), exactly once.

    spark-submit --py-files spark_manifests.zip jobs/enriched_to_parquet.py \\
        --archive s3://acme/enriched/archive/ --output s3://acme/enriched/parquet/ \\
        --manifest dynamodb://acme-runs --state s3://acme/state/ --job enriched_to_parquet

Arguments are those of ``spark-manifests process`` (``--help`` lists them). The exit status
is 0 when no run failed, 1 when a run failed, 2 on a configuration error. As an AWS Glue
script, it takes the same arguments as job parameters and ignores Glue's own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from spark_manifests.cli import main as spark_manifests


def main(argv: Sequence[str] | None = None) -> int:
    """The job on ``argv`` (default: the command line); returns the exit status."""
    return spark_manifests(["process", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
