"""spark_manifests: process every run of an event archive exactly once with PySpark.

Public names are re-exported here. Modules that need pyspark are imported on first use, so
the manifest, run listing and state store work on a machine with boto3 alone.

Examples
--------
>>> from spark_manifests import RunManifests, list_runids
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    AccessDeniedError,
    ArchiveNotFoundError,
    CorruptStateError,
    CredentialsMissingError,
    IgluConfigError,
    InvalidJobNameError,
    InvalidLocationError,
    InvalidRunIdError,
    JobAlreadyRunningError,
    JobFailedError,
    ManifestTableNotFoundError,
    OutputInUseError,
    OwnershipLostError,
    RetryableError,
    RunInProgressError,
    RunInputError,
    SchemaResolutionError,
    SparkManifestsError,
    StateConflictError,
    StateValueError,
    TableFormatUnavailableError,
)

if TYPE_CHECKING:
    from .delta_sink import DeltaSink
    from .enriched import (
        EnrichedRead,
        EntitySchemas,
        enriched_schema,
        read_enriched,
        shredded_to_struct,
    )
    from .iceberg_sink import IcebergSink
    from .iglu import IgluResolver
    from .manifest import ManifestEntry, RunManifest, RunStatus
    from .manifest_dynamodb import RunManifests
    from .manifest_open import open_manifest
    from .manifest_sqlite import SQLiteRunManifest
    from .retry import RetryPolicy
    from .runs import Run, list_runids, list_runs, parse_run_id
    from .samples import write_sample_archive
    from .sinks import BatchCommitSink, ParquetSink, Sink
    from .source import JobSummary, ManifestedRunSource
    from .state import StateData, StateSnapshot, StateStore

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "Run": "runs",
    "list_runs": "runs",
    "list_runids": "runs",
    "parse_run_id": "runs",
    "RunStatus": "manifest",
    "ManifestEntry": "manifest",
    "RunManifest": "manifest",
    "open_manifest": "manifest_open",
    "RunManifests": "manifest_dynamodb",
    "SQLiteRunManifest": "manifest_sqlite",
    "StateData": "state",
    "StateStore": "state",
    "StateSnapshot": "state",
    "DeltaSink": "delta_sink",
    "IcebergSink": "iceberg_sink",
    "BatchCommitSink": "sinks",
    "EnrichedRead": "enriched",
    "EntitySchemas": "enriched",
    "enriched_schema": "enriched",
    "read_enriched": "enriched",
    "shredded_to_struct": "enriched",
    "write_sample_archive": "samples",
    "Sink": "sinks",
    "ParquetSink": "sinks",
    "ManifestedRunSource": "source",
    "JobSummary": "source",
    "RetryPolicy": "retry",
    "IgluResolver": "iglu",
}

__all__ = [
    "AccessDeniedError",
    "ArchiveNotFoundError",
    "BatchCommitSink",
    "CorruptStateError",
    "CredentialsMissingError",
    "DeltaSink",
    "EnrichedRead",
    "EntitySchemas",
    "IcebergSink",
    "IgluConfigError",
    "IgluResolver",
    "InvalidJobNameError",
    "InvalidLocationError",
    "InvalidRunIdError",
    "JobAlreadyRunningError",
    "JobFailedError",
    "JobSummary",
    "ManifestEntry",
    "ManifestTableNotFoundError",
    "ManifestedRunSource",
    "OutputInUseError",
    "OwnershipLostError",
    "ParquetSink",
    "RetryPolicy",
    "RetryableError",
    "Run",
    "RunInProgressError",
    "RunInputError",
    "RunManifest",
    "RunManifests",
    "RunStatus",
    "SQLiteRunManifest",
    "SchemaResolutionError",
    "Sink",
    "SparkManifestsError",
    "StateConflictError",
    "StateData",
    "StateSnapshot",
    "StateStore",
    "StateValueError",
    "TableFormatUnavailableError",
    "__version__",
    "enriched_schema",
    "list_runids",
    "list_runs",
    "open_manifest",
    "parse_run_id",
    "read_enriched",
    "shredded_to_struct",
    "write_sample_archive",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spark_manifests' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
