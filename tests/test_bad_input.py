"""The bad-input sweep: each case gives bad rows or one clear error line, never a silent loss.

The README's "When input is bad" table lists the same cases.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from spark_manifests import RunStatus, SQLiteRunManifest
from spark_manifests.cli import main
from spark_manifests.samples import generate_enriched_lines

from .commands import error_line, process


def test_malformed_lines_become_bad_rows_and_nothing_is_lost(spark, tmp_path: Path, capsys) -> None:
    good = generate_enriched_lines(20, seed=4)
    run = tmp_path / "archive" / "run=2021-06-01-00-00-00"
    run.mkdir(parents=True)
    truncated = good[0][: len(good[0]) // 2]
    extra_tabs = good[1] + "\tone\ttoo many"
    garbage = b"\x00\xff\xfe\x80garbage\x01\x02\x03"
    (run / "part-0").write_bytes(
        "\n".join([*good[2:10], truncated, extra_tabs]).encode() + b"\n" + garbage + b"\n"
    )
    (run / "part-1").write_bytes(b"")  # an empty file
    with gzip.open(run / "part-2.gz", "wt", encoding="utf-8") as compressed:
        compressed.write("\n".join(good[10:]) + "\n")

    assert process(tmp_path, tmp_path / "archive") == 0

    [entry] = SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()
    assert entry.status is RunStatus.COMMITTED
    assert (entry.rows_in, entry.rows_out, entry.bad_rows) == (21, 18, 3)
    bad = spark.read.parquet(str(tmp_path / "out" / "bad_rows")).collect()
    assert {truncated, extra_tabs} < {row.line for row in bad}
    assert all(row.message for row in bad)


def test_a_run_folder_with_no_files_fails_and_says_what_to_do(
    spark, tmp_path: Path, capsys
) -> None:
    (tmp_path / "archive" / "run=2021-06-01-00-00-00").mkdir(parents=True)
    assert process(tmp_path, tmp_path / "archive") == 1
    err = capsys.readouterr().err
    assert "has no data files" in err
    assert "manifest skip" in err
    [entry] = SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()
    assert entry.status is RunStatus.FAILED


def test_an_impossible_run_date_is_not_a_run(spark, tmp_path: Path, caplog) -> None:
    (tmp_path / "archive" / "run=2021-02-30-00-00-00").mkdir(parents=True)
    (tmp_path / "archive" / "run=2021-02-30-00-00-00" / "part-0").write_text("x\n")
    assert process(tmp_path, tmp_path / "archive") == 0
    assert "run=2021-02-30-00-00-00" in caplog.text
    assert "impossible date" in caplog.text
    assert list(SQLiteRunManifest(str(tmp_path / "m.sqlite")).entries()) == []


def test_a_missing_archive_is_one_line(spark, tmp_path: Path, capsys) -> None:
    assert process(tmp_path, tmp_path / "nowhere") == 2
    assert "nowhere" in error_line(capsys)


def test_a_missing_table_says_how_to_create_it(moto_server: str, tmp_path: Path, capsys) -> None:
    code = main(["runs", "--manifest", "dynamodb://no-such-table"])
    assert code == 2
    assert "manifest create" in error_line(capsys)


def test_missing_credentials_say_what_to_set(
    moto_server: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["runs", "--manifest", "dynamodb://any-table"]) == 2
    assert "AWS_ACCESS_KEY_ID" in error_line(capsys)


def test_an_unreadable_state_file_names_the_file(spark, tmp_path: Path, capsys) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "sweep_running.json").write_text('{"format": "spark_manif')
    assert process(tmp_path, tmp_path / "archive") == 2
    assert "sweep_running.json" in error_line(capsys)
