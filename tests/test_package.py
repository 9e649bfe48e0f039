"""The package as a library: what importing it costs and changes."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: the test session has pyspark loaded already.
_IMPORT_EVERYTHING_BUT_SPARK = """
import json, logging, sys
import spark_manifests
from spark_manifests import cli, manifest, runs, state
from spark_manifests import (
    ManifestedRunSource, RunManifests, SQLiteRunManifest, StateStore, list_runs, open_manifest,
)
package = logging.getLogger("spark_manifests")
print(json.dumps({
    "pyspark": sorted(name for name in sys.modules if name.split(".")[0] == "pyspark"),
    "handlers": [type(handler).__name__ for handler in package.handlers],
    "root_handlers": len(logging.getLogger().handlers),
}))
"""


def test_import_needs_no_spark_and_configures_no_logging() -> None:
    """README: `import spark_manifests` needs only boto3; the package adds a NullHandler."""
    answer = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING_BUT_SPARK],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(answer.stdout)
    assert loaded == {"pyspark": [], "handlers": ["NullHandler"], "root_handlers": 0}


def test_every_public_name_is_importable_from_the_package() -> None:
    """README names `RetryPolicy` and `JobSummary` as `spark_manifests` names, among others."""
    import spark_manifests

    missing = [name for name in spark_manifests.__all__ if not hasattr(spark_manifests, name)]
    assert missing == []
    assert {"RetryPolicy", "JobSummary"} <= set(spark_manifests.__all__)
