"""Listing an S3 archive: its run folders, each run's objects, and their restore status."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ._aws import aws_errors
from ._locations import Location, parse_location
from ._run_folders import (
    COLD_STORAGE_CLASSES,
    RUN_FOLDER_STARTS,
    RUN_PREFIX,
    Run,
    RunFile,
    is_data_path,
    run_from_name,
    utc,
)


def runs_in_s3(location: Location, s3: Any, from_label: str | None = None) -> Iterator[Run]:
    """The run folders of an S3 archive; with ``from_label``, only those from that label on
    (and perhaps a few before it, which the caller filters): S3 starts each listing after
    the key ``<prefix>run=<label>`` (``StartAfter``), so the pages before are never read."""
    # Both folder forms start with "run": other folders of the archive cost no page.
    listings: list[dict[str, str]] = [{"Prefix": location.prefix + RUN_PREFIX}]
    if from_label is not None:
        listings = [
            {"Prefix": location.prefix + start, "StartAfter": location.prefix + start + from_label}
            for start in RUN_FOLDER_STARTS
        ]
    paginator = s3.get_paginator("list_objects_v2")
    with aws_errors("list the archive", location.uri):
        pages = (
            page
            for listing in listings
            for page in paginator.paginate(Bucket=location.bucket, Delimiter="/", **listing)
        )
        for page in pages:
            for prefix in page.get("CommonPrefixes", ()):
                key = prefix["Prefix"]
                name = key.rstrip("/").rsplit("/", 1)[-1]
                run = run_from_name(name, f"{location.scheme}://{location.bucket}/{key}", key)
                if run is not None:
                    yield run


def runs_with_files_in_s3(s3: Any, location: Location) -> list[tuple[Run, list[RunFile]]]:
    """Every run of an archive with its data files, from one listing of the run folders."""
    archive = Location(location.scheme, location.bucket, location.prefix)
    found: dict[str, tuple[Run | None, list[RunFile]]] = {}
    for relative, file in objects_in_s3(s3, archive, RUN_PREFIX):
        name, slash, inside = relative.partition("/")
        if not slash:
            continue  # an object beside the run folders, not in one
        if name not in found:
            key = archive.prefix + name + "/"
            path = f"{archive.scheme}://{archive.bucket}/{key}"
            found[name] = (run_from_name(name, path, key), [])
        run, files = found[name]
        if run is not None and is_data_path(inside):
            files.append(file)
    return sorted(
        ((run, files) for run, files in found.values() if run is not None),
        key=lambda pair: pair[0],
    )


def objects_in_s3(
    s3: Any, location: Location, name_start: str = ""
) -> Iterator[tuple[str, RunFile]]:
    """(key relative to the folder, file) for every object under ``location``'s folder."""
    params: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.prefix + name_start}
    if _lists_restore_status(s3):
        params["OptionalObjectAttributes"] = ["RestoreStatus"]
    paginator = s3.get_paginator("list_objects_v2")
    with aws_errors("list the run files", location.uri):
        for page in paginator.paginate(**params):
            for item in page.get("Contents", ()):
                key = item["Key"]
                yield key[len(location.prefix) :], _file_from_listing(location, item)


def _file_from_listing(location: Location, item: dict[str, Any]) -> RunFile:
    storage_class = item.get("StorageClass")
    restored = None
    if storage_class in COLD_STORAGE_CLASSES and "RestoreStatus" in item:
        # S3 reports RestoreStatus only for objects with a restore requested.
        restored = not item["RestoreStatus"].get("IsRestoreInProgress", False)
    return RunFile(
        f"{location.scheme}://{location.bucket}/{item['Key']}",
        int(item["Size"]),
        storage_class,
        restored,
        utc(item.get("LastModified")),
    )


def settle_restore_status(s3: Any, files: list[RunFile]) -> list[RunFile]:
    """Ask HeadObject about cold files whose restore status the listing did not give.

    S3 leaves RestoreStatus out for cold objects never restored, and S3-compatible stores
    (moto, MinIO) may leave it out always. One unrestored object makes a run cold, so the
    checks stop there: a run costs at most one HeadObject more than its restored objects.
    """
    settled: list[RunFile] = []
    for index, file in enumerate(files):
        if file.storage_class in COLD_STORAGE_CLASSES and file.restored is None:
            where = parse_location(file.path, what="run file")
            file = replace(file, restored=_is_restored(s3, str(where.bucket), where.key))
            if not file.restored:
                return [*settled, file, *files[index + 1 :]]
        settled.append(file)
    return settled


def _is_restored(s3: Any, bucket: str, key: str) -> bool:
    """Whether a cold object has a finished restore (``Restore: ongoing-request="false"``)."""
    with aws_errors("check the restore status", f"s3://{bucket}/{key}"):
        restore = s3.head_object(Bucket=bucket, Key=key).get("Restore") or ""
    return 'ongoing-request="false"' in restore


def _lists_restore_status(s3: Any) -> bool:
    """Whether this botocore knows ListObjectsV2's OptionalObjectAttributes (botocore >= 1.33)."""
    try:
        shape = s3.meta.service_model.operation_model("ListObjectsV2").input_shape
    except Exception:  # a stub or foreign client: do without
        return False
    return "OptionalObjectAttributes" in shape.members
