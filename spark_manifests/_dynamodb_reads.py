"""Reading many runs of the DynamoDB manifest at once: BatchGetItem, 100 keys a call,
several calls in flight, with keys handed back unprocessed retried after a backoff."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ._aws import aws_errors
from ._dynamodb_items import attribute_names, backoff_seconds, item_key, table_resource
from .exceptions import RetryableError

#: BatchGetItem takes at most 100 keys a call.
BATCH_GET_KEYS = 100
#: How many BatchGetItem answers in a row may hand every key back before giving up.
MAX_UNPROCESSED_RETRIES = 10


def batch_get_items(
    dynamodb: Any,
    table_name: str,
    run_ids: list[str],
    *,
    projection: str | None,
    concurrency: int,
    sleep: Callable[[float], None],
) -> Iterator[dict[str, Any]]:
    """The items of the runs (unique ids), by BatchGetItem calls of up to 100 keys.

    Up to ``concurrency`` calls are in flight at once: a backlog of thousands of runs
    costs a few round trips, not one per hundred runs.
    """
    request: dict[str, Any] = {"ConsistentRead": True}
    if projection:
        request["ProjectionExpression"] = projection
        request["ExpressionAttributeNames"] = attribute_names(projection)
    keys = [item_key(run_id) for run_id in run_ids]
    chunks = [keys[i : i + BATCH_GET_KEYS] for i in range(0, len(keys), BATCH_GET_KEYS)]

    def read(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _batch_get_chunk(dynamodb, table_name, request, chunk, sleep)

    if len(chunks) <= 1 or concurrency <= 1:
        for chunk in chunks:
            yield from read(chunk)
        return
    with ThreadPoolExecutor(min(concurrency, len(chunks))) as pool:
        for items in pool.map(read, chunks):
            yield from items


def _batch_get_chunk(
    dynamodb: Any,
    table_name: str,
    request: dict[str, Any],
    keys: list[dict[str, Any]],
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    """The items of up to 100 keys; keys DynamoDB hands back unprocessed (throttling) go
    into the next call after an exponential backoff with jitter."""
    resource = table_resource(table_name)
    items: list[dict[str, Any]] = []
    queue = deque(keys)
    throttled = stalled = 0  # answers in a row with keys handed back / with nothing read
    while queue:
        asked = [queue.popleft() for _ in range(min(BATCH_GET_KEYS, len(queue)))]
        with aws_errors("read the run manifest", resource):
            response = dynamodb.batch_get_item(
                RequestItems={table_name: {**request, "Keys": asked}}
            )
        items.extend(response.get("Responses", {}).get(table_name, []))
        unprocessed = response.get("UnprocessedKeys", {}).get(table_name, {})
        if not unprocessed.get("Keys"):
            throttled = stalled = 0
            continue
        throttled += 1
        stalled = stalled + 1 if len(unprocessed["Keys"]) == len(asked) else 0
        if stalled > MAX_UNPROCESSED_RETRIES:
            raise RetryableError(
                f"Could not read the run manifest ({resource}): DynamoDB returned "
                f"every key unprocessed {stalled} times in a row (throttled). Try again "
                "later, or raise the table's read capacity."
            )
        queue.extendleft(reversed(unprocessed["Keys"]))
        sleep(backoff_seconds(throttled))
    return items
