"""Events a source fires, and the registry of handlers that listen to them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

_logger = logging.getLogger(__name__)

EVENTS = (
    "run_claimed",
    "batch_loaded",
    "batch_written",
    "run_committed",
    "run_failed",
    "run_skipped",
    "progress",
)


class Progress(NamedTuple):
    """Runs done out of runs to do, and what is happening now."""

    done: int
    total: int
    message: str


@dataclass(frozen=True)
class RunEvent:
    """What happened to which runs; ``data`` holds the event's figures (rows, error...)."""

    name: str
    run_ids: tuple[str, ...]
    batch: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[Any], None]


class EventHandlers:
    """Handlers by event name; a failing handler is logged and never stops the job."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {name: [] for name in EVENTS}

    def add(self, event: str, handler: Handler) -> None:
        if event not in self._handlers:
            raise ValueError(f"Unknown event {event!r}; expected one of: {', '.join(EVENTS)}")
        self._handlers[event].append(handler)

    def fire(self, event: str, payload: RunEvent | Progress) -> None:
        for handler in self._handlers[event]:
            try:
                handler(payload)
            except Exception:
                _logger.exception("A handler of the %s event failed", event)
