"""The SparkSession the package starts: what Spark was launched with wins over its defaults.

Each case runs in a process of its own: the test session's Spark is running already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SPARK_SUBMIT, job_environment

# Prints what the session it gets looks like.
_PROBE = """
import json, sys
from spark_manifests._spark import get_or_create_spark
config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
spark = get_or_create_spark("probe-default-name", config=config)
runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
print(json.dumps({
    "master": spark.sparkContext.master,
    "app_name": spark.sparkContext.appName,
    "time_zone": spark.conf.get("spark.sql.session.timeZone"),
    "heap_mib": runtime.maxMemory() // 2**20,
}))
spark.stop()
"""

pytestmark = pytest.mark.slow


def probe(launcher: list[str], tmp_path: Path, *args: str) -> dict:
    """Run the probe script with ``launcher`` (spark-submit and its options, or Python)."""
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    env = job_environment()
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    done = subprocess.run(
        [*launcher, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_spark_submit_settings_win(tmp_path: Path) -> None:
    """--master, --name and a --conf time zone, as spark-submit passes them."""
    time_zone = "spark.sql.session.timeZone=America/New_York"
    options = ["--master", "local[1]", "--name", "nightly-events", "--conf", time_zone]
    seen = probe([SPARK_SUBMIT, *options], tmp_path)
    assert seen["master"] == "local[1]"
    assert seen["app_name"] == "nightly-events"
    assert seen["time_zone"] == "America/New_York"


def test_a_plain_python_session_gets_the_defaults_and_launch_settings(tmp_path: Path) -> None:
    seen = probe([sys.executable], tmp_path, json.dumps({"spark.driver.memory": "1500m"}))
    assert seen["master"] == "local[*]"
    assert seen["app_name"] == "probe-default-name"
    assert seen["time_zone"] == "UTC"
    assert 1300 <= seen["heap_mib"] <= 1500  # the JVM started with the driver memory asked for
