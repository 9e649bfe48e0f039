"""The source's public settings live in the unit that uses them: set between runs, a setting
applies to the next run, as when the source held it itself."""

from __future__ import annotations

from datetime import datetime, timezone

from spark_manifests import ManifestedRunSource


def test_a_setting_changed_between_runs_reaches_the_unit_that_uses_it(tmp_path) -> None:
    (tmp_path / "archive").mkdir()
    source = ManifestedRunSource(
        tmp_path / "archive",
        output=tmp_path / "out",
        manifest=tmp_path / "manifest.sqlite",
        state=tmp_path / "state",
        limit=5,
        lease_seconds=600,
    )
    since = datetime(2017, 4, 11, tzinfo=timezone.utc)
    source.since, source.limit, source.max_runs_per_batch = since, 2, 7
    source.settle_seconds, source.fail_fast, source.lease_seconds = 30.0, True, 900
    source.full_scan, source.reconcile_seconds = True, 60.0

    planner = source._planner
    assert (planner.since, planner.limit, planner.max_runs) == (since, 2, 7)
    assert planner.settle_seconds == 30.0
    assert (planner._watermarks.full_scan, planner._watermarks.reconcile_seconds) == (True, 60.0)
    assert source._ledger.fail_fast is True
    assert source._claims.lease_seconds == source._snapshots.lease_seconds == 900
    assert (source.since, source.limit, source.lease_seconds) == (since, 2, 900)
    source.close()


def test_the_reader_and_transform_can_be_replaced_between_runs(tmp_path) -> None:
    (tmp_path / "archive").mkdir()
    source = ManifestedRunSource(
        tmp_path / "archive", output=tmp_path / "out", manifest=tmp_path / "m.sqlite"
    )

    def transform(frame):
        return frame

    source.transform = transform
    assert source.transform is transform
    assert source._transform.given is transform
    source.close()
