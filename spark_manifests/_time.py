"""Times as the package reads them from its own files and tables, and from other tools'."""

from __future__ import annotations

import re
from datetime import datetime

_FRACTION = re.compile(r"\.(\d+)")


def from_iso(text: str) -> datetime:
    """An ISO 8601 time, read as Python 3.11's ``datetime.fromisoformat`` reads it, on
    Python 3.9 and 3.10 too (EMR 7 runs 3.9): a final ``Z``, a fraction of any length.

    Examples
    --------
    >>> from_iso("2017-04-11T10:31:05.1Z")
    datetime.datetime(2017, 4, 11, 10, 31, 5, 100000, tzinfo=datetime.timezone.utc)
    """
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(lambda digits: "." + (digits.group(1) + "000000")[:6], value, count=1)
    return datetime.fromisoformat(value)
