"""The steady-state case of ``bench_pending_runs.py``: one start's discovery with a watermark.

An archive of ``history`` settled runs (committed in the manifest, the watermark on the newest)
and ``new`` runs copied since. One start's discovery is measured three ways:

- watermark: what ``ManifestedRunSource.run`` does now: read the watermark, list from it,
  read the status of those runs;
- full read: every run listed and its status read (a start before the watermark, and what a
  reconciliation costs once a day);
- the Snowplow SDK loop: ``list_runids`` and one ``contains`` per run.

Read units follow DynamoDB's pricing, since moto reports a made-up figure: a strongly
consistent read costs one unit per 4 KB of each item, at least one per key asked, an
eventually consistent one half that. The same discovery over an archive of 100 runs of
history must not be slower (targets: at most 5 calls and 50 read units).

The SDK loop costs two calls per run of history (about 20 ms each over a busy moto server:
15 minutes at 20,000 runs), so it is measured on an archive of ``sdk_history`` runs (2,000
by default) and its time, calls and read units scaled to ``history`` runs, as it grows
linearly; the table says so. ``--sdk-runs`` equal to ``--runs`` measures it whole.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

from bench_pending_runs import BUCKET, TABLE, committed_item, counted, make_client, run_ids
from snowplow_analytics_sdk import run_manifests as sdk

from spark_manifests import ManifestedRunSource, RunManifests, list_runs

TARGET_CALLS = 5
TARGET_READ_UNITS = 50
SMALL_HISTORY = 100
# Wall time of a start over a long history may exceed that over a short one by this factor
# (timer noise on a shared machine), and no more.
TIME_TOLERANCE = 1.25


class Cost(NamedTuple):
    name: str
    found: list[str]
    seconds: float
    calls: Counter[str]
    read_units: float
    #: The fastest pass: what the time target compares (the others add the machine's noise).
    fastest: float


class ReadUnits:
    """DynamoDB read units of a client's GetItem and BatchGetItem calls."""

    def __init__(self, client: Any) -> None:
        self.total = 0.0
        self._asked = threading.local()
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetItem":
            self._asked.value = (1, params.get("ConsistentRead", False))
        elif model.name == "BatchGetItem":
            request = next(iter(params["RequestItems"].values()))
            self._asked.value = (len(request["Keys"]), request.get("ConsistentRead", False))
        else:
            self._asked.value = (0, False)

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        keys, consistent = getattr(self._asked, "value", (0, False))
        if model.name == "GetItem":
            items = [parsed["Item"]] if "Item" in parsed else []
        elif model.name == "BatchGetItem":
            items = [item for found in parsed.get("Responses", {}).values() for item in found]
        else:
            return
        units = sum(max(1, math.ceil(len(json.dumps(item)) / 4096)) for item in items)
        units += keys - len(items)  # a key not found still costs its minimum
        self.total += units if consistent else units / 2


def load(url: str, prefix: str, history: int, new: int) -> list[str]:
    """An archive under ``prefix`` with ``history`` committed runs, the watermark on the
    newest, and ``new`` runs after them; returns the new runs' ids."""
    ids = [run_id.replace("enriched/archive/", prefix) for run_id in run_ids(history + new)]
    s3 = make_client("s3", url, max_pool_connections=16)
    dynamodb = make_client("dynamodb", url)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda run: s3.put_object(Bucket=BUCKET, Key=f"{run}part-0", Body=b"e"), ids))
    items = [{"PutRequest": {"Item": committed_item(run, False)}} for run in ids[:history]]
    for start in range(0, len(items), 25):
        request = {TABLE: items[start : start + 25]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")
    manifest = RunManifests(dynamodb, TABLE)
    assert manifest.advance_watermark(manifest.watermark(prefix), ids[history - 1], reconciled=True)
    return ids[history:]


def measure(name: str, discover: Callable[[Any, Any], list[str]], url: str, repeat: int) -> Cost:
    """The median and fastest times of ``repeat`` passes on fresh clients; the last pass's
    calls and units."""
    passes = []
    for _ in range(repeat):
        s3, dynamodb = make_client("s3", url), make_client("dynamodb", url)
        s3_calls, dynamodb_calls = counted(s3), counted(dynamodb)
        units = ReadUnits(dynamodb)
        started = time.perf_counter()
        found = discover(s3, dynamodb)
        seconds = time.perf_counter() - started
        calls = s3_calls + dynamodb_calls
        passes.append(Cost(name, found, seconds, calls, units.total, seconds))
    median = statistics.median(cost.seconds for cost in passes)
    return passes[-1]._replace(seconds=median, fastest=min(cost.seconds for cost in passes))


def watermark_start(prefix: str) -> Callable[[Any, Any], list[str]]:
    def discover(s3: Any, dynamodb: Any) -> list[str]:
        source = ManifestedRunSource(
            f"s3://{BUCKET}/{prefix}",
            output=f"s3://{BUCKET}/output/",
            manifest=RunManifests(dynamodb, TABLE),
            client=s3,
        )
        runs, _ = source._planner.discover()
        return [run.id for run in source._planner.pending_among(runs)]

    return discover


def full_read(prefix: str) -> Callable[[Any, Any], list[str]]:
    def discover(s3: Any, dynamodb: Any) -> list[str]:
        runs = list_runs(f"s3://{BUCKET}/{prefix}", client=s3)
        return RunManifests(dynamodb, TABLE).pending(run.id for run in runs)

    return discover


def sdk_loop(prefix: str) -> Callable[[Any, Any], list[str]]:
    def discover(s3: Any, dynamodb: Any) -> list[str]:
        manifests = sdk.RunManifests(dynamodb, TABLE)
        runs = sdk.list_runids(s3, f"s3://{BUCKET}/{prefix}")
        return [run_id for run_id in runs if not manifests.contains(run_id)]

    return discover


def scaled(cost: Cost, factor: float, name: str) -> Cost:
    """A measured cost of a loop linear in the runs, scaled by ``factor``."""
    calls = Counter({op: round(n * factor) for op, n in cost.calls.items()})
    seconds = cost.seconds * factor
    return Cost(name, cost.found, seconds, calls, cost.read_units * factor, seconds)


def steady_state(url: str, *, history: int, new: int, repeat: int, sdk_history: int) -> int:
    """Load the archives, measure, print the table; 0 when every target is met."""
    long_prefix, short_prefix, sdk_prefix = "enriched/archive/", "enriched/short/", "enriched/sdk/"
    sdk_history = min(sdk_history, history)
    make_client("s3", url).create_bucket(Bucket=BUCKET)
    RunManifests(make_client("dynamodb", url), TABLE).create()
    started = time.perf_counter()
    expected = load(url, long_prefix, history, new)
    expected_short = load(url, short_prefix, SMALL_HISTORY, new)
    if sdk_history < history:
        expected_sdk = load(url, sdk_prefix, sdk_history, new)
    else:
        sdk_prefix, expected_sdk = long_prefix, expected
    print(f"setup: {history:,} settled runs + {new} new, and {SMALL_HISTORY} + {new}: ", end="")
    print(f"{time.perf_counter() - started:.1f}s\n")
    cases = [
        ("watermark", watermark_start(long_prefix), history, repeat, expected),
        ("watermark", watermark_start(short_prefix), SMALL_HISTORY, repeat, expected_short),
        ("full read", full_read(long_prefix), history, max(1, repeat // 2), expected),
        ("SDK loop", sdk_loop(sdk_prefix), sdk_history, 1, expected_sdk),
    ]
    costs = []
    for way, discover, runs, passes, wanted in cases:
        cost = measure(f"{way}, {runs:,} history", discover, url, passes)
        if cost.found != wanted:
            raise SystemExit(f"{cost.name} found the wrong pending runs: {cost.found[:5]}...")
        costs.append(cost)
    if sdk_history < history:
        name = f"SDK loop, {history:,} (scaled)"
        costs.append(scaled(costs[-1], (history + new) / (sdk_history + new), name))
    print_costs(costs)
    steady, short = costs[0], costs[1]
    checks = {
        f"<= {TARGET_CALLS} calls": sum(steady.calls.values()) <= TARGET_CALLS,
        f"<= {TARGET_READ_UNITS} read units": steady.read_units <= TARGET_READ_UNITS,
        f"no slower than with {SMALL_HISTORY} runs of history "
        f"(fastest of {repeat} passes, x{TIME_TOLERANCE} noise)": (
            steady.fastest <= short.fastest * TIME_TOLERANCE
        ),
    }
    for target, met in checks.items():
        print(f"target {target}: {'met' if met else 'MISSED'}")
    return 0 if all(checks.values()) else 1


def print_costs(costs: list[Cost]) -> None:
    """The table, each row's calls and read units also as a multiple of the first row's."""
    base = costs[0]
    base_calls, base_units = sum(base.calls.values()), base.read_units
    print(
        f"{'one start discovering':32} {'wall time':>10} {'calls':>7} {'x':>7} "
        f"{'read units':>11} {'x':>7}  by call"
    )
    for cost in costs:
        operations = ", ".join(f"{op} {n:,}" for op, n in sorted(cost.calls.items()))
        total = sum(cost.calls.values())
        units = cost.read_units
        print(
            f"{cost.name:32} {cost.seconds:9.3f}s {total:>7,} {total / base_calls:>6,.0f}x "
            f"{units:>11,.1f} {units / base_units:>6,.0f}x  {operations}"
        )
    print()
