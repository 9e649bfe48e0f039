"""Fault-injection points, for crash tests only.

The driver loop calls ``fault_point`` at each stage boundary. Nothing happens unless the
environment variable ``SPARK_MANIFESTS_KILL_AT`` names that point, in which case the process
kills itself with SIGKILL (no cleanup, no flush: exactly what a lost driver looks like). An
optional ``SPARK_MANIFESTS_KILL_AFTER=N`` lets the point pass N times first, and
``SPARK_MANIFESTS_KILL_SIGNAL=SIGTERM`` sends that signal instead (a scheduler's stop).
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "SPARK_MANIFESTS_KILL_AT"
KILL_AFTER_ENV = "SPARK_MANIFESTS_KILL_AFTER"
KILL_SIGNAL_ENV = "SPARK_MANIFESTS_KILL_SIGNAL"

POINTS = ("after_claim", "after_load", "mid_write", "after_write", "after_commit")

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    if os.environ.get(KILL_AT_ENV) != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] > int(os.environ.get(KILL_AFTER_ENV, "0")):
        os.kill(os.getpid(), getattr(signal, os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")))
