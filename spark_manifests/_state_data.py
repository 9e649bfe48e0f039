"""A job's state and its JSON document: ``StateData``, the values it
accepts, and the document format ``StateStore`` writes and reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._time import from_iso
from ._version import __version__
from .exceptions import CorruptStateError, InvalidJobNameError, StateValueError

FORMAT = "spark_manifests/state"


FORMAT_VERSION = 1


RUNNING = "running"


COMPLETED = "completed"


#: Longest job name: the file names built from it must stay under the usual 255 bytes.
MAX_JOB_NAME_LENGTH = 200


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _NotJSON(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


def type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _json_copy(value: Any, path: str) -> Any:
    """A plain-JSON copy of ``value`` (tuples become lists), or ``_NotJSON``.

    Copying detaches the state from the caller's objects, and turns subclasses (str enums,
    IntEnum) into the plain values a reader will get back.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(path, f"the float {value!r} (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(path, f"a key of type {type_name(key)} ({key!r}); keys must be str")
            copied[str.__str__(key)] = _json_copy(item, f"{path}[{key!r}]")
        return copied
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise _NotJSON(path, f"a value of type {type_name(value)}")


def _checked(key: object, value: Any) -> Any:
    """The JSON copy of ``value`` for ``key``; ``StateValueError`` if it is not JSON."""
    if not isinstance(key, str):
        raise StateValueError(
            f"State keys must be strings (JSON object keys), not {type_name(key)}: {key!r}."
        )
    try:
        return _json_copy(value, f"[{key!r}]")
    except _NotJSON as exc:
        raise StateValueError(
            f"The state value for key {key!r} is not JSON-serialisable: state{exc.path} is "
            f"{exc.problem}. State holds JSON only (dict, list, str, int, float, bool, None); "
            "convert it first, e.g. str(x), int(x), or x.isoformat() for a datetime."
        ) from None
    except RecursionError:
        raise StateValueError(
            f"The state value for key {key!r} is circular or nested too deeply to be JSON."
        ) from None


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``target``: dicts key by key, anything else replaced."""
    for key, value in update.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _deep_merge(current, value)
        else:
            target[key] = value


@dataclass
class Versions:
    """The versions of a job's files this state last read or wrote (``None``: absent).

    A store only trusts them for the location and job they were taken from: a state moved
    to another store counts as having seen no file there.
    """

    where: tuple[str, str, str]
    running: str | None = None
    completed: str | None = None


class StateData(MutableMapping[str, Any]):
    """A job's state: string keys to JSON values, plus when it was created and saved.

    Use it as a dict. Values must be JSON (dict, list, str, int, float, bool, None): anything
    else is refused at once with ``StateValueError``. Stored values are
    copies; a value changed in place later is checked again when the state is saved.

    Attributes
    ----------
    job_name : str or None
        The job this state belongs to (set by ``StateStore.get_or_create``).
    origin : str
        Where it came from: ``"new"``, ``"running"`` (resuming a run that did not complete)
        or ``"completed"``.
    created_at, updated_at, completed_at : datetime or None
        Aware UTC times: started (or ``reset``), last saved, last completed.

    Examples
    --------
    >>> state = StateData({"watermark": "2017-04-11"}, job_name="daily")
    >>> state.merge({"runs": {"a": 1}}).merge({"runs": {"b": 2}})["runs"]
    {'a': 1, 'b': 2}
    >>> StateData.from_bytes(state.to_bytes()) == state
    True
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, job_name: str | None = None
    ) -> None:
        self._data: dict[str, Any] = {}
        self.job_name = job_name
        self.origin = "new"
        self.created_at: datetime | None = utc_now()
        self.updated_at: datetime | None = None
        self.completed_at: datetime | None = None
        self._versions: Versions | None = None
        if data:
            self.merge(data)

    # Mapping interface: every write goes through _checked.
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = _checked(key, value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"StateData({self._data!r}, job_name={self.job_name!r}, origin={self.origin!r})"

    # Amorphic's names.
    def add_element(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (same as ``state[key] = value``)."""
        self[key] = value

    def remove_element(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` if it is not there (same as ``del state[key]``)."""
        del self[key]

    def reset(self) -> None:
        """Forget all data and start over: a new ``created_at``, no ``completed_at``.

        The store still knows which files this state was read from, so saving it after a
        reset replaces them (it is not a second writer).
        """
        self._data.clear()
        self.created_at = utc_now()
        self.completed_at = None

    def merge(self, other: Mapping[str, Any]) -> StateData:
        """Merge ``other`` into this state and return it.

        Nested dicts merge key by key; any other value (lists included) replaces the one
        before, so the later report wins. Nothing changes if a value of ``other`` is refused.

        Examples
        --------
        >>> StateData({"a": {"x": 1, "y": 1}}).merge({"a": {"y": 2}, "b": [1]}).to_dict()
        {'a': {'x': 1, 'y': 2}, 'b': [1]}
        """
        checked = {key: _checked(key, value) for key, value in other.items()}
        _deep_merge(self._data, checked)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the data as a plain dict."""
        return {key: _checked(key, value) for key, value in self._data.items()}

    def to_bytes(self) -> bytes:
        """The state document, UTF-8 JSON, as the store writes it.

        Raises ``StateValueError`` if a value was changed in place
        into something that is not JSON.
        """
        status = COMPLETED if self.completed_at is not None else RUNNING
        return self._document(status, self.updated_at, self.completed_at)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> StateData:
        """Parse a state document; ``CorruptStateError`` if it is not one.

        ``source`` names where the bytes came from, for the error message.
        """
        document = _parse_document(data, source)
        state = cls(job_name=document["job_name"])
        state._data = document["data"]
        state.origin = document["status"]
        state.created_at = document["created_at"]
        state.updated_at = document["updated_at"]
        state.completed_at = document["completed_at"]
        return state

    def _document(
        self, status: str, updated_at: datetime | None, completed_at: datetime | None
    ) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "job_name": self.job_name,
            "status": status,
            "created_at": _format_time(self.created_at),
            "updated_at": _format_time(updated_at),
            "completed_at": _format_time(completed_at),
            "data": self.to_dict(),
        }
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")


def _format_time(value: datetime | None) -> str | None:
    return (
        None if value is None else value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    )


def _parse_document(data: bytes, source: str) -> dict[str, Any]:
    """The checked fields of a state document, times parsed; ``CorruptStateError`` if bad."""

    def corrupt(problem: str) -> CorruptStateError:
        return CorruptStateError(
            f"The state file {source} is not a valid spark_manifests state document: {problem}. "
            "Restore it from the job's history (StateStore.history / restore), or delete it "
            "to start the job from an empty state."
        )

    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise corrupt(f"it is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise corrupt(
            f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; "
            f"{len(data)} bytes, truncated or edited?)"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise corrupt(f'it is JSON but not a state document (no "format": "{FORMAT}" field)')
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(f"its format_version is {version!r}, expected an integer of 1 or more")
    if version > FORMAT_VERSION:
        # Not corrupt: deleting it would throw away the runs in flight of a newer version.
        raise CorruptStateError(
            f"The state file {source} was written by spark_manifests "
            f"{document.get('package_version')} (format_version {version}); this is "
            f"spark_manifests {__version__}, which reads up to format_version "
            f"{FORMAT_VERSION}. Run the job with spark_manifests "
            f"{document.get('package_version')} or newer; keep the file, it holds the job's "
            "progress."
        )
    job_name = document.get("job_name")
    if job_name is not None and not isinstance(job_name, str):
        raise corrupt(f"its job_name is {job_name!r}, expected a string")
    if document.get("status") not in (RUNNING, COMPLETED):
        raise corrupt(f"its status is {document.get('status')!r}, expected running or completed")
    if not isinstance(document.get("data"), dict):
        raise corrupt(f"its data is {type_name(document.get('data'))}, expected an object")
    parsed = dict(document)
    for field in ("created_at", "updated_at", "completed_at"):
        value = document.get(field)
        try:
            parsed[field] = None if value is None else _parse_time(value)
        except (TypeError, ValueError):
            raise corrupt(f"its {field} is {value!r}, expected an ISO 8601 time or null") from None
    return parsed


def _parse_time(value: str) -> datetime:
    parsed = from_iso(value)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(timezone.utc)


def validate_job_name(job_name: object) -> str:
    """``job_name`` if it can name state files; ``InvalidJobNameError`` otherwise.

    Examples
    --------
    >>> validate_job_name("enriched_to_parquet")
    'enriched_to_parquet'
    """
    problem = None
    if not isinstance(job_name, str):
        problem = f"it is a {type_name(job_name)}, not a string"
    elif not job_name.strip():
        problem = "it is empty"
    elif "/" in job_name or "\\" in job_name:
        problem = "it contains a path separator (/ or \\)"
    elif ".." in job_name:
        problem = "it contains '..'"
    elif job_name.startswith("."):
        problem = "it starts with '.' (hidden files are the store's own)"
    elif any(ord(char) < 32 or 127 <= ord(char) < 160 for char in job_name):
        problem = "it contains a control character"
    elif len(job_name.encode("utf-8")) > MAX_JOB_NAME_LENGTH:
        # File names are limited in bytes (255 on most file systems), with a suffix added.
        problem = f"it is longer than {MAX_JOB_NAME_LENGTH} bytes in UTF-8"
    if problem:
        raise InvalidJobNameError(
            f"The job name {job_name!r} cannot name state files: {problem}. Use letters, "
            "digits, '-', '_' and single dots, e.g. 'enriched_to_parquet'."
        )
    return job_name  # type: ignore[return-value]
