"""StateData and StateStore: one contract suite over a temp directory and moto S3, plus the
S3 options, the JSON-only rule, and a writer killed in the middle of its updates."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

import spark_manifests
from spark_manifests import (
    ArchiveNotFoundError,
    CorruptStateError,
    InvalidJobNameError,
    InvalidLocationError,
    StateConflictError,
    StateValueError,
    __version__,
)
from spark_manifests.state import StateData, StateStore

BUCKET = "job-state"
ACCOUNT = "123456789012"  # moto's default account


class LocalPlace:
    """A state directory, with raw access to the files a store writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def store(self, **options: Any) -> StateStore:
        return StateStore(self.location, **options)

    def put_raw(self, name: str, body: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def get_raw(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.exists() else None

    def names(self) -> set[str]:
        return {
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        }


class S3Place:
    """A moto bucket prefix, with raw access to the objects a store writes."""

    def __init__(self, session: Any, prefix: str = "jobs/state/") -> None:
        self.session = session
        self.client = session.client("s3")
        self.client.create_bucket(Bucket=BUCKET)
        self.prefix = prefix
        self.location = f"s3://{BUCKET}/{prefix}"

    def store(self, **options: Any) -> StateStore:
        # Each store gets its own client, as two processes would.
        return StateStore(self.location, client=self.session.client("s3"), **options)

    def put_raw(self, name: str, body: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=self.prefix + name, Body=body)

    def get_raw(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=BUCKET, Key=self.prefix + name)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def names(self) -> set[str]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
        return {item["Key"][len(self.prefix) :] for item in listing.get("Contents", [])}


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> LocalPlace | S3Place:
    if request.param == "local":
        return LocalPlace(tmp_path / "state")
    return S3Place(request.getfixturevalue("aws"))


def document(place: LocalPlace | S3Place, name: str) -> dict[str, Any]:
    raw = place.get_raw(name)
    assert raw is not None, f"{name} was not written"
    return json.loads(raw)


# -- contract suite: local directory and S3 -------------------------------------------------


def test_a_job_without_state_starts_new_and_empty(place) -> None:
    state = place.store().get_or_create("daily")

    assert (state.origin, state.job_name, len(state)) == ("new", "daily", 0)
    assert place.names() == set()


def test_round_trip_through_the_running_snapshot(place) -> None:
    store = place.store()
    state = store.get_or_create("daily")
    state["watermark"] = "2017-04-11-10-31-05"
    state.add_element("runs", {"run=1/": {"stage": "written", "rows": 10}, "run=2/": None})
    state["ratio"] = 0.25
    store.update(state)

    loaded = place.store().get_or_create("daily")

    assert loaded.origin == "running"
    assert loaded.to_dict() == {
        "watermark": "2017-04-11-10-31-05",
        "runs": {"run=1/": {"stage": "written", "rows": 10}, "run=2/": None},
        "ratio": 0.25,
    }
    assert loaded.created_at == state.created_at
    assert loaded.updated_at == state.updated_at
    assert loaded.completed_at is None
    saved = document(place, "daily_running.json")
    assert saved["job_name"] == "daily"
    assert saved["status"] == "running"
    assert saved["format_version"] == 1
    assert saved["package_version"] == __version__
    assert datetime.fromisoformat(saved["updated_at"]) == state.updated_at


def test_times_ending_in_z_are_read_on_every_python(place) -> None:
    """A state file edited by hand or written by another tool; Python 3.9's fromisoformat
    (EMR 7) refuses a final Z."""
    place.store().update(StateData({"a": 1}, job_name="daily"))
    saved = document(place, "daily_running.json")
    saved["updated_at"] = "2017-04-11T10:31:05Z"
    place.put_raw("daily_running.json", json.dumps(saved).encode())

    loaded = place.store().get_or_create("daily")
    assert loaded.updated_at == datetime(2017, 4, 11, 10, 31, 5, tzinfo=timezone.utc)


def test_writes_resent_by_botocore_after_a_timeout_are_not_conflicts(aws: Any) -> None:
    """Every PUT and DELETE is applied, then sent again, as botocore does when the answer
    times out: the resent one fails its condition on the first one's work."""
    place = S3Place(aws)
    client = aws.client("s3")
    resent: list[str] = []

    def send_again(attempts: int, operation: Any, **_: Any) -> float | None:
        if attempts == 1:
            resent.append(operation.name)
            return 0
        return None

    for operation in ("PutObject", "DeleteObject"):
        client.meta.events.register(f"needs-retry.s3.{operation}", send_again)
    store = StateStore(place.location, client=client)

    state = store.get_or_create("daily")
    state["runs"] = 1
    store.update(state)
    state["runs"] = 2
    store.update(state)
    store.complete(state)

    assert resent == ["PutObject", "PutObject", "PutObject", "DeleteObject"]
    assert place.names() == {"daily_completed.json"}
    assert document(place, "daily_completed.json")["data"] == {"runs": 2}


def test_a_new_run_resumes_from_the_running_snapshot_and_completes(place) -> None:
    first = place.store()
    state = first.get_or_create("daily")
    state["done"] = ["run=1/"]
    first.update(state)
    # The process dies here; the next one picks the running snapshot up and goes on.
    second = place.store()
    resumed = second.get_or_create("daily")
    assert resumed.origin == "running"
    resumed["done"] = [*resumed["done"], "run=2/"]
    second.update(resumed)
    second.complete(resumed)

    final = place.store().get_or_create("daily")
    assert final.origin == "completed"
    assert final["done"] == ["run=1/", "run=2/"]


def test_complete_writes_completed_and_removes_running(place) -> None:
    store = place.store()
    state = store.get_or_create("daily")
    state["rows"] = 3
    store.update(state)
    assert place.names() == {"daily_running.json"}

    store.complete(state)

    assert place.names() == {"daily_completed.json"}
    saved = document(place, "daily_completed.json")
    assert saved["status"] == "completed"
    assert saved["data"] == {"rows": 3}
    assert datetime.fromisoformat(saved["completed_at"]) == state.completed_at
    loaded = place.store().get_or_create("daily")
    assert (loaded.origin, loaded["rows"]) == ("completed", 3)


def test_jobs_sharing_a_location_keep_separate_state(place) -> None:
    store = place.store()
    for job in ("a", "a_running", "b"):
        state = store.get_or_create(job)
        state["job"] = job
        store.complete(state)

    assert {job: store.get_or_create(job)["job"] for job in ("a", "a_running", "b")} == {
        "a": "a",
        "a_running": "a_running",
        "b": "b",
    }


def test_history_keeps_the_last_completed_snapshots(place) -> None:
    store = place.store(history_limit=3)
    for number in range(1, 6):
        state = store.get_or_create("daily")
        state["number"] = number
        store.update(state)
        store.complete(state)

    history = place.store().history("daily")

    # Completed #5 is current; #1 fell off the bounded history.
    assert [store.load_snapshot(item)["number"] for item in history] == [4, 3, 2]
    assert [item.completed_at for item in history] == sorted(
        (item.completed_at for item in history), reverse=True
    )
    assert all(item.name.startswith("history/daily/") for item in history)
    assert all(str(item).endswith(item.name) for item in history)
    assert len([n for n in place.names() if n.startswith("history/daily/")]) == 3


def completed_twice(store: StateStore) -> StateData:
    """Job "daily" completed with number 1, then 2 (1 is in its history); the last state."""
    for number in (1, 2):
        state = store.get_or_create("daily")
        state["number"] = number
        store.complete(state)
    return state


def test_restore_brings_back_a_snapshot_and_keeps_the_current_one(place) -> None:
    store = place.store()
    completed_twice(store)
    (previous,) = store.history("daily")

    restored = place.store().restore(previous)

    assert restored["number"] == 1
    assert place.store().get_or_create("daily")["number"] == 1
    assert [store.load_snapshot(item)["number"] for item in store.history("daily")] == [2, 1]


def test_restore_replaces_a_corrupt_completed_snapshot(place) -> None:
    """What the corrupt-state error advises: restore from the history."""
    store = place.store()
    completed_twice(store)
    place.put_raw("daily_completed.json", b'{"job_name": "daily", "da')  # a torn copy
    with pytest.raises(CorruptStateError, match=r"Restore it from the job's history"):
        store.get_or_create("daily")

    restored = store.restore(store.history("daily")[0])

    assert restored["number"] == 1
    assert place.store().get_or_create("daily")["number"] == 1
    # The corrupt file is kept as it was, newest in the history.
    assert place.get_raw(store.history("daily")[0].name) == b'{"job_name": "daily", "da'


def test_restore_is_refused_while_the_job_runs(place) -> None:
    store = place.store()
    state = completed_twice(store)
    store.update(state)

    with pytest.raises(StateConflictError, match="running snapshot"):
        store.restore(store.history("daily")[0])


def test_jobs_lists_the_jobs_with_a_state(place) -> None:
    store = place.store()
    assert store.jobs() == []
    running = store.get_or_create("hourly")
    store.update(running)
    for _ in range(2):  # a completed job also has history files, in their own folder
        completed = store.get_or_create("daily")
        store.complete(completed)

    assert store.jobs() == ["daily", "hourly"]


def test_history_limit_zero_keeps_none(place) -> None:
    store = place.store(history_limit=0)
    for number in (1, 2):
        state = store.get_or_create("daily")
        state["number"] = number
        store.complete(state)

    assert store.history("daily") == []
    assert place.names() == {"daily_completed.json"}


def test_a_second_writer_of_a_new_job_is_detected(place) -> None:
    mine, theirs = place.store(), place.store()
    my_state, their_state = mine.get_or_create("daily"), theirs.get_or_create("daily")
    my_state["owner"] = "me"
    their_state["owner"] = "them"
    mine.update(my_state)

    with pytest.raises(StateConflictError) as raised:
        theirs.update(their_state)

    message = str(raised.value)
    assert "'daily'" in message
    assert f"{place.location.rstrip('/')}/daily_running.json" in message
    assert document(place, "daily_running.json")["data"] == {"owner": "me"}


def test_a_second_writer_of_a_running_job_is_detected(place) -> None:
    setup = place.store()
    state = setup.get_or_create("daily")
    state["n"] = 0
    setup.update(state)
    mine, theirs = place.store(), place.store()
    my_state, their_state = mine.get_or_create("daily"), theirs.get_or_create("daily")

    my_state["n"] = 1
    mine.update(my_state)
    my_state["n"] = 2
    mine.update(my_state)  # my own successive saves never conflict
    their_state["n"] = 99
    with pytest.raises(StateConflictError, match=r"daily_running\.json"):
        theirs.update(their_state)
    with pytest.raises(StateConflictError):
        theirs.complete(their_state)

    assert document(place, "daily_running.json")["data"] == {"n": 2}
    assert place.get_raw("daily_completed.json") is None


def test_a_writer_whose_run_was_completed_by_another_is_detected(place) -> None:
    setup = place.store()
    setup.update(setup.get_or_create("daily"))
    mine, theirs = place.store(), place.store()
    my_state, their_state = mine.get_or_create("daily"), theirs.get_or_create("daily")
    mine.complete(my_state)

    # Their running snapshot is gone (and the completed one is new to them).
    with pytest.raises(StateConflictError, match="now it does not exist"):
        theirs.update(their_state)
    with pytest.raises(StateConflictError, match=r"daily_running\.json"):
        theirs.complete(their_state)
    assert place.names() == {"daily_completed.json"}


def test_two_completions_from_the_same_snapshot_conflict(place) -> None:
    setup = place.store()
    setup.complete(setup.get_or_create("daily"))
    mine, theirs = place.store(), place.store()
    my_state, their_state = mine.get_or_create("daily"), theirs.get_or_create("daily")
    my_state["by"] = "me"
    their_state["by"] = "them"
    mine.complete(my_state)

    with pytest.raises(StateConflictError, match=r"daily_completed\.json"):
        theirs.complete(their_state)

    assert document(place, "daily_completed.json")["data"] == {"by": "me"}
    assert len(mine.history("daily")) == 1


def test_a_state_not_read_from_the_store_cannot_replace_its_files(place) -> None:
    store = place.store()
    store.update(store.get_or_create("daily"))

    with pytest.raises(StateConflictError, match="did not exist"):
        store.update(StateData({"a": 1}, job_name="daily"))
    store.update(StateData({"a": 1}, job_name="other"))  # nothing to replace: fine

    assert place.store().get_or_create("other")["a"] == 1


def test_an_interrupted_complete_is_seen_as_completed(place, monkeypatch) -> None:
    store = place.store()
    state = store.get_or_create("daily")
    state["n"] = 1
    store.update(state)

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed between writing completed and removing running")

    monkeypatch.setattr(store._backend, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        store.complete(state)
    assert place.names() == {"daily_running.json", "daily_completed.json"}

    # The completed snapshot is newer than the running one left behind: the run completed.
    again = place.store()
    loaded = again.get_or_create("daily")
    assert (loaded.origin, loaded["n"]) == ("completed", 1)
    again.update(loaded)  # replaces the stale running snapshot, no conflict
    again.complete(loaded)
    assert place.names() == {"daily_completed.json", f"history/daily/{_only_history(again)}"}


def _only_history(store: StateStore) -> str:
    (item,) = store.history("daily")
    return item.name.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    "job_name",
    [
        "",
        "   ",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        "../x",
        ".hidden",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "x" * 201,
        "\u00e9" * 101,  # 202 bytes: file names are limited in bytes
    ],
)
def test_bad_job_names_are_refused(place, job_name: str) -> None:
    store = place.store()

    with pytest.raises(InvalidJobNameError, match="cannot name state files"):
        store.get_or_create(job_name)
    with pytest.raises(InvalidJobNameError):
        store.update(StateData(job_name=job_name))
    with pytest.raises(InvalidJobNameError):
        store.history(job_name)
    assert place.names() == set()


def test_a_state_without_a_job_name_is_refused(place) -> None:
    with pytest.raises(InvalidJobNameError, match="no job name"):
        place.store().update(StateData({"a": 1}))


def valid_document(**changes: Any) -> dict[str, Any]:
    document = json.loads(StateData({"a": 1}, job_name="daily").to_bytes())
    document.update(changes)
    return document


CORRUPT_FILES = {
    "truncated": (valid_document(), slice(0, 40), "not valid JSON"),
    "empty": (b"", None, "not valid JSON"),
    "not utf-8": (b"\xff\xfe{}", None, "not UTF-8"),
    "foreign json": ({"watermark": 1}, None, "not a state document"),
    "a json list": ([1, 2], None, "not a state document"),
    "future format": (valid_document(format_version=99), None, "keep the file"),
    "format version 0": (valid_document(format_version=0), None, "an integer of 1 or more"),
    "data not an object": (valid_document(data=[1]), None, "data is list"),
    "bad time": (valid_document(created_at="yesterday"), None, "created_at"),
    "another job": (valid_document(job_name="weekly"), None, "of job 'weekly'"),
    "wrong status": (valid_document(status="completed"), None, "completed snapshot"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_FILES))
def test_a_corrupt_or_foreign_file_is_reported_clearly(place, case: str) -> None:
    content, cut, problem = CORRUPT_FILES[case]
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    place.put_raw("daily_running.json", raw[cut] if cut else raw)

    with pytest.raises(CorruptStateError) as raised:
        place.store().get_or_create("daily")

    message = str(raised.value)
    assert f"{place.location.rstrip('/')}/daily_running.json" in message
    assert problem in message
    # No chained json/codec traceback to read through.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_a_state_of_a_newer_version_asks_for_that_version_not_a_deletion(place) -> None:
    newer = valid_document(format_version=2, package_version="9.0.0")
    place.put_raw("daily_running.json", json.dumps(newer).encode())

    with pytest.raises(CorruptStateError) as raised:
        place.store().get_or_create("daily")

    message = str(raised.value)
    assert "written by spark_manifests 9.0.0 (format_version 2)" in message
    assert "with spark_manifests 9.0.0 or newer" in message
    assert "delete" not in message
    assert "not a valid" not in message


# -- StateData ------------------------------------------------------------------------------


class Colour(str, Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (datetime(2017, 4, 11, tzinfo=timezone.utc), "datetime.datetime"),
        ({"nested": [1, {2, 3}]}, "set"),
        ({"nested": {1: "int key"}}, "int"),
        (b"bytes", "bytes"),
        (float("nan"), "nan"),
        (object(), "object"),
    ],
)
def test_a_value_that_is_not_json_is_refused_at_once(value: Any, type_name: str) -> None:
    state = StateData({"kept": 1})

    attempts = [
        lambda: state.__setitem__("bad", value),
        lambda: state.add_element("bad", value),
        lambda: state.merge({"kept": 2, "bad": value}),
        lambda: state.update(bad=value),
        lambda: StateData({"bad": value}),
    ]
    for attempt in attempts:
        with pytest.raises(StateValueError) as raised:
            attempt()
        assert "'bad'" in str(raised.value)
        assert type_name in str(raised.value)
    assert state.to_dict() == {"kept": 1}  # a refused merge changed nothing


def test_a_non_string_key_is_refused() -> None:
    with pytest.raises(StateValueError, match="keys must be strings"):
        StateData()[1] = "a"  # type: ignore[index]


def test_values_are_stored_as_plain_json_copies() -> None:
    runs = ["run=1/"]
    state = StateData({"runs": runs, "pair": (1, 2), "colour": Colour.RED})
    runs.append("run=2/")  # the caller's list is not the state's

    assert state.to_dict() == {"runs": ["run=1/"], "pair": [1, 2], "colour": "red"}
    assert type(state["colour"]) is str


def test_a_value_changed_in_place_into_non_json_is_caught_before_saving(place) -> None:
    store = place.store()
    state = store.get_or_create("daily")
    state["runs"] = []
    state["runs"].append(datetime.now(timezone.utc))

    with pytest.raises(StateValueError, match=r"state\['runs'\]\[0\]"):
        store.update(state)
    assert place.names() == set()


def test_merge_merges_nested_dicts_key_by_key_and_later_wins() -> None:
    state = StateData({"metrics": {"rows": 1, "by_run": {"a": 1}}, "tags": ["x"], "n": 1})

    returned = state.merge({"metrics": {"by_run": {"b": 2}, "bad": 0}, "tags": ["y"]})
    state.merge({"metrics": {"rows": 5, "by_run": {"a": None}}, "n": {"now": "a dict"}})

    assert returned is state
    assert state.to_dict() == {
        "metrics": {"rows": 5, "by_run": {"a": None, "b": 2}, "bad": 0},
        "tags": ["y"],  # lists are replaced, not appended
        "n": {"now": "a dict"},
    }


def test_mapping_interface_and_amorphic_methods() -> None:
    state = StateData(job_name="daily")
    state.add_element("a", 1)
    state["b"] = {"c": 2}

    assert ("a" in state, "z" in state, len(state), list(state)) == (True, False, 2, ["a", "b"])
    assert state == {"a": 1, "b": {"c": 2}}
    state.remove_element("a")
    with pytest.raises(KeyError):
        state.remove_element("a")
    assert state.pop("b") == {"c": 2}
    state["x"] = 1
    before = state.created_at
    state.reset()
    assert len(state) == 0
    assert state.created_at >= before


def test_to_bytes_and_from_bytes_round_trip() -> None:
    state = StateData({"a": [1, 2.5, "é", None, True]}, job_name="daily")

    raw = state.to_bytes()
    again = StateData.from_bytes(raw)

    assert again == state
    assert (again.job_name, again.created_at) == ("daily", state.created_at)
    assert json.loads(raw)["data"] == {"a": [1, 2.5, "é", None, True]}
    with pytest.raises(CorruptStateError, match="<bytes>"):
        StateData.from_bytes(b"\x80\x04pickle")


# -- locations and S3 options ---------------------------------------------------------------


def test_file_uri_and_plain_path_are_the_same_store(tmp_path: Path) -> None:
    state = StateStore(tmp_path.as_uri()).get_or_create("daily")
    state["a"] = 1
    StateStore(tmp_path.as_uri()).update(state)

    assert StateStore(str(tmp_path)).get_or_create("daily")["a"] == 1


@pytest.mark.parametrize("scheme", ["s3a", "s3n"])
def test_s3a_and_s3n_locations_use_the_same_objects(aws, scheme: str) -> None:
    place = S3Place(aws)
    state = place.store().get_or_create("daily")
    state["a"] = 1
    place.store().complete(state)

    store = StateStore(f"{scheme}://{BUCKET}/{place.prefix}", session=aws)
    again = store.get_or_create("daily")
    assert again["a"] == 1
    place.store().update(again)  # read through s3a/s3n, saved through s3: the same file
    assert place.names() == {"daily_completed.json", "daily_running.json"}


def test_a_missing_bucket_is_an_error_not_an_empty_state(aws) -> None:
    store = StateStore("s3://no-such-bucket/state/", session=aws)

    with pytest.raises(ArchiveNotFoundError, match="no-such-bucket"):
        store.get_or_create("daily")
    with pytest.raises(ArchiveNotFoundError):
        store.update(StateData(job_name="daily"))


def test_s3_options_are_refused_for_a_local_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidLocationError, match="apply to S3"):
        StateStore(tmp_path, sse="AES256")
    with pytest.raises(ValueError, match="sse must be one of"):
        StateStore("s3://bucket/state/", sse="aes", client=object())
    with pytest.raises(ValueError, match="history_limit"):
        StateStore(tmp_path, history_limit=-1)


def capture_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("before-parameter-build.s3", record)
    return calls


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({"sse": "AES256"}, {"ServerSideEncryption": "AES256"}),
        (
            {"kms_key_id": "alias/state"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/state"},
        ),
    ],
)
def test_encryption_and_expected_bucket_owner_are_sent(
    aws, options: dict[str, str], sent: dict[str, str]
) -> None:
    S3Place(aws)
    client = aws.client("s3")
    calls = capture_calls(client)
    store = StateStore(
        f"s3://{BUCKET}/state/",
        client=client,
        history_limit=1,
        expected_bucket_owner=ACCOUNT,
        **options,
    )
    for number in range(3):
        state = store.get_or_create("daily")
        state["n"] = number
        store.update(state)
        store.complete(state)
    store.load_snapshot(store.history("daily")[0])

    operations = {name for name, _ in calls}
    assert operations == {"GetObject", "PutObject", "DeleteObject", "ListObjectsV2"}
    assert all(params.get("ExpectedBucketOwner") == ACCOUNT for _, params in calls)
    puts = [params for name, params in calls if name == "PutObject"]
    assert all(params.items() >= sent.items() for params in puts)
    # The writes of the job's own files are conditional.
    assert all("IfMatch" in params or params.get("IfNoneMatch") == "*" for params in puts)
    head = client.head_object(Bucket=BUCKET, Key="state/daily_completed.json")
    assert head["ServerSideEncryption"] == sent["ServerSideEncryption"]


# -- a writer killed mid-way ----------------------------------------------------------------

# Saves a growing number and a payload derived from it, as fast as it can, until killed. With
# a fsync count as its third argument it kills itself at that fsync instead: either just
# before the rename of a fully written temp file, or just after it.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from spark_manifests.state import StateStore

    root, size, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fsync, calls = os.fsync, [0]

    def fsync_or_die(fd):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        fsync(fd)

    os.fsync = fsync_or_die
    store = StateStore(root)
    state = store.get_or_create("killed")
    number = state.get("number", 0)
    print(number, flush=True)
    while True:
        number += 1
        state["number"] = number
        state["payload"] = [number] * size
        store.update(state)
    """
)
PAYLOAD = 20_000  # about 250 kB a document


def check_snapshot(root: Path, at_least: int) -> int:
    """The number of the job's running snapshot, after checking it is one the writer wrote."""
    state = StateStore(root).get_or_create("killed")
    assert state.origin == "running"
    number = state["number"]
    assert number >= at_least
    # Exactly one of the documents the writer produced, not a mix or a part of one.
    assert state["payload"] == [number] * PAYLOAD
    return number


def run_writer_until_killed(root: Path, env: dict[str, str], kill_at: int, watch: float) -> int:
    """Run the writer, read its snapshots while it writes, kill it; the number it started at."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(PAYLOAD), str(kill_at)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        start = int(process.stdout.readline() or -1)  # type: ignore[union-attr]
        assert start >= 0, "the writer died before it read its state"
        # A reader never sees a torn document either, however often it looks. Watch for
        # ``watch`` seconds, and on a slow machine until the writer has saved something.
        started, latest = time.monotonic(), start
        while process.poll() is None and time.monotonic() - started < 60:
            if (root / "killed_running.json").exists():
                latest = check_snapshot(root, start)
            if latest > start and time.monotonic() - started > watch:
                break
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()  # type: ignore[union-attr]
    return start


def test_a_killed_writer_leaves_a_readable_snapshot_it_wrote(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(spark_manifests.__file__).parents[1])}
    rng = random.Random(7)
    previous = 0
    for round_ in range(6):
        # Killed from outside at a random moment, or by itself at a random fsync. Each update
        # fsyncs its temp file (an odd call: dies before the rename), then the directory
        # (an even call: dies after it).
        kill_at = 0 if round_ % 2 else 2 * rng.randint(4, 20) - (round_ // 2) % 2
        start = run_writer_until_killed(tmp_path, env, kill_at, watch=rng.uniform(0.2, 0.5))
        assert start == previous  # each run resumed from the snapshot the last one left
        previous = check_snapshot(tmp_path, start + 1)
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(leftovers) <= 1  # a killed write's temp file, removed by the next write
