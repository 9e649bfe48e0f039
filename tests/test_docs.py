"""The docs pages' examples run as printed, and name only what the package has.

A Python example that needs AWS or a cluster is marked ``<!-- not run: why -->`` (see
``tests/examples.py``); every other one is run here, found by the page and heading in ``RUN``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path

import pytest

from .examples import DOCS, api_problems, doc_pages, examples, runnable

SDK_LOOP = ("porting.md", "The Snowplow SDK loop, unchanged")
QUICK_START = ("index.md", "Quick start")
STATE_STORE = ("state.md", "From Python")
LOGGING = ("deploying.md", "Logging")
RUN = {SDK_LOOP, QUICK_START, STATE_STORE, LOGGING}


def run_example(page_heading: tuple[str, str], namespace: dict | None = None) -> str:
    """Run the example; what it printed."""
    page, heading = page_heading
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(runnable(DOCS / page, heading), dict(namespace or {}))
    return printed.getvalue()


def test_every_python_example_is_run_or_marked_not_run() -> None:
    python = [e for page in doc_pages() for e in examples(page, "python")]
    unmarked = {(e.page, e.heading) for e in python if not e.not_run}
    assert unmarked == RUN


@pytest.mark.parametrize("page", [p.name for p in doc_pages()])
def test_the_python_examples_use_the_public_api(page: str) -> None:
    for example in examples(DOCS / page, "python"):
        assert api_problems(example.code) == [], example.where


@pytest.mark.parametrize("page", [p.name for p in doc_pages()])
def test_the_json_examples_are_json(page: str) -> None:
    for example in examples(DOCS / page, "json"):
        json.loads(example.code)


def test_the_command_line_page_names_every_option_of_every_command() -> None:
    from spark_manifests.cli import _parser, _subcommand

    parser = _parser()
    page = (DOCS / "cli.md").read_text()
    commands = {"": parser} | {
        name: _subcommand(parser, name)
        for name in ("process", "demo", "runs", "manifest", "state", "package")
    }
    options = {
        (name, option)
        for name, command in commands.items()
        for action in command._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert len(options) > 30
    missing = sorted(
        (name, option) for name, option in options if not re.search(rf"{option}\b", page)
    )
    assert missing == []


def test_every_public_name_is_in_the_api_reference() -> None:
    import spark_manifests

    documented = re.findall(r"^::: spark_manifests\.(\w+)$", (DOCS / "api.md").read_text(), re.M)
    assert sorted(documented) == sorted(set(spark_manifests.__all__) - {"__version__"})


def test_the_snowplow_sdk_loop_runs_against_moto(aws) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    for name in ("run=2017-04-11-10-31-05", "run-2017-04-11-11-31-05"):
        s3.put_object(Bucket="acme", Key=f"enriched/archive/{name}/part-0.gz", Body=b"x")
    from spark_manifests import RunManifests

    RunManifests(aws.client("dynamodb"), "acme-enriched-runs").create()
    processed: list[str] = []

    for _ in range(2):  # the second pass finds every run in the manifest
        run_example(SDK_LOOP, {"process": processed.append})

    assert processed == [
        "enriched/archive/run=2017-04-11-10-31-05/",
        "enriched/archive/run-2017-04-11-11-31-05/",
    ]


def test_the_quick_start_processes_each_run_once(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    printed = run_example(QUICK_START)

    assert printed.split() == ["3", "300", "0"]  # what the example's comment says
    events = spark.read.parquet(str(tmp_path / "try" / "output" / "events"))
    assert events.count() == events.select("event_id").distinct().count() == 300
    from spark_manifests import RunStatus, SQLiteRunManifest

    with contextlib.closing(SQLiteRunManifest(str(tmp_path / "try" / "manifest.sqlite"))) as m:
        assert [e.status for e in m.entries()] == [RunStatus.COMMITTED] * 3


def test_the_state_store_example_writes_the_documented_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    printed = run_example(STATE_STORE)

    assert printed == "2017-04-11 ['daily']\n"  # what the example's comment says
    saved = json.loads((tmp_path / "state-example" / "daily_completed.json").read_text())
    (documented,) = (json.loads(e.code) for e in examples(DOCS / "state.md", "json"))
    assert sorted(saved) == sorted(documented)
    assert (saved["format"], saved["format_version"]) == (
        documented["format"],
        documented["format_version"],
    )
    assert saved["data"]["runs"] == {"a": 1}
    assert not (tmp_path / "state-example" / "daily_running.json").exists()


def test_the_logging_example_shows_the_package_debug_lines() -> None:
    package = logging.getLogger("spark_manifests")
    level, root_level = package.level, logging.getLogger().level
    try:
        package.setLevel(logging.WARNING)  # whatever an earlier test left, the example sets it
        run_example(LOGGING)
        assert package.getEffectiveLevel() == logging.DEBUG
    finally:
        package.setLevel(level)
        logging.getLogger().setLevel(root_level)
