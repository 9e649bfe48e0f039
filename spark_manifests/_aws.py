"""boto3 clients and the translation of botocore errors into this package's exceptions.

Every public function that talks to AWS accepts an optional ``client`` or ``session``
(as awswrangler does); ``make_client`` turns whichever was given into a client.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.utils import InstanceMetadataRegionFetcher

from .exceptions import (
    AccessDeniedError,
    ArchiveNotFoundError,
    CredentialsMissingError,
    ManifestTableNotFoundError,
    RetryableError,
    SparkManifestsError,
)

_logger = logging.getLogger(__name__)

#: The oldest boto3 (and botocore) with S3's conditional writes (IfMatch, IfNoneMatch), which
#: the S3 state store uses; setup.cfg requires it.
MIN_BOTO3 = "1.35.70"

# Standard mode retries throttling and 5xx with jittered backoff; a backfill must ride out
# bursts of ProvisionedThroughputExceeded and SlowDown rather than fail on the first one.
DEFAULT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
    }
)


def make_client(
    service: str,
    *,
    client: Any | None = None,
    session: boto3.session.Session | None = None,
) -> Any:
    """The given client, or a new one from ``session`` (or the default session).

    Region and endpoint come from the usual AWS settings (``AWS_REGION``,
    ``AWS_ENDPOINT_URL``, profiles).
    """
    if client is not None:
        return client
    try:
        session = session or boto3.session.Session()
        # botocore reads only AWS_DEFAULT_REGION; AWS_REGION is what the other SDKs, the
        # EMR and Glue docs, and this package's docs name.
        region = None if session.region_name else os.environ.get("AWS_REGION") or None
        try:
            return session.client(service, region_name=region, config=DEFAULT_CONFIG)
        except NoRegionError:
            # On EC2 and EMR the instance knows its region, but botocore never asks it.
            region = _instance_region()
            if region is None:
                raise
            _logger.info("AWS region for %s: %s, the instance's", service, region)
            return session.client(service, region_name=region, config=DEFAULT_CONFIG)
    except NoRegionError as exc:
        raise SparkManifestsError(
            f"No AWS region is configured for {service}: set AWS_REGION (or AWS_DEFAULT_REGION) "
            "or pass a boto3 client or session that has one."
        ) from exc
    except BotoCoreError as exc:  # a missing profile, an unreadable config file
        raise SparkManifestsError(
            f"Cannot make an AWS {service} client: {exc}. Check AWS_PROFILE and the AWS "
            "config and credentials files."
        ) from exc


def _instance_region() -> str | None:
    """The region of the EC2 instance this runs on (EMR's nodes), from the instance metadata
    service; ``None`` elsewhere (after one second) or with AWS_EC2_METADATA_DISABLED=true."""
    return InstanceMetadataRegionFetcher(timeout=1, num_attempts=1).retrieve_region()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate_error(exc: Exception, *, action: str, resource: str) -> Exception:
    """The package exception that stands for a botocore error.

    ``action`` is what was being done (``"read the run manifest"``) and ``resource`` names the
    table, bucket or key. Errors this function does not know are returned unchanged.
    """
    where = f"{action} ({resource})"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsMissingError(
            f"Could not {where}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an instance role is available."
        )
    if isinstance(
        exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionError)
    ):
        return RetryableError(f"Could not {where}: the AWS endpoint did not answer ({exc}).")
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        if code in THROTTLING_CODES or status == 503 or status >= 500:
            return RetryableError(f"Could not {where}: AWS answered {code or status}, try again.")
        if code in ACCESS_DENIED_CODES or (status == 403 and code not in CREDENTIAL_CODES):
            return AccessDeniedError(
                f"Access denied: could not {where}. Grant the caller's IAM role the needed "
                "actions on it (see the README's IAM policy)."
            )
        if code in CREDENTIAL_CODES:
            return CredentialsMissingError(
                f"Could not {where}: AWS rejected the credentials ({code}). Check the access "
                "key, secret and session token in use."
            )
        if code == "ResourceNotFoundException":
            return ManifestTableNotFoundError(
                f"Could not {where}: the DynamoDB table does not exist. Create it with "
                "`spark-manifests manifest create --manifest dynamodb://TABLE` or "
                "RunManifests(client, table).create()."
            )
        if code == "NoSuchBucket":
            return ArchiveNotFoundError(f"Could not {where}: the S3 bucket does not exist.")
        return SparkManifestsError(f"Could not {where}: {code or status} {message}".rstrip())
    if isinstance(exc, ParamValidationError) and "Unknown parameter" in str(exc):
        return SparkManifestsError(
            f"Could not {where}: botocore {botocore.__version__} is too old for the call "
            f"({exc}). Install boto3>={MIN_BOTO3} where the job's driver runs "
            f"(pip install -U 'boto3>={MIN_BOTO3}'; on EMR, a bootstrap action)."
        )
    if isinstance(exc, BotoCoreError):
        return SparkManifestsError(f"Could not {where}: {exc}")
    return exc


@contextlib.contextmanager
def aws_errors(action: str, resource: str) -> Iterator[None]:
    """Re-raise botocore errors inside the block as package exceptions.

    Examples
    --------
    >>> with aws_errors("list the archive", "s3://acme/archive/"):
    ...     pass
    """
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        translated = translate_error(exc, action=action, resource=resource)
        if translated is exc:
            raise
        _logger.debug("AWS error while trying to %s: %s", action, exc)
        raise translated from exc
