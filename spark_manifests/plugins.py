"""The plug-in contracts of ``ManifestedRunSource``: a reader and a transform.

A **reader** is called as ``reader(spark, paths)`` with the files of a batch (Hadoop glob
characters escaped) and returns either a Spark DataFrame of events, or an object with
``events`` and ``bad_rows`` (``None`` when it keeps none) and optionally ``lines_per_run``,
such as ``EnrichedRead``. Every frame carries the ``run`` column.

A **transform** is called as ``transform(events)`` and returns a DataFrame that keeps the
``run`` column. One that needs the batch's runs says so with ``with_runs``, and is called
as ``transform(events, runs)``.

The adapters here turn what a user gave into these forms: older forms keep working with a
``DeprecationWarning`` (a reader returning a pair ``(events, bad_rows)``, a transform
with two positional parameters that is not marked ``with_runs``).

Examples
--------
>>> @with_runs
... def tagged(events, runs):
...     return events
>>> tagged.takes_runs
True
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar, cast

from ._counting import Loaded
from .retry import WRONG_RUN_VALUE, plugin_broke
from .sinks import RUN_COLUMN

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ._enriched_schemas import EntitySchemas
    from .iglu import IgluLike
    from .runs import Run

__all__ = ["ReadResult", "Reader", "RunsTransform", "Transform", "with_runs"]


class ReadResult(Protocol):
    """What a reader may return besides a DataFrame: the events and the bad rows."""

    @property
    def events(self) -> DataFrame: ...

    @property
    def bad_rows(self) -> Optional[DataFrame]: ...  # noqa: UP045 (a runtime-checked hint on 3.9)


class Reader(Protocol):
    """``reader(spark, paths)``: the events of a batch's files, each row with its ``run``."""

    def __call__(self, spark: SparkSession, paths: list[str]) -> Any: ...


class Transform(Protocol):
    """``transform(events)``: the events to write; keeps the ``run`` column."""

    def __call__(self, events: DataFrame) -> DataFrame: ...


class RunsTransform(Protocol):
    """``transform(events, runs)``, marked with ``with_runs``: also gets the batch's runs."""

    takes_runs: bool

    def __call__(self, events: DataFrame, runs: list[Run]) -> DataFrame: ...


_Function = TypeVar("_Function", bound=Callable[..., Any])


def with_runs(transform: _Function) -> _Function:
    """Mark ``transform`` as ``transform(events, runs)``: the source passes the batch's runs.

    Examples
    --------
    >>> @with_runs
    ... def per_run(events, runs):
    ...     return events
    """
    transform.takes_runs = True  # type: ignore[attr-defined]
    return transform


class ReaderAdapter:
    """The reader a source was given (or the default) as a function that gives a
    ``Loaded`` with its ``run`` columns checked present.

    ``iglu`` (any form ``IgluResolver.coerce`` takes) is made a resolver once, kept for
    the job so that its cache spans the batches, and given to the default reader; a custom
    reader with it is refused. ``aws``: the boto3 ``session``/``s3_client`` it fetches with.
    """

    def __init__(
        self,
        reader: Reader | None,
        *,
        job_name: str,
        iglu: IgluLike | None = None,
        **aws: Any,
    ) -> None:
        from .iglu import IgluResolver

        self._job_name = job_name
        self.iglu = None if iglu is None else IgluResolver.coerce(iglu, **aws)
        self.given = reader

    @property
    def given(self) -> Reader | None:
        """The reader as given (``None``: the default); may be replaced between runs."""
        return self._given

    @given.setter
    def given(self, reader: Reader | None) -> None:
        if self.iglu is not None and reader is not None and reader is not default_reader():
            raise ValueError(
                "iglu= types the columns of the default reader (read_enriched); a custom "
                "reader is called as reader(spark, paths): give it the Iglu resolver itself "
                "(e.g. functools.partial(read_enriched, iglu=...)) and leave iglu= out."
            )
        self._given = reader

    @property
    def function(self) -> Reader:
        return self.given if self.given is not None else default_reader()

    @property
    def is_custom(self) -> bool:
        """Whether the reader is the user's: its run values are checked, not trusted."""
        return self.given is not None and self.given is not default_reader()

    @property
    def takes_entity_schemas(self) -> bool:
        """Capability: the reader takes ``entity_schemas=`` (skipping its schema scan) and
        tells the schemas it met, so the source gives it those its committed runs met. The
        default reader does; a custom reader is called as ``reader(spark, paths)``."""
        return not self.is_custom

    def load(
        self, spark: SparkSession, paths: list[str], *, entity_schemas: EntitySchemas | None = None
    ) -> Loaded:
        """The batch of ``paths``; ``entity_schemas`` only for a reader that takes them."""
        if self.is_custom:
            returned = self.function(spark, paths)
        else:
            options: dict[str, Any] = {}
            if self.iglu is not None:
                options["iglu"] = self.iglu
            if entity_schemas is not None:
                options["entity_schemas"] = entity_schemas
            returned = self.function(spark, paths, **options)  # type: ignore[call-arg]
        loaded = self._normalised(returned)
        for name, frame in (("events", loaded.events), ("bad rows", loaded.bad_rows)):
            if frame is not None and RUN_COLUMN not in frame.columns:
                raise plugin_broke(
                    self._job_name,
                    f"The reader's {name} have no {RUN_COLUMN!r} column: the reader must add "
                    "the run label (YYYY-mm-DD-hh-MM-SS) of each row so each run is written "
                    "to its own partition.",
                )
        if self.takes_entity_schemas:
            loaded.enriched = returned
            if returned.observed is not None:
                loaded.lines_read = returned.lines_read
        return loaded

    def _normalised(self, returned: Any) -> Loaded:
        if is_dataframe(returned):
            return Loaded(returned, None)
        events = getattr(returned, "events", None)
        if is_dataframe(events) and _is_frame_or_none(getattr(returned, "bad_rows", None)):
            lines: Mapping[str | None, int] | None = getattr(returned, "lines_per_run", None)
            return Loaded(cast("DataFrame", events), returned.bad_rows, lines)
        frames = tuple(returned) if isinstance(returned, Iterable) else ()
        if len(frames) == 2 and is_dataframe(frames[0]) and _is_frame_or_none(frames[1]):
            warnings.warn(
                "A reader returning a pair (events, bad_rows) is deprecated: return an "
                "object with events and bad_rows attributes (such as EnrichedRead), or the "
                "events DataFrame alone when it keeps no bad rows.",
                DeprecationWarning,
                stacklevel=4,
            )
            return Loaded(frames[0], frames[1])
        raise plugin_broke(
            self._job_name,
            f"The reader returned {_describe_value(returned)}, not a Spark DataFrame, a pair "
            "(events, bad_rows or None) of them or an EnrichedRead.",
        )


class TransformAdapter:
    """The transform a source was given, called in its declared form, its result checked."""

    def __init__(self, transform: Callable[..., Any] | None, *, job_name: str) -> None:
        self._job_name = job_name
        self.given = transform

    @property
    def given(self) -> Callable[..., Any] | None:
        """The transform as given (``None``: none); may be replaced between runs."""
        return self._given

    @given.setter
    def given(self, transform: Callable[..., Any] | None) -> None:
        self._given = transform
        self._takes_runs = transform is not None and _takes_runs(transform)

    def apply(self, events: DataFrame, runs: Sequence[Run]) -> DataFrame:
        if self.given is None:
            return events
        result = self.given(events, list(runs)) if self._takes_runs else self.given(events)
        if not is_dataframe(result):
            raise plugin_broke(
                self._job_name,
                f"The transform returned {_describe_value(result)}, not a Spark DataFrame "
                "(a missing return?).",
            )
        if RUN_COLUMN not in result.columns:
            raise plugin_broke(
                self._job_name,
                f"The transform dropped the {RUN_COLUMN!r} column; keep it (e.g. group by it "
                "too) so each run's output goes to its own partition.",
            )
        return result


def _takes_runs(transform: Callable[..., Any]) -> bool:
    """Whether ``transform`` is called with the runs: marked so, or (deprecated) a function
    with two required positional parameters."""
    declared = getattr(transform, "takes_runs", None)
    if declared is not None:
        return bool(declared)
    if not _takes_two_arguments(transform):
        return False
    warnings.warn(
        f"The transform {getattr(transform, '__name__', transform)!r} takes two arguments: "
        "mark it with spark_manifests.plugins.with_runs to be called as "
        "transform(events, runs); finding it by its parameters is deprecated.",
        DeprecationWarning,
        stacklevel=4,
    )
    return True


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has two required positional parameters (one with a default,
    ``transform(df, column="x")``, is not for the runs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def runs_checked(frame: DataFrame, runs: Sequence[Run], what: str) -> DataFrame:
    """``frame`` whose Spark job fails on a row whose run value is not the label of one of
    ``runs`` (another run's, a day, NULL): written, it would replace that partition."""
    from pyspark.sql import functions as F

    labels = sorted({run.label for run in runs})
    column = F.col(RUN_COLUMN)
    error = F.concat(
        F.lit(WRONG_RUN_VALUE),
        F.coalesce(column.cast("string"), F.lit("NULL")),
        F.lit(
            f" of a row the {what} gave is not the label of a run of this batch "
            f"({describe_runs(runs, most=3)}); "
        ),
    )
    return frame.withColumn(
        RUN_COLUMN, F.when(column.isin(labels), column).otherwise(F.raise_error(error))
    )


def describe_runs(runs: Sequence[Run], most: int = 20) -> str:
    labels = [run.label for run in runs]
    shown = ", ".join(labels[:most])
    return shown + (f" (+{len(labels) - most} more)" if len(labels) > most else "")


def default_reader() -> Reader:
    from .enriched import read_enriched

    return read_enriched


def is_dataframe(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "write") and hasattr(value, "schema")


def _is_frame_or_none(value: Any) -> bool:
    return value is None or is_dataframe(value)


def _describe_value(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__module__}.{type(value).__qualname__}"
