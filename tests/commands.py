"""Running the ``spark-manifests`` command in tests, and reading what it printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_manifests.cli import main


def process(tmp_path: Path, archive: Path | str, *extra: str) -> int:
    """``spark-manifests process`` of ``archive`` into ``tmp_path``: output ``out``, manifest
    ``m.sqlite``, state ``state``; ``extra`` options come last and win."""
    where = ["--output", str(tmp_path / "out"), "--manifest", str(tmp_path / "m.sqlite")]
    where += ["--state", str(tmp_path / "state"), "--job", "sweep"]
    return main(["process", "--archive", str(archive), *where, *extra])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line the command printed (it must be one)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("spark-")]
    assert len(lines) == 1, lines
    return lines[0]
