"""No credential or secret reaches a log line, an output, a state file or the manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import boto3
import pytest

from spark_manifests import open_manifest, write_sample_archive

from .reliability import run_job

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKESECRET000111",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFAKE/SECRET+KEY/0123456789abcd",
    "AWS_SESSION_TOKEN": "FQoFAKEsessionTOKENvalue0123456789",
}

pytestmark = pytest.mark.slow


def test_a_full_run_logs_no_credentials(moto_server: str, tmp_path: Path, monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    archive = tmp_path / "archive"
    write_sample_archive(
        archive, runs=2, events_per_run=50, files_per_run=1, seed=2, bad_line_ratio=0.1
    )
    boto3.client("s3").create_bucket(Bucket="secret-state")
    with open_manifest("dynamodb://secret-runs") as manifest:
        manifest.create()

    result = run_job(
        archive,
        tmp_path / "out",
        "dynamodb://secret-runs",
        "s3://secret-state/j/",
        "secretive",
        cli_flags=["--verbose", "--debug"],
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "DEBUG" in result.stderr  # the most talkative logging was on
    state = boto3.client("s3").get_object(Bucket="secret-state", Key="j/secretive_completed.json")
    with open_manifest("dynamodb://secret-runs") as manifest:
        entries = json.dumps([asdict(e) for e in manifest.entries()], default=str)
    bad_rows = "".join(
        p.read_bytes().decode("latin-1") for p in (tmp_path / "out").rglob("*.parquet")
    )
    for text in (result.stdout, result.stderr, state["Body"].read().decode(), entries, bad_rows):
        for value in SECRETS.values():
            assert value not in text
