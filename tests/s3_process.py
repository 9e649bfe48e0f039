"""``spark-manifests process`` with its Spark session made S3-ready before the command runs.

The command's own Spark start passes its archive and output to
``get_or_create_spark(..., s3_locations=...)`` once the driver's preflight is wired to it;
until then this starts the session that way, and the command finds it running.

    python -m tests.s3_process process --archive s3://... --output s3://... --master local[2]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from spark_manifests._spark import get_or_create_spark
from spark_manifests.cli import main


def _value(argv: Sequence[str], option: str) -> str | None:
    return argv[argv.index(option) + 1] if option in argv else None


def launch(argv: Sequence[str]) -> int:
    locations = [value for value in (_value(argv, "--archive"), _value(argv, "--output")) if value]
    get_or_create_spark(
        "spark-manifests",
        master=_value(argv, "--master"),
        config={"spark.ui.showConsoleProgress": "false"},
        s3_locations=locations,
    )
    return main(list(argv))


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
