"""Pending-run discovery: spark_manifests vs the Snowplow Analytics SDK 0.2.3, over real HTTP.

Starts a moto server in a separate process, fills an S3 archive with 5,000 run folders (one
small object each) and a DynamoDB manifest in which 4,990 of them are committed (items as
this package's ``commit`` writes them; ``--sdk-items`` for items holding only ``RunId``, as
the SDK's ``add`` writes them), then finds the 10 pending runs two ways and times each:

- spark_manifests: ``list_runs`` (ListObjectsV2 pages, ``Delimiter='/'``) and
  ``RunManifests.pending`` (BatchGetItem, 100 keys a call, reading back two attributes);
- the SDK: ``list_runids`` (which also lists every run once for its Glacier check) and one
  ``RunManifests.contains`` (GetItem) per run, as its documentation's loop does.

Prints wall time and AWS API calls for both, and the ratio. spark_manifests is timed
``--repeat`` times on fresh clients and its median is compared (one SDK pass takes minutes,
so the SDK is timed once, after ours: it runs on the warmer server). Targets: at least 40x faster,
at most 70 API calls. Exits non-zero if a target is missed. The server is stopped at the end.

    python benchmarks/bench_pending_runs.py [--runs 5000] [--pending 10] [--repeat 5] [--sdk-items]

``--steady-state`` measures instead what one start's discovery costs once the archive has a
watermark (``benchmarks/_bench_steady.py``): 20,000 settled runs of history and 10 new, the
start of a job that has run for years, side by side with a full read (today's start, and
a reconciliation's) and the SDK's loop, and again with 100 runs of history:

    python benchmarks/bench_pending_runs.py --steady-state [--runs 20000] [--pending 10]
        [--sdk-runs 2000]

The SDK loop is measured on ``--sdk-runs`` runs of history and scaled (see
``_bench_steady.py``): whole, it takes about 15 minutes at 20,000 runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

import boto3
from botocore.config import Config
from snowplow_analytics_sdk import run_manifests as sdk

from spark_manifests import RunManifests, list_runs

BUCKET = "acme-events"
PREFIX = "enriched/archive/"
TABLE = "snowplow-run-manifests"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TARGET_SPEEDUP = 40.0
TARGET_CALLS = 70


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in its own process on a free port; yields its URL, stops it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_client(service: str, url: str, **config: Any) -> Any:
    return boto3.session.Session().client(
        service, endpoint_url=url, region_name="us-east-1", config=Config(**config)
    )


def counted(client: Any) -> Counter[str]:
    """Count the API calls a client makes, by operation (botocore's before-call event)."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call", count)
    return calls


def run_ids(runs: int) -> list[str]:
    start = datetime(2017, 4, 11, 10, 31, 5, tzinfo=timezone.utc)
    return [
        f"{PREFIX}run={(start + timedelta(hours=i)).strftime('%Y-%m-%d-%H-%M-%S')}/"
        for i in range(runs)
    ]


def committed_item(run_id: str, sdk_items: bool) -> dict[str, Any]:
    """A committed run as this package's ``commit`` writes it, or as the SDK's ``add`` does."""
    if sdk_items:
        return {"RunId": {"S": run_id}}
    at = {"S": "2017-04-12T00:00:00+00:00"}
    return {
        "RunId": {"S": run_id},
        "RunStatus": {"S": "COMMITTED"},
        "Owner": {"S": "enriched-to-parquet@ip-10-0-0-1:4242"},
        "Attempts": {"N": "1"},
        "StartedAt": at,
        "CommittedAt": at,
        "UpdatedAt": at,
        "RowsIn": {"N": "120000"},
        "RowsOut": {"N": "119990"},
        "BadRows": {"N": "10"},
        "OutputPath": {"S": f"s3://{BUCKET}/output/events/run={run_id[-20:-1]}/"},
    }


def populate(url: str, ids: list[str], pending: set[str], sdk_items: bool) -> None:
    """The archive (one object per run) and the manifest (every run but the pending ones)."""
    s3 = make_client("s3", url, max_pool_connections=16)
    dynamodb = make_client("dynamodb", url)
    s3.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda run_id: s3.put_object(
                    Bucket=BUCKET, Key=f"{run_id}part-00000.gz", Body=b"event"
                ),
                ids,
            )
        )
    RunManifests(dynamodb, TABLE).create()
    committed = [
        {"PutRequest": {"Item": committed_item(run_id, sdk_items)}}
        for run_id in ids
        if run_id not in pending
    ]
    for start in range(0, len(committed), 25):  # BatchWriteItem takes 25 items a call
        request = {TABLE: committed[start : start + 25]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")


class Result(NamedTuple):
    name: str
    found: list[str]
    seconds: float
    calls: Counter[str]


def measure(
    name: str, discover: Callable[[Any, Any], list[str]], url: str, repeat: int = 1
) -> Result:
    """Time ``discover(s3, dynamodb)`` on fresh clients and count the API calls it makes.

    With ``repeat`` > 1 it runs that many times; the median time and the last run's calls
    are kept.
    """
    timings: list[Result] = []
    for _ in range(repeat):
        s3, dynamodb = make_client("s3", url), make_client("dynamodb", url)
        calls_s3, calls_dynamodb = counted(s3), counted(dynamodb)
        started = time.perf_counter()
        found = discover(s3, dynamodb)
        seconds = time.perf_counter() - started
        timings.append(Result(name, found, seconds, calls_s3 + calls_dynamodb))
    if repeat > 1:
        print(f"{name}: " + ", ".join(f"{result.seconds:.2f}s" for result in timings))
    median = statistics.median(result.seconds for result in timings)
    return timings[-1]._replace(seconds=median)


def ours(s3: Any, dynamodb: Any) -> list[str]:
    runs = list_runs(f"s3://{BUCKET}/{PREFIX}", client=s3)
    return RunManifests(dynamodb, TABLE).pending(run.id for run in runs)


def snowplow_sdk(s3: Any, dynamodb: Any) -> list[str]:
    manifests = sdk.RunManifests(dynamodb, TABLE)
    return [
        run_id
        for run_id in sdk.list_runids(s3, f"s3://{BUCKET}/{PREFIX}")
        if not manifests.contains(run_id)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, help="run folders in the archive (default: 5000; 20000 of history)"
    )
    parser.add_argument("--pending", type=int, default=10, help="runs not yet committed")
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed passes of spark_manifests (median kept)"
    )
    parser.add_argument(
        "--sdk-items",
        action="store_true",
        help="committed items hold only RunId, as the SDK writes them (default: as commit does)",
    )
    parser.add_argument(
        "--steady-state",
        action="store_true",
        help="one start's discovery with a watermark (--runs of history, --pending new)",
    )
    parser.add_argument(
        "--sdk-runs",
        type=int,
        default=2000,
        help="--steady-state: runs of history the SDK loop is measured on, then scaled",
    )
    args = parser.parse_args(argv)
    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)

    if args.steady_state:
        from _bench_steady import steady_state

        with moto_server() as url:
            history = args.runs or 20000
            return steady_state(
                url,
                history=history,
                new=args.pending,
                repeat=args.repeat,
                sdk_history=args.sdk_runs,
            )
    args.runs = args.runs or 5000
    ids = run_ids(args.runs)
    step = max(1, args.runs // max(1, args.pending))
    pending = set(ids[step // 2 :: step][: args.pending])
    with moto_server() as url:
        print(f"moto server (separate process): {url}")
        started = time.perf_counter()
        populate(url, ids, pending, args.sdk_items)
        shape = "RunId only, as the SDK writes" if args.sdk_items else "as commit() writes"
        print(
            f"setup: {args.runs:,} run folders, {args.runs - len(pending):,} committed "
            f"(items {shape}), {time.perf_counter() - started:.1f}s\n"
        )
        results = [
            measure("spark_manifests", ours, url, repeat=args.repeat),
            measure("Snowplow SDK 0.2.3", snowplow_sdk, url),
        ]

    expected = [run_id for run_id in ids if run_id in pending]
    for result in results:
        if result.found != expected:
            raise SystemExit(f"{result.name} found the wrong pending runs: {result.found}")
    print(f"pending runs found: {len(expected)} (both agree)\n")
    print(f"{'':20} {'wall time':>10} {'API calls':>10}  by operation")
    for result in results:
        operations = ", ".join(f"{op} {n:,}" for op, n in sorted(result.calls.items()))
        total = sum(result.calls.values())
        print(f"{result.name:20} {result.seconds:9.2f}s {total:>10,}  {operations}")
    mine, theirs = results
    our_calls = sum(mine.calls.values())
    speedup = theirs.seconds / mine.seconds
    ratio = sum(theirs.calls.values()) / our_calls
    print(f"\nspark_manifests is {speedup:.1f}x faster with {ratio:.0f}x fewer API calls")
    met_speed = speedup >= TARGET_SPEEDUP
    met_calls = our_calls <= TARGET_CALLS
    print(f"target >= {TARGET_SPEEDUP:.0f}x faster: {'met' if met_speed else 'MISSED'}")
    print(f"target <= {TARGET_CALLS} API calls: {'met' if met_calls else 'MISSED'}")
    return 0 if met_speed and met_calls else 1


if __name__ == "__main__":
    sys.exit(main())
