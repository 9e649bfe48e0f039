"""Public settings of the source that live in the stage unit that uses them."""

from __future__ import annotations

import functools
from typing import Any


class Forwarded:
    """An attribute of the source that is an attribute of its units, named by dotted
    ``paths`` from the source (``"_planner.since"``): read from the first, set on each, so a
    change made between runs applies to the next :meth:`~ManifestedRunSource.run`, as when
    the source held it itself. The units keep one copy each, not the source beside them."""

    def __init__(self, *paths: str) -> None:
        self.paths = [path.rsplit(".", 1) for path in paths]

    def __get__(self, source: object, owner: type | None = None) -> Any:
        if source is None:
            return self
        unit, name = self.paths[0]
        return getattr(_resolve(source, unit), name)

    def __set__(self, source: object, value: Any) -> None:
        for unit, name in self.paths:
            setattr(_resolve(source, unit), name, value)


def _resolve(source: object, dotted: str) -> Any:
    return functools.reduce(getattr, dotted.split("."), source)


class ForwardedSettings:
    """The source's public settings, kept by the unit that uses each (the attributes the
    source's constructor builds: ``_planner``, ``_ledger``, ``_claims``, ...). Set between
    runs, they apply to the next run."""

    reader = Forwarded("_reader.given")  #: the reader as given (``None``: ``read_enriched``)
    transform = Forwarded("_transform.given")  #: the transform as given (``None``: none)
    since, until, limit = (Forwarded(f"_planner.{name}") for name in ("since", "until", "limit"))
    max_runs_per_batch = Forwarded("_planner.max_runs")
    max_bytes_per_batch = Forwarded("_planner.max_bytes")
    settle_seconds = Forwarded("_planner.settle_seconds")
    reconcile_seconds = Forwarded("_planner._watermarks.reconcile_seconds")
    full_scan = Forwarded("_planner._watermarks.full_scan")
    fail_fast = Forwarded("_ledger.fail_fast")
    lease_seconds = Forwarded("_claims.lease_seconds", "_snapshots.lease_seconds")
    take_over = Forwarded("_snapshots.take_over")
