"""The README's code runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_snowplow_sdk_loop_runs_against_moto(aws) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    for name in ("run=2017-04-11-10-31-05", "run-2017-04-11-11-31-05"):
        s3.put_object(Bucket="acme", Key=f"enriched/archive/{name}/part-0.gz", Body=b"x")
    from spark_manifests import RunManifests

    RunManifests(aws.client("dynamodb"), "acme-enriched-runs").create()
    processed: list[str] = []
    code = python_block_after("### The Snowplow SDK loop, unchanged")

    for _ in range(2):  # the second pass finds every run in the manifest
        exec(code, {"process": processed.append})

    assert processed == [
        "enriched/archive/run=2017-04-11-10-31-05/",
        "enriched/archive/run-2017-04-11-11-31-05/",
    ]
