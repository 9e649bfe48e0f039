"""spark-submit entry: Snowplow enriched events of every pending run -> Parquet, exactly once.

    spark-submit --py-files spark_manifests.zip jobs/enriched_to_parquet.py \\
        --archive s3://acme/enriched/archive/ --output s3://acme/enriched/parquet/ \\
        --manifest dynamodb://acme-runs --state s3://acme/state/ --job enriched_to_parquet

Arguments are those of ``spark-manifests process`` (``--help`` lists them). The exit status
is 0 when every run was committed, 1 when a run failed, 2 on a configuration error.
"""

from __future__ import annotations

import sys

from spark_manifests.cli import main

if __name__ == "__main__":
    sys.exit(main(["process", *sys.argv[1:]]))
