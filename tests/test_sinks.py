"""ParquetSink's output checks and removals, on local disk and on S3 (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_manifests import OutputInUseError, ParquetSink, parse_run_id
from spark_manifests.runs import Run
from spark_manifests.sinks import OUTPUT_OWNER_FILE, BatchCommitSink

LABELS = [f"2017-04-11-{hour}-00-00" for hour in (10, 11, 12, 13)]


def make_run(label: str) -> Run:
    name = f"run={label}"
    return Run(f"archive/{name}/", parse_run_id(name), f"s3://acme/archive/{name}/", name)


RUNS = [make_run(label) for label in LABELS]


def put_partitions(s3, folder: str) -> None:
    for label in LABELS:
        for part in range(3):
            s3.put_object(Bucket="out", Key=f"parquet/{folder}/run={label}/part-{part}.parquet")
    s3.put_object(Bucket="out", Key=f"parquet/{folder}/_SUCCESS")


def keys(s3) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="out")
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_s3_remove_output_deletes_exactly_the_partitions_of_the_runs_given(aws) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="out")
    put_partitions(s3, "events")
    put_partitions(s3, "bad_rows")
    sink = ParquetSink("s3://out/parquet/", session=aws)
    before = keys(s3)

    sink.remove_output([RUNS[1], RUNS[3]])

    removed = {k for k in before if k.startswith("parquet/events/run=") and LABELS[1] in k}
    removed |= {k for k in before if k.startswith("parquet/events/run=") and LABELS[3] in k}
    assert len(removed) == 6
    assert keys(s3) == sorted(set(before) - removed)
    assert not sink.has_output(RUNS[1])
    assert sink.has_output(RUNS[0])
    assert sink.has_output(RUNS[2])

    sink.remove_output([RUNS[0]], bad_rows=True)
    assert not any(f"bad_rows/run={LABELS[0]}/" in k for k in keys(s3))
    assert sink.has_output(RUNS[0])  # the events stay


def test_s3_remove_output_reads_every_page(aws) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="out")
    for part in range(1_050):  # more than one listing page (1,000 keys)
        s3.put_object(Bucket="out", Key=f"parquet/events/run={LABELS[0]}/part-{part:05}.parquet")
    s3.put_object(Bucket="out", Key=f"parquet/events/run={LABELS[1]}/part-0.parquet")

    ParquetSink("s3://out/parquet/", session=aws).remove_output([RUNS[0]])

    assert keys(s3) == [f"parquet/events/run={LABELS[1]}/part-0.parquet"]


def test_local_remove_output(tmp_path: Path) -> None:
    for label in LABELS[:2]:
        partition = tmp_path / "events" / f"run={label}"
        partition.mkdir(parents=True)
        (partition / "part-0.parquet").write_bytes(b"PAR1")
    sink = ParquetSink(tmp_path)

    sink.remove_output([RUNS[0], RUNS[2]])  # RUNS[2] has no partition: nothing to do

    assert not sink.has_output(RUNS[0])
    assert sink.has_output(RUNS[1])


@pytest.mark.parametrize("where", ["s3", "local"])
def test_an_output_records_its_manifest_and_refuses_another(
    aws, tmp_path: Path, where: str
) -> None:
    if where == "s3":
        aws.client("s3").create_bucket(Bucket="out")
        output = "s3://out/parquet/"
    else:
        output = str(tmp_path / "parquet")
    sink = ParquetSink(output, session=aws)

    sink.prepare(job_name="enriched_to_parquet", manifest="dynamodb://acme-runs")
    sink.prepare(job_name="worker2", manifest="dynamodb://acme-runs")  # a worker of the job
    sink.prepare(job_name="notebook", manifest=None)  # no lasting manifest: nothing to check
    with pytest.raises(OutputInUseError) as refused:
        ParquetSink(output, session=aws).prepare(
            job_name="daily_page_views", manifest="dynamodb://acme-page-view-runs"
        )

    marker = f"{output.rstrip('/')}/{OUTPUT_OWNER_FILE}"
    assert (
        "holds the runs of the manifest dynamodb://acme-runs (job 'enriched_to_parquet', "
        f"see {marker}); job 'daily_page_views' uses dynamodb://acme-page-view-runs"
    ) in str(refused.value)


@pytest.mark.parametrize("content", ["{half", "[1]"])
def test_an_unreadable_owner_file_says_to_delete_it(tmp_path: Path, content: str) -> None:
    (tmp_path / OUTPUT_OWNER_FILE).write_text(content)
    with pytest.raises(OutputInUseError, match=r"does not say which manifest.*delete it"):
        ParquetSink(str(tmp_path)).prepare(job_name="j", manifest="dynamodb://acme-runs")


def test_jobs_starting_at_once_on_a_new_output_all_see_its_manifest(tmp_path: Path) -> None:
    """Workers of one job starting together: none may read the owner file half written."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    for round_number in range(20):
        output = str(tmp_path / f"out{round_number}")
        start = threading.Barrier(8)

        def prepare(worker: int, output: str = output, start: threading.Barrier = start) -> None:
            start.wait()
            ParquetSink(output).prepare(job_name=f"w{worker}", manifest="dynamodb://acme-runs")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(prepare, range(8)))  # raises what a worker raised
        assert [p.name for p in Path(output).iterdir()] == [OUTPUT_OWNER_FILE]


class _Committing(BatchCommitSink):
    def write_batch(self, events, bad_rows, runs, *, batch_id: str) -> None: ...

    def batch_committed(self, batch_id: str) -> bool:
        return batch_id == "job/landed"

    def output_path(self, run: Run) -> str:
        return "table"


def test_a_batch_commit_sink_needs_only_write_batch_and_batch_committed() -> None:
    sink = _Committing()
    assert sink.supports_batch_commits
    # A run in flight without a batch id is written again: it has no output to trust.
    assert not sink.has_output(RUNS[0])
    with pytest.raises(NotImplementedError, match="write_batch"):
        sink.write(None, RUNS)  # type: ignore[arg-type]
