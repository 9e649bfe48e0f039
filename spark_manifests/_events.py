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
    "run_deferred",
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
        """Add a handler; one already added to the event is not added twice."""
        handlers = self._of(event)
        if handler not in handlers:
            handlers.append(handler)

    def remove(self, event: str, handler: Handler | None = None) -> None:
        """Remove a handler of the event, or all of them."""
        handlers = self._of(event)
        handlers[:] = [] if handler is None else [h for h in handlers if h != handler]

    def _of(self, event: str) -> list[Handler]:
        if event not in self._handlers:
            raise ValueError(f"Unknown event {event!r}; expected one of: {', '.join(EVENTS)}")
        return self._handlers[event]

    def fire(self, event: str, payload: RunEvent | Progress) -> None:
        for handler in self._handlers[event]:
            try:
                handler(payload)
            except Exception:
                _logger.exception("A handler of the %s event failed", event)
