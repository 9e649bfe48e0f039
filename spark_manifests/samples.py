"""Realistic Snowplow enriched events for demos, tests and benchmarks.

``generate_enriched_lines`` makes tab-separated enriched-event lines (131 fields) of several
event types: page views, page pings, structured events, unstructured events (link clicks, form
submissions, a custom ``AddToBasket`` event), transactions and transaction items. Lines carry
``contexts`` with several entities (often two of one schema, and two revisions of one model),
``derived_contexts`` (user-agent parser, ``org.w3/PerformanceTiming``, spiders and robots),
empty fields, unicode text, and JSON whose strings hold quotes, backslashes and ``\\u`` escapes.
A share of malformed lines, of every kind the reader turns into a bad row, can be mixed in.

``write_sample_archive`` writes such lines into an archive of run folders
(``run=YYYY-mm-DD-hh-MM-SS``), several part files per run, plain or gzip.

Everything is deterministic for a given ``seed``; every event has its own ``event_id``.

Examples
--------
>>> lines = generate_enriched_lines(3, seed=1)
>>> len(lines), len(lines[0].split("\\t"))
(3, 131)
"""

from __future__ import annotations

import gzip
import logging
import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Callable

from ._enriched_fields import FIELD_COUNT, INDEX
from ._sample_event import CONTEXTS_SCHEMA, dumps, event_fields, self_describing

__all__ = ["BAD_LINE_KINDS", "generate_enriched_lines", "write_sample_archive"]

_logger = logging.getLogger(__name__)

DEFAULT_START = datetime(2017, 4, 11, 10, 31, 5, tzinfo=timezone.utc)

#: The kinds of malformed line the generator mixes in, one of each in turn.
BAD_LINE_KINDS = (
    "too_few_fields",
    "too_many_fields",
    "bad_int",
    "bad_double",
    "bad_timestamp",
    "bad_boolean",
    "bad_contexts_json",
    "bad_unstruct_json",
    "bad_derived_contexts_json",
    "bad_schema_uri",
    "several_bad_fields",
)


def generate_enriched_lines(n: int, *, seed: int = 0, bad_line_ratio: float = 0.0) -> list[str]:
    """``n`` enriched-event TSV lines (no line breaks), a share of them malformed.

    Parameters
    ----------
    n
        Number of lines.
    seed
        Same seed, same lines.
    bad_line_ratio
        Share (0 to 1) of lines that are malformed, cycling through ``BAD_LINE_KINDS``.

    Examples
    --------
    >>> good = generate_enriched_lines(50, seed=3)
    >>> len({line.split("\\t")[6] for line in good})  # event_id
    50
    """
    return list(_lines(random.Random(seed), n, DEFAULT_START, bad_line_ratio))


def write_sample_archive(
    path: str | os.PathLike[str],
    *,
    runs: int = 3,
    events_per_run: int = 1000,
    files_per_run: int = 4,
    bad_line_ratio: float = 0.0,
    start: datetime = DEFAULT_START,
    seed: int = 0,
    compress: bool = False,
    interval: timedelta = timedelta(hours=1),
) -> list[str]:
    """Write an archive of ``runs`` run folders under ``path``; return the folders.

    Run ``i`` is ``run=<start + i * interval>`` (``YYYY-mm-DD-hh-MM-SS``) and holds
    ``files_per_run`` part files (``part-00000``, or ``part-00000.gz`` when ``compress``)
    sharing its ``events_per_run`` lines. Each folder also gets an empty ``_SUCCESS``
    marker, as Hadoop writes it. Returns the run folders as absolute paths ending in ``/``.

    Examples
    --------
    >>> import tempfile
    >>> folders = write_sample_archive(tempfile.mkdtemp(), runs=2, events_per_run=10)
    >>> [folder.rsplit("/", 2)[-2] for folder in folders]
    ['run=2017-04-11-10-31-05', 'run=2017-04-11-11-31-05']
    """
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    root = os.path.abspath(os.fspath(path))
    folders = []
    for run_number in range(runs):
        run_time = start + run_number * interval
        folder = os.path.join(root, "run=" + run_time.strftime("%Y-%m-%d-%H-%M-%S"))
        os.makedirs(folder, exist_ok=True)
        for file_number, count in enumerate(_split_evenly(events_per_run, files_per_run)):
            # One stream per file: files stay deterministic however many there are.
            rng = random.Random(f"{seed}/{run_number}/{file_number}")
            lines = _lines(rng, count, run_time - interval, bad_line_ratio)
            name = f"part-{file_number:05d}" + (".gz" if compress else "")
            _write_lines(os.path.join(folder, name), lines, compress)
        open(os.path.join(folder, "_SUCCESS"), "wb").close()
        folders.append(folder + "/")
    _logger.info("Wrote %d sample runs under %s", runs, root)
    return folders


def _split_evenly(total: int, parts: int) -> list[int]:
    parts = max(1, parts)
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _write_lines(path: str, lines: Iterator[str], compress: bool) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if compress:
        # mtime=0: the same seed gives byte-identical files.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write(data)
    else:
        with open(path, "wb") as out:
            out.write(data)


def _lines(rng: random.Random, n: int, start: datetime, bad_line_ratio: float) -> Iterator[str]:
    bad_made = 0
    for number in range(n):
        fields = event_fields(rng, start + timedelta(seconds=number * 3600.0 / max(n, 1)))
        if bad_line_ratio and rng.random() < bad_line_ratio:
            kind = BAD_LINE_KINDS[bad_made % len(BAD_LINE_KINDS)]
            bad_made += 1
            yield _BREAKERS[kind](rng, fields)
        else:
            yield "\t".join(fields)


# -- one event --------------------------------------------------------------------------

# -- malformed lines ----------------------------------------------------------------------


def _with(fields: list[str], **values: str) -> str:
    changed = list(fields)
    for name, value in values.items():
        changed[INDEX[name]] = value
    return "\t".join(changed)


_BREAKERS: dict[str, Callable[[random.Random, list[str]], str]] = {
    "too_few_fields": lambda rng, f: "\t".join(f[: rng.randrange(1, FIELD_COUNT - 1)]),
    "too_many_fields": lambda rng, f: "\t".join([*f, "surplus"]),
    "bad_int": lambda rng, f: _with(f, txn_id=rng.choice(("12abc", "1.5", "99999999999"))),
    "bad_double": lambda rng, f: _with(f, geo_latitude="52,52"),
    "bad_timestamp": lambda rng, f: _with(
        f, collector_tstamp=rng.choice(("2017-02-30 10:00:00", "yesterday", "2017-04-11T25:00"))
    ),
    "bad_boolean": lambda rng, f: _with(f, br_cookies=rng.choice(("yes", "2", "true"))),
    "bad_contexts_json": lambda rng, f: _with(f, contexts=f[INDEX["contexts"]][:-7]),
    "bad_unstruct_json": lambda rng, f: _with(
        f, unstruct_event='{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/'
    ),
    "bad_derived_contexts_json": lambda rng, f: _with(f, derived_contexts="{not json}"),
    "bad_schema_uri": lambda rng, f: _with(
        f,
        contexts=dumps(
            self_describing(
                CONTEXTS_SCHEMA[len("iglu:") :],
                [{"schema": "iglu:com.acme/product/jsonschema/1.0.0", "data": {"sku": "x"}}],
            ),
            rng,
        ),
    ),
    "several_bad_fields": lambda rng, f: _with(
        f, domain_sessionidx="first", dvce_ismobile="maybe", tr_total="€12", etl_tstamp="soon"
    ),
}
