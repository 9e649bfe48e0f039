"""Output writers: where a batch of runs goes once it is read and transformed.

A sink writes every run of a batch into its own partition (``run=YYYY-mm-DD-hh-MM-SS``), and a
retry replaces exactly the partitions of the runs it writes, so a run is never appended twice:
``ParquetSink`` removes the runs' partitions, then writes with a dynamic partition
overwrite. Bad rows go beside the output, partitioned the same way.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from ._aws import aws_errors, error_code, make_client
from ._locations import Location, PathLike, parse_location
from .exceptions import InvalidLocationError, OutputInUseError

if TYPE_CHECKING:
    import boto3
    from pyspark.sql import DataFrame

    from .runs import Run

_logger = logging.getLogger(__name__)

#: The partition column every sink writes by; readers add it from the run folder name.
RUN_COLUMN = "run"

__all__ = ["RUN_COLUMN", "BatchCommitSink", "ParquetSink", "RunRows", "Sink", "count_batch_rows"]

#: The file in a ParquetSink's output that names the manifest (and job) whose runs it holds.
OUTPUT_OWNER_FILE = "_spark_manifests_output.json"

#: DeleteObjects takes at most 1,000 keys a call.
_DELETE_KEYS = 1000


class Sink(abc.ABC):
    """Where a batch of runs is written.

    Implementations must be idempotent per run: writing the same run twice leaves one copy.

    A sink declares what it can do in capability attributes, which the source reads instead
    of guessing: ``writes_bad_rows`` (it keeps bad rows: ``write_bad_rows`` is called)
    and ``supports_batch_commits`` (a ``BatchCommitSink``). A sink may also set
    ``writes_bad_rows`` on an instance, to leave the bad rows out.
    """

    #: Whether the sink keeps bad rows; the source writes them only then (it counts them always).
    writes_bad_rows: bool = False
    #: Whether the sink records each batch's identity in its commits (``BatchCommitSink``).
    supports_batch_commits: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = any("writes_bad_rows" in vars(base) for base in cls.__mro__ if base is not Sink)
        if not declared and cls.write_bad_rows is not Sink.write_bad_rows:
            # Before the capability was declared, defining the method was the sign.
            warnings.warn(
                f"{cls.__qualname__} defines write_bad_rows without declaring "
                "writes_bad_rows = True; finding it by the method is deprecated.",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.writes_bad_rows = True

    def prepare(self, *, job_name: str, manifest: str | None) -> None:  # noqa: B027
        """Called once per start of a job, before its first write, with the job's name and
        its manifest's URI (``None`` if it has none): a sink may refuse an output that holds
        the runs of another manifest. Does nothing unless a sink defines it."""

    @abc.abstractmethod
    def write(self, events: DataFrame, runs: Sequence[Run]) -> None:
        """Write ``events`` of ``runs``, replacing all those runs had, bad rows included: a
        run may now give no rows, and ``write_bad_rows`` is not called for a batch
        without bad rows.

        The rows are counted while they are written, by the first DataFrame action over
        ``events`` (``events.write...``): make that action the write itself. A write through
        the RDD (``foreachPartition``) has them counted by a Spark job of its own, and a
        first action that reads part of them (``isEmpty``, ``limit``) miscounts."""

    def write_bad_rows(self, bad_rows: DataFrame, runs: Sequence[Run]) -> None:
        """Write the bad rows of ``runs``, replacing what those runs had.

        Called after ``write``, and only when ``writes_bad_rows`` is true and the batch
        may have bad rows.
        """
        raise NotImplementedError(f"{type(self).__name__} does not write bad rows")

    @abc.abstractmethod
    def has_output(self, run: Run) -> bool:
        """Whether ``run``'s output exists (used on resume to commit without recomputing)."""

    @abc.abstractmethod
    def output_path(self, run: Run) -> str:
        """Where ``run``'s events are written; recorded in the manifest."""


class RunRows(NamedTuple):
    """The rows of one run as a batch's commit(s) left them (``BatchCommitSink.batch_rows``).

    ``not_given`` counts the bad rows among ``bad_rows`` whose line was refused for a schema
    not in the entity schemas given to the reader (their ``message`` says so): a batch read
    with the job's known schemas writes them, then is written again with the schema met.

    Examples
    --------
    >>> RunRows(events=97, bad_rows=3)
    RunRows(events=97, bad_rows=3, not_given=0)
    """

    events: int
    bad_rows: int
    not_given: int = 0


class BatchCommitSink(Sink):
    """Capability: the sink records each batch's identity in its table's own commit, so a
    resumed job can tell whether a batch's write landed without writing it again.

    The source makes a fresh ``batch_id`` for each write of a batch, saves it in the job's
    running state with the batch's runs, then calls ``write_batch`` (not ``write``
    and ``write_bad_rows``). A job resumed after a stop asks ``batch_committed``:
    a batch the table holds is committed in the manifest without being written again;
    another is written again under a new id. So is a batch whose read could still be
    widened (it was given the job's known schemas) when ``batch_rows`` finds, or cannot
    tell, lines of it held back as bad rows for a schema not given: their write under the
    wider list had not landed.

    Examples
    --------
    >>> class MyTableSink(BatchCommitSink):  # doctest: +SKIP
    ...     def write_batch(self, events, bad_rows, runs, *, batch_id): ...
    ...     def batch_committed(self, batch_id): ...
    """

    supports_batch_commits = True

    @abc.abstractmethod
    def write_batch(
        self,
        events: DataFrame,
        bad_rows: DataFrame | None,
        runs: Sequence[Run],
        *,
        batch_id: str,
    ) -> None:
        """Replace exactly ``runs`` in the table(s) with ``events`` (and ``bad_rows`` when
        given: ``None`` when the sink keeps none, or the reader gave none), recording
        ``batch_id`` in the commit(s). The rows are counted while they are written, as for
        ``write``."""

    @abc.abstractmethod
    def batch_committed(self, batch_id: str) -> bool:
        """Whether the table history holds a commit recorded with ``batch_id`` (events, and
        bad rows when kept): the batch's write landed whole."""

    def batch_rows(self, batch_id: str, runs: Sequence[Run]) -> dict[str, RunRows] | None:
        """The rows of each of ``runs``, by run label, as the commit(s) recorded with
        ``batch_id`` left them; ``None`` when the sink cannot tell.

        Asked on resume only, for a batch whose write landed before its rows were recorded
        in the job's state (a stop between the table commit and that snapshot): the
        manifest then records these counts, and a batch that may still have been widened
        counts as landed only with no ``not_given`` rows (``count_batch_rows`` counts
        them). ``None`` by default: the manifest records 0 rows, and such a batch is
        written again.
        """
        return None

    def write(self, events: DataFrame, runs: Sequence[Run]) -> None:
        """Not called by the source for this sink (see ``write_batch``)."""
        raise NotImplementedError(f"{type(self).__name__} writes through write_batch")

    def has_output(self, run: Run) -> bool:
        """False: the source asks ``batch_committed`` instead (its state records the
        batch id before the write), and a run without one is written again, which replaces
        exactly its rows."""
        return False


def count_batch_rows(
    events: DataFrame, bad_rows: DataFrame | None, runs: Sequence[Run]
) -> dict[str, RunRows]:
    """``BatchCommitSink.batch_rows`` from a batch's tables as its commit(s) left them (no
    bad rows: ``None``): the rows of each of ``runs`` by label, in one grouped count.

    Examples
    --------
    >>> count_batch_rows(events_at, bad_rows_at, runs)  # doctest: +SKIP
    {'2021-06-01-00-00-00': RunRows(events=97, bad_rows=3, not_given=0)}
    """
    from pyspark.sql import functions as F

    from ._enriched_sql import MESSAGE, refused_as_not_given

    labels = sorted({run.label for run in runs})

    def tagged(frame: DataFrame, table: str, not_given: Any) -> DataFrame:
        frame = frame.where(F.col(RUN_COLUMN).isin(labels))
        return frame.select(RUN_COLUMN, F.lit(table).alias("table"), not_given.alias("ng"))

    counted = tagged(events, "events", F.lit(False))
    if bad_rows is not None:
        not_given = F.lit(False)
        if MESSAGE in bad_rows.columns:  # a custom reader's bad rows may lack it
            not_given = F.coalesce(F.expr(refused_as_not_given()), F.lit(False))
        counted = counted.unionByName(tagged(bad_rows, "bad_rows", not_given))
    found = {
        (row[0], row[1], row[2]): int(row[3])
        for row in counted.groupBy(RUN_COLUMN, "table", "ng").count().collect()
    }

    def rows_of(label: str) -> RunRows:
        held_back = found.get((label, "bad_rows", True), 0)
        bad = found.get((label, "bad_rows", False), 0) + held_back
        return RunRows(found.get((label, "events", False), 0), bad, held_back)

    return {label: rows_of(label) for label in labels}


class ParquetSink(Sink):
    """Parquet: ``<output>/events/run=<label>/``, bad rows in ``<output>/bad_rows/run=<label>/``.

    Parameters
    ----------
    output
        ``s3://bucket/prefix/`` (``s3a://`` off EMR) or a local directory / ``file://`` path.
    compression
        Parquet codec, ``"snappy"`` by default.
    client, session
        boto3 S3 client or session used to check for existing output on resume.

    Examples
    --------
    >>> sink = ParquetSink("s3://acme/enriched/parquet/")
    >>> sink.output_path(run)  # doctest: +SKIP
    's3://acme/enriched/parquet/events/run=2017-04-11-10-31-05/'
    """

    events_folder = "events"
    bad_rows_folder = "bad_rows"
    writes_bad_rows = True

    def __init__(
        self,
        output: PathLike | Location,
        *,
        compression: str = "snappy",
        client: Any | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        self.location = parse_location(output, what="output")
        if not self.location.is_s3 and os.path.isfile(self.location.key):
            raise InvalidLocationError(
                f"The output {self.location.uri} is a file; give a directory (it is created "
                "if missing) for the events/ and bad_rows/ folders."
            )
        self.compression = compression
        self._client = client
        self._session = session

    def prepare(self, *, job_name: str, manifest: str | None) -> None:
        """Record the manifest whose runs this output holds, or raise
        ``OutputInUseError`` when it holds another manifest's: a job
        replaces its runs' partitions, so jobs of two manifests on one output would
        overwrite each other's. Workers of one job (one manifest) share an output.

        The manifest is recorded in ``<output>/_spark_manifests_output.json`` (Spark leaves
        files starting with ``_`` out of its reads); delete it to move an output to a new
        manifest.
        """
        if manifest is None:
            return
        record = {"manifest": manifest, "job_name": job_name}
        recorded = self._recorded_owner(record)
        if recorded.get("manifest") not in (None, manifest):
            raise OutputInUseError(
                f"The output {self.location.uri} holds the runs of the manifest "
                f"{recorded['manifest']} (job {recorded.get('job_name')!r}, see "
                f"{self._owner_file().uri}); job {job_name!r} uses {manifest}. A job "
                "replaces its runs' partitions under its output: give this job its own "
                "output. If the manifest moved, delete that file."
            )

    def _owner_file(self) -> Location:
        return self.location.join(OUTPUT_OWNER_FILE)

    def _recorded_owner(self, record: dict[str, str]) -> dict[str, Any]:
        """What the output's owner file holds; ``record`` is written there if it is absent."""
        body = (json.dumps(record) + "\n").encode("utf-8")
        marker = self._owner_file()
        if marker.is_s3:
            recorded = self._create_or_read_object(marker, body)
        else:
            try:
                recorded = _create_or_read(marker.key, body)
            except OSError as exc:
                raise InvalidLocationError(
                    f"The output {self.location.uri} cannot be used: {exc.strerror} "
                    f"({exc.filename}). Give a folder this job can create and write: a file "
                    "may stand where a folder of its path should be."
                ) from None
        try:
            found = json.loads(recorded)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise OutputInUseError(
                f"{marker.uri} does not say which manifest's runs {self.location.uri} "
                "holds; delete it, and the next start records its own."
            )
        return found

    def _create_or_read_object(self, marker: Location, body: bytes) -> bytes:
        """Put the object ``marker`` with ``body`` unless it exists; the object's content.
        Of two first starts, one records its manifest."""
        client = self._s3()
        with aws_errors("record the output's manifest", marker.uri):
            try:
                client.put_object(Bucket=marker.bucket, Key=marker.key, Body=body, IfNoneMatch="*")
                return body
            except ClientError as exc:
                if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
            return client.get_object(Bucket=marker.bucket, Key=marker.key)["Body"].read()

    @property
    def events_location(self) -> Location:
        return self.location.join(self.events_folder)

    @property
    def bad_rows_location(self) -> Location:
        return self.location.join(self.bad_rows_folder)

    def write(self, events: DataFrame, runs: Sequence[Run]) -> None:
        # A partition overwrite replaces only the partitions it writes: a rewrite that now
        # gives a run no rows, or no bad rows (their pass may even be skipped), would keep
        # the old ones. So the runs' partitions go first.
        self.remove_output(runs)
        self.remove_output(runs, bad_rows=True)
        self._write_partitioned(events, self.events_location)

    def write_bad_rows(self, bad_rows: DataFrame, runs: Sequence[Run]) -> None:
        self._write_partitioned(bad_rows, self.bad_rows_location)

    def _write_partitioned(self, frame: DataFrame, location: Location) -> None:
        _logger.debug("Writing %s", location)
        (
            frame.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .option("compression", self.compression)
            .partitionBy(RUN_COLUMN)
            .parquet(location.uri)
        )

    def remove_output(self, runs: Sequence[Run], *, bad_rows: bool = False) -> None:
        """Delete the events (with ``bad_rows``, the bad rows) of ``runs``, if any.

        Examples
        --------
        >>> sink.remove_output([run], bad_rows=True)  # doctest: +SKIP
        """
        if not runs:
            return
        location = self.bad_rows_location if bad_rows else self.events_location
        if not location.is_s3:
            for run in runs:
                shutil.rmtree(self._partition(location, run).key, ignore_errors=True)
            return
        client = self._s3()
        with aws_errors("remove earlier output", location.uri):
            keys = _partition_keys(client, location, {run.label for run in runs})
            for start in range(0, len(keys), _DELETE_KEYS):
                chunk = keys[start : start + _DELETE_KEYS]
                client.delete_objects(
                    Bucket=location.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
        if keys:
            _logger.info("Removed %d stale objects under %s", len(keys), location.uri)

    def output_path(self, run: Run) -> str:
        return self._partition(self.events_location, run).uri + ("/" if self.location.is_s3 else "")

    def has_output(self, run: Run) -> bool:
        partition = self._partition(self.events_location, run)
        if not partition.is_s3:
            return os.path.isdir(partition.key) and any(
                name.endswith(".parquet") for name in os.listdir(partition.key)
            )
        client = self._s3()
        with aws_errors("check the output", partition.uri):
            listing = client.list_objects_v2(
                Bucket=partition.bucket, Prefix=partition.prefix, MaxKeys=1
            )
        return bool(listing.get("KeyCount"))

    def _s3(self) -> Any:
        """The S3 client, made once (a resume checks every run's output)."""
        if self._client is None:
            self._client = make_client("s3", session=self._session)
        return self._client

    @staticmethod
    def _partition(location: Location, run: Run) -> Location:
        return location.join(f"{RUN_COLUMN}={run.label}")


def _create_or_read(path: str, body: bytes) -> bytes:
    """Create the file ``path`` with ``body`` unless it exists; the file's content.

    The file appears whole: it is written aside, then linked into place (a link fails if
    the name exists), so a job starting at the same moment never reads it half written.
    """
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, aside = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(body)
        os.link(aside, path)
        return body
    except FileExistsError:
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(aside)


def _partition_keys(client: Any, location: Location, labels: set[str]) -> list[str]:
    """The keys of the ``run=<label>`` partitions of ``labels`` under ``location``.

    The runs of a batch are consecutive, so one listing from the first label to the last
    finds them all, however many partitions the output holds.
    """
    first, last = min(labels), max(labels)
    partitions = f"{location.prefix}{RUN_COLUMN}="
    keys: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=partitions, StartAfter=partitions + first
    )
    for page in pages:
        for item in page.get("Contents", []):
            label = item["Key"][len(partitions) :].split("/", 1)[0]
            if label > last:
                return keys
            if label in labels:
                keys.append(item["Key"])
    return keys
