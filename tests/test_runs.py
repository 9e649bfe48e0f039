"""Run folder parsing and archive listing, on local disk and on S3 (moto)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from snowplow_analytics_sdk.run_manifests import list_runids as sdk_list_runids

from spark_manifests import (
    ArchiveNotFoundError,
    InvalidLocationError,
    InvalidRunIdError,
    RunInputError,
    list_runids,
    list_runs,
    parse_run_id,
)
from spark_manifests._locations import parse_location
from spark_manifests.runs import Run, inspect_runs, list_run_files, without_cold_runs

UTC = timezone.utc
FOLDERS = [
    "run=2017-04-11-10-31-05",
    "run-2017-04-11-09-00-00",  # the form Snowplow's docs print
    "run=2017-02-30-00-00-00",  # impossible date: not a run
    "run=2017-04-11",  # truncated: not a run
    "shredded",  # not a run
    "run=2018-01-01-00-00-00",
]
EXPECTED = ["run-2017-04-11-09-00-00", "run=2017-04-11-10-31-05", "run=2018-01-01-00-00-00"]


def make_local_archive(root: Path, folders=FOLDERS) -> Path:
    for name in folders:
        (root / name).mkdir(parents=True)
        (root / name / "part-00000.gz").write_bytes(b"data")
    return root


def make_s3_archive(s3, bucket: str, prefix: str, folders=FOLDERS, storage_class="STANDARD"):
    s3.create_bucket(Bucket=bucket)
    for name in folders:
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}{name}/part-00000.gz",
            Body=b"data",
            StorageClass=storage_class,
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run=2017-04-11-10-31-05", datetime(2017, 4, 11, 10, 31, 5, tzinfo=UTC)),
        ("run-2017-04-11-10-31-05", datetime(2017, 4, 11, 10, 31, 5, tzinfo=UTC)),
        ("enriched/archive/run=2017-04-11-10-31-05/", datetime(2017, 4, 11, 10, 31, 5, tzinfo=UTC)),
        (
            "s3://acme/archive/run=2016-02-29-23-59-59",
            datetime(2016, 2, 29, 23, 59, 59, tzinfo=UTC),
        ),
    ],
)
def test_parse_run_id_accepts_both_forms(text: str, expected: datetime) -> None:
    assert parse_run_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "run=2017-02-29-00-00-00",
        "run=2017-04-11-25-00-00",
        "run=2017-04-11",
        "run_2017-04-11-10-31-05",
        "2017-04-11-10-31-05",
        "",
        "run=2017-04-11-10-31-05x",
        "run=2017-04-11-10-31-05\n",
        "run=\u0662\u0660\u0661\u0667-04-11-10-31-05",  # Arabic-Indic digits
    ],
)
def test_parse_run_id_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidRunIdError, match=r"run=YYYY-mm-DD-hh-MM-SS or run-"):
        parse_run_id(text)


def test_local_listing_finds_both_forms_in_time_order(tmp_path: Path) -> None:
    archive = make_local_archive(tmp_path / "archive")
    runs = list_runs(str(archive))
    assert [run.name for run in runs] == EXPECTED
    first = runs[0]
    assert first.id == first.path == f"{archive}/run-2017-04-11-09-00-00/"
    assert first.label == "2017-04-11-09-00-00"
    assert list_runs(f"file://{archive}") == runs


def test_s3_listing_matches_local_listing(aws, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "enriched/archive/")
    local = list_runs(str(make_local_archive(tmp_path / "archive")))

    runs = list_runs("s3://acme/enriched/archive/", client=s3)

    assert [run.name for run in runs] == [run.name for run in local]
    assert [run.timestamp for run in runs] == [run.timestamp for run in local]
    assert runs[1].id == "enriched/archive/run=2017-04-11-10-31-05/"
    assert runs[1].path == "s3://acme/enriched/archive/run=2017-04-11-10-31-05/"
    assert [r.path for r in list_runs("s3a://acme/enriched/archive", session=aws)] == [
        r.path.replace("s3://", "s3a://") for r in runs
    ]


def test_s3_listing_follows_every_page(aws) -> None:
    s3 = aws.client("s3")
    start = datetime(2020, 1, 1, tzinfo=UTC)
    names = [
        f"run={(start + timedelta(hours=i)).strftime('%Y-%m-%d-%H-%M-%S')}" for i in range(1203)
    ]
    s3.create_bucket(Bucket="big")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: s3.put_object(Bucket="big", Key=f"a/{n}/x", Body=b""), names))
    calls = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))

    runs = list_runs("s3://big/a/", client=s3)

    assert [run.name for run in runs] == names
    assert len(calls) == 2
    assert list_runids(s3, "s3://big/a") == [f"a/{name}/" for name in names]


def test_window_and_limit(tmp_path: Path) -> None:
    archive = str(make_local_archive(tmp_path / "archive"))
    since = datetime(2017, 4, 11, 10, 31, 5)  # naive means UTC; the bound is included
    assert [r.name for r in list_runs(archive, since=since)] == EXPECTED[1:]
    assert [r.name for r in list_runs(archive, until=since)] == EXPECTED[:2]
    assert [r.name for r in list_runs(archive, limit=1)] == EXPECTED[:1]
    assert [r.name for r in list_runs(archive, since=since, limit=1)] == EXPECTED[1:2]


def test_list_runids_is_the_sdk_call_but_finds_run_dash_folders(aws) -> None:
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "enriched/archive/")
    ours = list_runids(s3, "s3://acme/enriched/archive")
    sdk = sdk_list_runids(s3, "s3://acme/enriched/archive")
    assert set(sdk) < set(ours)
    assert "enriched/archive/run-2017-04-11-09-00-00/" in ours
    assert ours == [
        "enriched/archive/run-2017-04-11-09-00-00/",
        "enriched/archive/run=2017-04-11-10-31-05/",
        "enriched/archive/run=2018-01-01-00-00-00/",
    ]


def test_cold_runs_are_skipped_with_a_warning_and_only_cold_objects_cost_a_request(
    aws, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "archive/", folders=["run=2017-01-01-00-00-00"])
    make_s3_archive(
        s3, "cold", "archive/", folders=["run=2017-01-02-00-00-00"], storage_class="GLACIER"
    )
    s3.put_object(
        Bucket="acme",
        Key="archive/run=2017-01-03-00-00-00/part-0",
        Body=b"x",
        StorageClass="DEEP_ARCHIVE",
    )
    s3.put_object(
        Bucket="acme",
        Key="archive/run=2017-01-04-00-00-00/part-0",
        Body=b"x",
        StorageClass="GLACIER",
    )
    s3.restore_object(
        Bucket="acme", Key="archive/run=2017-01-04-00-00-00/part-0", RestoreRequest={"Days": 1}
    )
    heads = []
    s3.meta.events.register("before-call.s3.HeadObject", lambda **kw: heads.append(1))

    usable = without_cold_runs(list_runs("s3://acme/archive/", client=s3), client=s3)

    assert [run.name for run, _ in usable] == ["run=2017-01-01-00-00-00", "run=2017-01-04-00-00-00"]
    assert len(heads) == 2  # the two cold objects, nothing for the standard one
    assert "run=2017-01-03-00-00-00" in caplog.text
    assert "cold storage" in caplog.text
    assert list_runids(s3, "s3://cold/archive/") == []


def test_run_files_skip_markers_and_report_sizes(aws, tmp_path: Path) -> None:
    archive = make_local_archive(tmp_path / "archive", ["run=2017-01-01-00-00-00"])
    run_dir = archive / "run=2017-01-01-00-00-00"
    (run_dir / "_SUCCESS").write_bytes(b"")
    (run_dir / ".part-00000.gz.crc").write_bytes(b"")
    (run_dir / "sub").mkdir()
    (run_dir / "sub" / "part-00001").write_bytes(b"12345")
    [run] = list_runs(str(archive))
    files = list_run_files(run)
    assert [(Path(f.path).name, f.size) for f in files] == [("part-00000.gz", 4), ("part-00001", 5)]

    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "a/", folders=["run=2017-01-01-00-00-00"])
    for key in (
        "a/run=2017-01-01-00-00-00/_SUCCESS",
        "a/run=2017-01-01-00-00-00_$folder$",
        "a/run=2017-01-01-00-00-00/",
    ):
        s3.put_object(Bucket="acme", Key=key, Body=b"")
    [s3_run] = list_runs("s3://acme/a/", client=s3)
    assert [f.path for f in list_run_files(s3_run, client=s3)] == [
        "s3://acme/a/run=2017-01-01-00-00-00/part-00000.gz"
    ]


def test_errors_name_the_input(aws, tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFoundError, match="missing"):
        list_runs(str(tmp_path / "missing"))
    with pytest.raises(ArchiveNotFoundError, match="nobucket"):
        list_runs("s3://nobucket/archive/", session=aws)
    with pytest.raises(InvalidLocationError, match=r"s3://bucket/prefix/"):
        list_runs("s3://-bucket/archive/", session=aws)
    with pytest.raises(InvalidLocationError, match="unsupported scheme 'hdfs'"):
        list_runs("hdfs://namenode/archive/")
    with pytest.raises(InvalidLocationError, match="list_runs"):
        list_runids(aws.client("s3"), str(tmp_path))


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("s3:/acme/archive/", "write s3:// as in s3://bucket/prefix/"),
        ("S3A:acme/archive/", "write s3a:// as in"),
        ("s3//acme/state/", "write s3:// as in s3://bucket/prefix/"),
        ("file://data/archive/", "not a file:// URI of this machine"),
        ("file:data/archive/", "not a file:// URI of this machine"),
    ],
)
def test_a_mistyped_uri_is_not_taken_for_a_local_folder(typed: str, message: str) -> None:
    with pytest.raises(InvalidLocationError, match=re.escape(message)):
        parse_location(typed, what="archive")


def test_file_uris_and_legacy_bucket_names() -> None:
    assert parse_location("file:/data/run=x#1").key == "/data/run=x#1"  # as Spark prints paths
    assert parse_location("file://localhost/data/a%20b").key == "/data/a b"
    assert parse_location("file:///data/a?b").key == "/data/a?b"
    # POSIX keeps a leading // in abspath: each spelling must give the same run ids.
    spellings = ["/data/archive", "//data/archive/", "file:////data/archive", "///data/archive"]
    assert {parse_location(spelling).key for spelling in spellings} == {"/data/archive"}
    # us-east-1 buckets made before 2018 may have capitals and underscores.
    assert parse_location("s3://Acme_Events/archive/").bucket == "Acme_Events"


def test_local_and_s3_listings_agree_on_windows_and_limits(aws, tmp_path: Path) -> None:
    folders = [
        *FOLDERS,
        "run=2017-04-11-09-00-00",  # same time as the run- folder: ordered by id
        "run=2019-12-31-23-59-59",
        "_temporary",
    ]
    local_archive = str(make_local_archive(tmp_path / "archive", folders))
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "enriched/archive/", folders)
    s3.put_object(Bucket="acme", Key="enriched/archive/run=2017-04-11-10-31-05.txt", Body=b"")
    windows = [
        {},
        {"since": datetime(2017, 4, 11, 10, 31, 5, tzinfo=UTC)},
        {"until": datetime(2017, 4, 11, 10, 31, 5)},
        {"since": datetime(2017, 4, 11, 9, 0), "until": datetime(2018, 1, 1), "limit": 2},
        {"limit": 0},
        {"since": datetime(2030, 1, 1)},
    ]
    for window in windows:
        local = list_runs(local_archive, **window)
        remote = list_runs("s3://acme/enriched/archive/", client=s3, **window)
        assert [(r.name, r.timestamp, r.label) for r in local] == [
            (r.name, r.timestamp, r.label) for r in remote
        ], window
        assert [r.id for r in local] == [f"{local_archive}/{r.name}/" for r in local]
        assert [r.id for r in remote] == [f"enriched/archive/{r.name}/" for r in remote]
    names = [r.name for r in list_runs(local_archive)]
    assert names[:2] == ["run-2017-04-11-09-00-00", "run=2017-04-11-09-00-00"]
    with pytest.raises(ValueError, match="limit"):
        list_runs(local_archive, limit=-1)


def test_list_runids_lists_1000_objects_a_request_not_one_request_per_run(aws) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    start = datetime(2020, 1, 1, tzinfo=UTC)
    names = [
        f"run={(start + timedelta(hours=i)).strftime('%Y-%m-%d-%H-%M-%S')}" for i in range(400)
    ]
    keys = [f"archive/{name}/part-{part}" for name in names for part in range(3)]
    keys.append("archive/shredded/part-0")  # another folder: not listed, not a run
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket="acme", Key=key, Body=b"x"), keys))
    glacier = f"archive/{names[3]}/part-1"
    s3.copy_object(
        Bucket="acme",
        Key=glacier,
        CopySource={"Bucket": "acme", "Key": glacier},
        StorageClass="GLACIER",
    )
    calls = []
    s3.meta.events.register("before-call.s3", lambda event_name, **_: calls.append(event_name))

    run_ids = list_runids(s3, "s3://acme/archive/")

    assert run_ids == [f"archive/{name}/" for name in names if name != names[3]]
    assert calls == ["before-call.s3.ListObjectsV2"] * 2  # 1,200 objects: two pages
    calls.clear()
    sdk = sdk_list_runids(s3, "s3://acme/archive/")
    assert sdk == run_ids
    assert len(calls) == 401  # the SDK: one page, then one listing per run


def test_restore_status_from_the_listing_needs_no_head_requests(aws) -> None:
    """Real S3 reports RestoreStatus in ListObjectsV2 when asked; moto does not, so the
    test adds it to moto's answers as S3 would."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="acme")
    objects = {
        "a/run=2017-01-01-00-00-00/part-0": ("GLACIER", {"IsRestoreInProgress": False}),
        "a/run=2017-01-02-00-00-00/part-0": ("GLACIER", {"IsRestoreInProgress": True}),
        "a/run=2017-01-03-00-00-00/part-0": ("DEEP_ARCHIVE", None),
        "a/run=2017-01-04-00-00-00/part-0": ("STANDARD", None),
    }
    for key, (storage_class, _) in objects.items():
        s3.put_object(Bucket="acme", Key=key, Body=b"x", StorageClass=storage_class)
    asked, heads = [], []

    def ask(params, **_):
        asked.append(params.get("OptionalObjectAttributes"))

    def answer_like_s3(parsed, **_):
        for item in parsed.get("Contents", []):
            status = objects[item["Key"]][1]
            if status is not None:
                item["RestoreStatus"] = status

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", ask)
    s3.meta.events.register("after-call.s3.ListObjectsV2", answer_like_s3)
    s3.meta.events.register("before-call.s3.HeadObject", lambda **_: heads.append(1))
    runs = list_runs("s3://acme/a/", client=s3)

    usable = without_cold_runs(runs, client=s3)
    sdk_style = list_runids(s3, "s3://acme/a/")

    expected = ["run=2017-01-01-00-00-00", "run=2017-01-04-00-00-00"]
    assert [run.name for run, _ in usable] == expected
    assert sdk_style == [f"a/{name}/" for name in expected]
    assert heads == [1]  # only the DEEP_ARCHIVE object S3 said nothing about, to confirm
    assert asked[-1] == ["RestoreStatus"]
    [file] = usable[0][1]
    assert (file.storage_class, file.restored, file.cold) == ("GLACIER", True, False)


def test_a_missing_bucket_is_a_clear_error_everywhere(aws) -> None:
    s3 = aws.client("s3")
    with pytest.raises(ArchiveNotFoundError, match="nobucket"):
        list_runids(s3, "s3://nobucket/archive/")
    run = Run(
        id="archive/run=2017-01-01-00-00-00/",
        timestamp=parse_run_id("run=2017-01-01-00-00-00"),
        path="s3://nobucket/archive/run=2017-01-01-00-00-00/",
        name="run=2017-01-01-00-00-00",
    )
    with pytest.raises(ArchiveNotFoundError, match=r"s3://nobucket/archive/run=2017"):
        without_cold_runs([run], client=s3)


def test_a_run_folder_inside_a_run_is_refused(aws, tmp_path: Path) -> None:
    """Its rows would carry the inner run's label and replace that run's output."""
    archive = make_local_archive(tmp_path / "archive", ["run=2017-01-01-00-00-00"])
    nested = archive / "run=2017-01-01-00-00-00" / "copy" / "run=2016-12-31-00-00-00"
    nested.mkdir(parents=True)
    (nested / "part-00000").write_bytes(b"x")
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "a/", folders=["run=2017-01-01-00-00-00"])
    s3.put_object(
        Bucket="acme", Key="a/run=2017-01-01-00-00-00/run-2016-12-31-00-00-00/p", Body=b"x"
    )

    for runs in (list_runs(str(archive)), list_runs("s3://acme/a/", client=s3)):
        with pytest.raises(RunInputError, match=r"holds another run folder, run[=-]2016-12-31"):
            list_run_files(runs[0], client=s3)
        [listing] = inspect_runs(runs, client=s3)
        assert listing.files == []
        assert "Move run" in str(listing.problem)


def test_unreadable_local_files_make_a_problem_of_their_run_only(
    tmp_path: Path, monkeypatch
) -> None:
    archive = make_local_archive(
        tmp_path / "archive",
        ["run=2017-01-01-00-00-00", "run=2017-01-02-00-00-00", "run=2017-01-03-00-00-00"],
    )
    (archive / "run=2017-01-01-00-00-00" / "part-00001").symlink_to(tmp_path / "gone")
    locked = archive / "run=2017-01-02-00-00-00" / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # permissions do not stop root, so the refusal is simulated
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    broken, unlisted, fine = inspect_runs(list_runs(str(archive)))

    assert re.search(r"Cannot read .*part-00001 in run .*: No such file", str(broken.problem))
    assert re.search(r"Cannot list .*locked in run .*: Permission denied", str(unlisted.problem))
    assert fine.problem is None
    assert [Path(f.path).name for f in fine.files] == ["part-00000.gz"]


def test_linked_folders_in_a_run_are_read_once(tmp_path: Path) -> None:
    archive = make_local_archive(tmp_path / "archive", ["run=2017-01-01-00-00-00"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "part-00001").write_bytes(b"12345")
    run_dir = archive / "run=2017-01-01-00-00-00"
    (run_dir / "linked").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(run_dir)  # a link back up must not loop

    [run] = list_runs(str(archive))
    files = list_run_files(run)
    assert [(Path(f.path).name, f.size) for f in files] == [("part-00001", 5), ("part-00000.gz", 4)]
    assert Path(files[0].path).parent.name == "linked"


def test_listed_files_carry_their_modification_time(aws, tmp_path: Path) -> None:
    archive = make_local_archive(tmp_path / "archive", ["run=2017-01-01-00-00-00"])
    os.utime(archive / "run=2017-01-01-00-00-00" / "part-00000.gz", (0, 86400))
    s3 = aws.client("s3")
    make_s3_archive(s3, "acme", "a/", folders=["run=2017-01-01-00-00-00"])
    before = datetime.now(UTC) - timedelta(minutes=5)

    [local] = inspect_runs(list_runs(str(archive)))
    [remote] = inspect_runs(list_runs("s3://acme/a/", client=s3), client=s3)
    assert local.last_modified == datetime(1970, 1, 2, tzinfo=UTC)
    assert remote.last_modified is not None
    assert remote.last_modified > before
    assert remote.size == 4
