"""AWS clients: where their region comes from, and botocore errors as package errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from botocore.utils import InstanceMetadataRegionFetcher

from spark_manifests import open_manifest
from spark_manifests._aws import translate_error
from spark_manifests.exceptions import SparkManifestsError


def test_the_region_comes_from_aws_region_too(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore reads only AWS_DEFAULT_REGION; EMR, Glue and the other SDKs set AWS_REGION.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with open_manifest("dynamodb://acme-runs") as manifest:
        assert manifest.dynamodb.meta.region_name == "eu-west-1"


def test_without_a_configured_region_the_instance_region_is_used(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On EC2 and EMR nodes with no region configured, as botocore itself never asks the
    instance metadata service; elsewhere, one clear error."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setattr(InstanceMetadataRegionFetcher, "retrieve_region", lambda self: "ap-south-1")
    with open_manifest("dynamodb://acme-runs") as manifest:
        assert manifest.dynamodb.meta.region_name == "ap-south-1"

    monkeypatch.setattr(InstanceMetadataRegionFetcher, "retrieve_region", lambda self: None)
    with pytest.raises(SparkManifestsError, match="No AWS region is configured for dynamodb"):
        open_manifest("dynamodb://acme-runs")


def test_a_botocore_too_old_for_s3_conditional_writes_says_so(aws: Any) -> None:
    too_old = ParamValidationError(report='Unknown parameter in input: "IfNoneMatch"')
    error = translate_error(too_old, action="write job state", resource="s3://acme/state/")
    assert "is too old for the call" in str(error)
    assert "pip install -U 'boto3>=1.35.70'" in str(error)


def test_a_missing_aws_profile_is_one_clear_error(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(SparkManifestsError, match=r"no-such-profile.*Check AWS_PROFILE"):
        open_manifest("dynamodb://acme-runs")
