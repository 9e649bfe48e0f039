"""The ``spark-manifests`` command: the demo, run listings, manifest edits, state, exit codes."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from spark_manifests import (
    ManifestedRunSource,
    RunStatus,
    SQLiteRunManifest,
    StateStore,
    write_sample_archive,
)
from spark_manifests._events import Progress, RunEvent
from spark_manifests.cli import ProgressDisplay, _display, _job, main

from .commands import error_line, process

RUNS = 3


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, run once for the module: a sample archive processed twice."""
    home = tmp_path_factory.mktemp("demo")
    where = ["--manifest", str(home / "m.sqlite"), "--state", str(home / "state")]
    assert (
        main(["demo", "--dir", str(home / "d"), "--runs", str(RUNS), "--events", "30", *where]) == 0
    )
    return home


def manifest_of(demo: Path) -> SQLiteRunManifest:
    return SQLiteRunManifest(str(demo / "m.sqlite"))


def test_the_demo_commits_every_run_once(demo: Path, capsys) -> None:
    entries = list(manifest_of(demo).entries())
    assert [(e.status, e.attempts) for e in entries] == [(RunStatus.COMMITTED, 1)] * RUNS
    assert StateStore(str(demo / "state")).jobs() == ["demo"]

    assert (
        main(["runs", "--manifest", str(demo / "m.sqlite"), "--since", "2017-04-11-11-00-00"]) == 0
    )
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed[1:]] == [
        ["2017-04-11-11-31-05", "COMMITTED"],
        ["2017-04-11-12-31-05", "COMMITTED"],
    ]
    # ISO 8601 with a final Z, which Python 3.9's fromisoformat refuses, gives the same window.
    assert main(["runs", "--manifest", str(demo / "m.sqlite"), "--since", "2017-04-11T11:00Z"]) == 0
    assert capsys.readouterr().out.splitlines() == listed
    assert main(["runs", "--manifest", str(demo / "m.sqlite"), "--ids"]) == 0
    ids = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert ids == [entry.run_id for entry in entries]


def test_a_second_demo_says_nothing_was_pending(demo: Path, capsys) -> None:
    where = ["--manifest", str(demo / "m.sqlite"), "--state", str(demo / "state")]
    assert main(["demo", "--dir", str(demo / "d"), *where]) == 0
    out = capsys.readouterr().out
    assert "Using the sample archive already in" in out
    assert "Nothing was pending: an earlier demo processed this archive" in out


def test_runs_are_named_by_label_folder_name_or_id(demo: Path, tmp_path: Path) -> None:
    manifest = str(tmp_path / "m.sqlite")
    with SQLiteRunManifest(manifest) as runs:
        for entry in manifest_of(demo).entries():
            runs.add(entry.run_id)
    third = max(e.run_id for e in SQLiteRunManifest(manifest).entries())

    assert main(["manifest", "unmark", "2017-04-11-10-31-05", "--manifest", manifest]) == 0
    assert main(["manifest", "unmark", "run=2017-04-11-11-31-05", "--manifest", manifest]) == 0
    assert main(["manifest", "unmark", third.rstrip("/"), "--manifest", manifest]) == 0
    assert list(SQLiteRunManifest(manifest).entries()) == []

    assert (
        main(
            [
                "manifest",
                "skip",
                "s3://acme/enriched/archive/run=2017-04-11-10-31-05",
                "--manifest",
                manifest,
            ]
        )
        == 0
    )
    [skipped] = SQLiteRunManifest(manifest).entries()
    assert (skipped.run_id, skipped.status) == (
        "enriched/archive/run=2017-04-11-10-31-05/",
        RunStatus.SKIPPED,
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("2017-04-11-10-31-06", "names no run of the manifest"),
        ("garbage", "is not a run folder"),
    ],
)
def test_a_run_name_that_names_no_run_is_refused(
    demo: Path, capsys, name: str, message: str
) -> None:
    before = list(manifest_of(demo).entries())
    assert main(["manifest", "unmark", name, "--manifest", str(demo / "m.sqlite")]) == 2
    assert message in error_line(capsys)
    assert list(manifest_of(demo).entries()) == before


def test_a_whole_archive_is_rewound_only_with_all(demo: Path, tmp_path: Path, capsys) -> None:
    manifest = str(tmp_path / "m.sqlite")
    with SQLiteRunManifest(manifest) as runs:
        for entry in manifest_of(demo).entries():
            runs.add(entry.run_id)
    rewind = ["manifest", "unmark", "--archive", str(demo / "d" / "archive"), "--manifest"]

    assert main([*rewind, manifest]) == 2
    assert "give a window, or --all" in error_line(capsys)
    assert len(list(SQLiteRunManifest(manifest).entries())) == RUNS

    assert main([*rewind, manifest, "--since", "2017-04-11-12-00-00"]) == 0
    assert "unmark: 1 of 1 run(s) changed" in capsys.readouterr().out
    assert main([*rewind, manifest, "--all"]) == 0
    assert "unmark: 2 of 3 run(s) changed" in capsys.readouterr().out
    assert list(SQLiteRunManifest(manifest).entries()) == []


def test_reading_commands_do_not_create_a_manifest(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "typo" / "m.sqlite"
    assert main(["runs", "--manifest", str(missing)]) == 2
    assert "No manifest at" in error_line(capsys)
    assert not missing.parent.exists()


def test_state_show_of_an_unknown_job_names_the_known_ones(demo: Path, capsys) -> None:
    assert main(["state", "show", "--state", str(demo / "state"), "--job", "demo"]) == 0
    assert '"origin": "completed"' in capsys.readouterr().out
    assert main(["state", "show", "--state", str(demo / "state"), "--job", "nosuch"]) == 2
    assert "jobs with a state there: demo" in error_line(capsys)


def test_debug_may_follow_the_command_and_keeps_the_exit_status(tmp_path: Path, capsys) -> None:
    status = main(["runs", "--manifest", str(tmp_path / "none.sqlite"), "--debug"])
    err = capsys.readouterr().err
    assert status == 2  # as without --debug: 1 would say a run failed
    assert "Traceback (most recent call last)" in err
    assert "ValueError: No manifest" in err
    assert "--debug shows the traceback" not in err  # it did


def test_a_closed_pipe_does_not_hide_failed_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    """`process ... | head` whose reader is gone: the exit status still says a run failed."""
    (tmp_path / "archive" / "run=2020-01-01-00-00-00").mkdir(parents=True)  # no files: fails

    def closed_pipe(*args, **kwargs) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(_display, "print_summary", closed_pipe)
    monkeypatch.setattr(_display, "stdout_to_devnull", lambda: None)  # keep pytest's stdout
    assert process(tmp_path, tmp_path / "archive") == 1
    assert "FAILED" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--limit", "-1"], "limit must be 0 or more"),
        (["--since", "2017-04-12", "--until", "2017-04-11"], "is before since"),
        (["--max-bytes-per-batch", "0"], "max_bytes_per_batch must be at least 1"),
    ],
)
def test_bad_options_are_one_line_and_claim_nothing(
    tmp_path: Path, capsys, options: list[str], message: str
) -> None:
    write_sample_archive(tmp_path / "a", runs=1, events_per_run=5, files_per_run=1)
    assert process(tmp_path, tmp_path / "a", *options) == 2
    assert message in error_line(capsys)
    assert (
        not (tmp_path / "m.sqlite").exists()
        or list(SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()) == []
    )


def test_an_output_that_is_a_file_claims_nothing(tmp_path: Path, capsys) -> None:
    write_sample_archive(tmp_path / "a", runs=1, events_per_run=5, files_per_run=1)
    (tmp_path / "out").write_text("not a folder")
    assert process(tmp_path, tmp_path / "a") == 2
    assert "is a file" in error_line(capsys)
    assert list(SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()) == []


def test_fail_fast_exits_1_as_a_failed_run(spark, tmp_path: Path, capsys) -> None:
    (tmp_path / "a" / "run=2021-06-01-00-00-00").mkdir(parents=True)  # a run with no files
    code = process(tmp_path, tmp_path / "a", "--fail-fast")
    assert code == 1
    assert "fail_fast" in error_line(capsys)


def test_an_archive_without_runs_warns(tmp_path: Path, caplog) -> None:
    (tmp_path / "a" / "2017-04-11").mkdir(parents=True)
    assert process(tmp_path, tmp_path / "a") == 0
    assert f"No run folders (run=YYYY-mm-DD-hh-MM-SS) in {tmp_path / 'a'}" in caplog.text


def test_the_demo_emulators_request_log_is_kept_quiet(tmp_path: Path) -> None:
    """moto's server logs each S3 or DynamoDB call through werkzeug at INFO: thousands of
    lines in a ``demo --aws`` run."""
    (tmp_path / "a").mkdir()
    assert process(tmp_path, tmp_path / "a") == 0
    assert logging.getLogger("werkzeug").level == logging.WARNING


def test_process_options_reach_the_source(tmp_path: Path, monkeypatch) -> None:
    made: list[ManifestedRunSource] = []
    given: list[dict[str, Any]] = []

    class Recorded(ManifestedRunSource):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)
            given.append(kwargs)

    monkeypatch.setattr(_job, "ManifestedRunSource", Recorded)
    (tmp_path / "a").mkdir()  # no runs: nothing starts Spark
    options = ["--reconcile-every", "60", "--full-scan", "--settle", "5", "--take-over"]
    options += ["--no-s3-setup", "--limit", "3", "--fail-fast", "--iglu", str(tmp_path)]
    assert process(tmp_path, tmp_path / "a", *options) == 0

    (source,) = made
    assert (source.reconcile_seconds, source.full_scan, source.settle_seconds) == (60, True, 5)
    assert (source.take_over, source.limit, source.fail_fast) == (True, 3, True)
    assert given[0]["s3_setup"] is False
    assert source.job_name == "sweep"


@pytest.mark.parametrize(
    "option",
    [
        ["--dir", "d"],
        ["--manifest", "m.sqlite"],
        ["--state", "s"],
        ["--fail-fast"],
        ["--no-s3-setup"],
        ["--max-runs-per-batch", "2"],
    ],
)
def test_demo_aws_refuses_the_options_it_would_ignore(option: list[str], capsys) -> None:
    assert main(["demo", "--aws", *option]) == 2
    assert f"drop {option[0]} " in error_line(capsys)


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_iceberg_options_without_iceberg_are_refused(
    tmp_path: Path, capsys, table_format: str
) -> None:
    (tmp_path / "a").mkdir()
    options = ("--format", table_format, "--iceberg-namespace", "lake")
    assert process(tmp_path, tmp_path / "a", *options) == 2
    assert "--iceberg-namespace applies to --format iceberg" in error_line(capsys)


def test_a_run_folder_given_as_the_archive_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "a" / "run=2017-04-11-10-31-05"
    run.mkdir(parents=True)
    (run / "part-00000").write_text("")
    assert process(tmp_path, run) == 2
    assert f"is a run folder: give the folder that holds the run folders ({tmp_path / 'a'}/)" in (
        capsys.readouterr().err
    )


def test_manifest_edits_report_what_changed(demo: Path, tmp_path: Path, capsys) -> None:
    manifest = str(tmp_path / "m.sqlite")
    committed = next(manifest_of(demo).entries()).run_id
    with SQLiteRunManifest(manifest) as runs:
        runs.add(committed)
    pending = "enriched/archive/run=2017-04-11-11-31-05/"

    assert (
        main(
            ["manifest", "skip", committed, pending, "--reason", "replayed", "--manifest", manifest]
        )
        == 0
    )

    assert "skip: 1 of 2 run(s) changed" in capsys.readouterr().out
    entries = {e.run_id: e for e in SQLiteRunManifest(manifest).entries()}
    assert entries[committed].status is RunStatus.COMMITTED
    assert (entries[pending].status, entries[pending].error) == (RunStatus.SKIPPED, "replayed")

    assert main(["runs", "--manifest", manifest, "--ids"]) == 0
    shown = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert shown[pending].split()[1] == "SKIPPED"
    assert shown[pending].rstrip().endswith("replayed")  # the error column, last

    assert main(["runs", "--manifest", manifest, "--ids", "--status", "skipped"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[:2] for line in listed] == [[pending, "SKIPPED"]]
    assert main(["runs", "--manifest", manifest, "--status", "PENDING"]) == 2
    assert "--status PENDING needs --archive" in capsys.readouterr().err

    assert main(["manifest", "mark", pending, "--manifest", manifest]) == 0
    assert "mark: 1 of 1 run(s) changed" in capsys.readouterr().out
    assert SQLiteRunManifest(manifest).contains(pending)


@pytest.mark.parametrize(
    "command",
    [["manifest", "create"], ["manifest", "skip", "enriched/archive/run=2017-04-11-10-31-05/"]],
    ids=["create", "skip"],
)
def test_a_table_name_without_dynamodb_makes_no_manifest(
    tmp_path: Path, monkeypatch, capsys, command
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--manifest", "acme-runs"]) == 2
    assert "write dynamodb://acme-runs" in capsys.readouterr().err
    assert not (tmp_path / "acme-runs").exists()


def test_a_run_held_by_a_job_does_not_stop_the_other_edits(tmp_path: Path, capsys) -> None:
    manifest = str(tmp_path / "m.sqlite")
    run_ids = [f"enriched/archive/run=2017-04-11-1{hour}-31-05/" for hour in range(3)]
    with SQLiteRunManifest(manifest) as runs:
        runs.add(run_ids[0])
        assert runs.claim(run_ids[1], "live-job", lease_seconds=3600)
        runs.add(run_ids[2])

    # The runs may come after the options too.
    assert main(["manifest", "unmark", "--manifest", manifest, *run_ids]) == 1

    captured = capsys.readouterr()
    assert "unmark: 2 of 3 run(s) changed" in captured.out
    assert "refused: " in captured.err
    assert "live-job" in captured.err
    assert "1 run(s) refused; run the command again once their jobs are done" in captured.err
    entries = {e.run_id: e.status for e in SQLiteRunManifest(manifest).entries()}
    assert entries == {run_ids[1]: RunStatus.PROCESSING}


def test_runs_of_an_archive_and_state_history(demo: Path, capsys) -> None:
    archive = demo / "d" / "archive"
    where = ["--manifest", str(demo / "m.sqlite")]
    assert main(["runs", "--archive", str(archive), *where]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[:2] for line in listed] == [
        [run.split("=", 1)[1], "COMMITTED"] for run in sorted(os.listdir(archive))
    ]

    state = ["--state", str(demo / "state"), "--job", "demo"]
    assert main(["state", "show", *state, "--history"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["origin"] == "completed"
    assert len(shown["history"]) >= 1  # the first demo's completed state, replaced by the second


def test_provisioned_capacity_is_for_dynamodb_only(tmp_path: Path, capsys) -> None:
    manifest = str(tmp_path / "m.sqlite")
    assert main(["manifest", "create", "--manifest", manifest, "--provisioned", "5", "5"]) == 2
    assert "--provisioned applies to DynamoDB manifests" in error_line(capsys)
    assert main(["manifest", "create", "--manifest", manifest]) == 0
    assert f"Manifest ready: {manifest}" in capsys.readouterr().out


def test_only_create_makes_the_folder_of_a_manifest(tmp_path: Path, capsys) -> None:
    manifest = str(tmp_path / "runs" / "m.sqlite")
    assert main(["manifest", "skip", "2017-04-11-10-31-05", "--manifest", manifest]) == 2
    assert not (tmp_path / "runs").exists()
    capsys.readouterr()
    assert main(["manifest", "create", "--manifest", manifest]) == 0
    assert (tmp_path / "runs" / "m.sqlite").is_file()


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_is_one_line_on_a_terminal_and_log_lines_otherwise(terminal: bool, caplog) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    stream = Stream()
    caplog.set_level("INFO", logger="spark_manifests")
    display = ProgressDisplay(stream)
    display.committed(RunEvent("run_committed", ("r",), 1, {"rows_out": 1234}))
    display.progress(Progress(1, 4, "batch 1 done"))
    display.progress(Progress(4, 4, "batch 2 done"))

    if terminal:
        drawn = stream.getvalue().split("\r")[1:]
        assert [line.split()[:4] for line in drawn] == [
            ["runs", "1/4", "rows", "1,234"],
            ["runs", "4/4", "rows", "1,234"],
        ]
        assert "progress:" not in caplog.text
    else:
        assert stream.getvalue() == ""
        assert "progress: 1/4 runs, 1234 rows: batch 1 done" in caplog.text


def test_a_state_location_that_is_a_file_is_one_clear_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("")
    status = main(["state", "show", "--state", str(tmp_path / "afile")])
    assert status == 2
    assert "is a file, not a directory" in error_line(capsys)


def test_until_a_date_includes_that_whole_day(tmp_path: Path, capsys) -> None:
    write_sample_archive(tmp_path / "a", runs=3, events_per_run=5, files_per_run=1)
    SQLiteRunManifest(str(tmp_path / "m.sqlite")).close()
    runs = ["runs", "--archive", str(tmp_path / "a"), "--manifest", str(tmp_path / "m.sqlite")]
    assert main([*runs, "--since", "2017-04-11", "--until", "2017-04-11"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "2017-04-11-" in line]
    assert len(listed) == 3


def test_demo_aws_without_its_extra_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "moto.server", None)  # as if moto were not installed
    assert main(["demo", "--aws", "--runs", "1", "--events", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'spark_manifests[demo]'" in err
    assert "Traceback" not in err
