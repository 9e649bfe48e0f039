"""The sample-data generator: realistic, deterministic, unique event ids, every bad-line kind."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

from snowplow_analytics_sdk.event_transformer import transform

from spark_manifests.enriched import ENRICHED_EVENT_FIELDS
from spark_manifests.samples import BAD_LINE_KINDS, generate_enriched_lines, write_sample_archive

POSITION = {name: position for position, (name, _) in enumerate(ENRICHED_EVENT_FIELDS)}


def field(line: str, name: str) -> str:
    return line.split("\t")[POSITION[name]]


def test_lines_are_deterministic_per_seed() -> None:
    assert generate_enriched_lines(40, seed=1) == generate_enriched_lines(40, seed=1)
    assert generate_enriched_lines(40, seed=1) != generate_enriched_lines(40, seed=2)


def test_lines_are_realistic_and_valid_for_the_sdk() -> None:
    lines = generate_enriched_lines(400, seed=3)
    assert all(len(line.split("\t")) == len(ENRICHED_EVENT_FIELDS) for line in lines)
    assert all("\n" not in line for line in lines)
    events = [transform(line) for line in lines]  # raises on any invalid line
    kinds = Counter(event["event"] for event in events)
    assert set(kinds) == {
        "page_view",
        "page_ping",
        "struct",
        "unstruct",
        "transaction",
        "transaction_item",
    }
    keys = Counter(key for event in events for key in event)
    assert keys["contexts_com_acme_product_1"] > 100
    assert keys["contexts_org_w3_performance_timing_1"] > 100  # CamelCase name
    assert keys["unstruct_event_com_acme_shop_add_to_basket_2"] > 5
    assert keys["geo_location"] < len(lines)  # some events have no geo lookup
    assert any(len(event.get("contexts_com_acme_product_1", [])) >= 2 for event in events)
    assert any(not line.isascii() for line in lines)
    assert any("\\u" in field(line, "contexts") for line in lines)  # escaped unicode too
    assert any(len(field(line, "collector_tstamp")) == 19 for line in lines)  # no millis


def test_event_ids_are_unique_across_an_archive(tmp_path: Path) -> None:
    folders = write_sample_archive(tmp_path, runs=3, events_per_run=200, files_per_run=3)
    ids = [
        field(line, "event_id")
        for file in tmp_path.glob("run=*/part-*")
        for line in file.read_text(encoding="utf-8").splitlines()
    ]
    assert len(ids) == 600
    assert len(set(ids)) == 600
    assert len(folders) == 3


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _bad_kind(line: str) -> str | None:
    """Which malformation a line carries, told from its fields; None for a good line."""
    fields = line.split("\t")
    if len(fields) != len(ENRICHED_EVENT_FIELDS):
        return "too_few_fields" if len(fields) < len(ENRICHED_EVENT_FIELDS) else "too_many_fields"
    value = dict(zip((name for name, _ in ENRICHED_EVENT_FIELDS), fields))
    contexts = _json_or_none(value["contexts"])
    checks = {
        "several_bad_fields": value["etl_tstamp"] == "soon",
        "bad_int": not re.fullmatch(r"-?[0-9]{1,9}|", value["txn_id"]),
        "bad_double": value["geo_latitude"] == "52,52",
        "bad_timestamp": not re.fullmatch(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?",
            value["collector_tstamp"],
        )
        or value["collector_tstamp"].startswith("2017-02-30"),
        "bad_boolean": value["br_cookies"] not in ("0", "1", ""),
        "bad_contexts_json": contexts is None,
        "bad_unstruct_json": bool(value["unstruct_event"])
        and _json_or_none(value["unstruct_event"]) is None,
        "bad_derived_contexts_json": _json_or_none(value["derived_contexts"]) is None,
        "bad_schema_uri": contexts is not None
        and any("1.0.0" in entity["schema"] for entity in contexts["data"]),
    }
    found = [kind for kind, bad in checks.items() if bad]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_every_bad_line_kind_is_mixed_in() -> None:
    lines = generate_enriched_lines(400, seed=4, bad_line_ratio=0.3)
    kinds = Counter(_bad_kind(line) for line in lines)
    bad = sum(count for kind, count in kinds.items() if kind is not None)
    assert 80 <= bad <= 160
    assert set(kinds) - {None} == set(BAD_LINE_KINDS)
    assert (
        max(kinds[kind] for kind in BAD_LINE_KINDS) - min(kinds[kind] for kind in BAD_LINE_KINDS)
        <= 1
    )  # one of each in turn
    for line in lines:
        if _bad_kind(line) is None:
            transform(line)  # the good ones stay valid for the SDK
    assert all(_bad_kind(line) is None for line in generate_enriched_lines(200, seed=4))


def test_archive_layout(tmp_path: Path) -> None:
    folders = write_sample_archive(tmp_path, runs=2, events_per_run=10, files_per_run=4)
    assert folders == [
        f"{tmp_path}/run=2017-04-11-10-31-05/",
        f"{tmp_path}/run=2017-04-11-11-31-05/",
    ]
    names = sorted(p.name for p in Path(folders[0]).iterdir())
    assert names == ["_SUCCESS", "part-00000", "part-00001", "part-00002", "part-00003"]
    sizes = [len(Path(folders[0], n).read_text().splitlines()) for n in names[1:]]
    assert sizes == [3, 3, 2, 2]


def test_gzip_archive_holds_the_same_lines_and_is_reproducible(tmp_path: Path) -> None:
    plain = write_sample_archive(tmp_path / "plain", runs=1, events_per_run=30, seed=9)
    packed = write_sample_archive(
        tmp_path / "gzip", runs=1, events_per_run=30, seed=9, compress=True
    )
    again = write_sample_archive(
        tmp_path / "again", runs=1, events_per_run=30, seed=9, compress=True
    )
    for number in range(4):
        text = Path(plain[0], f"part-{number:05d}").read_bytes()
        packed_file = Path(packed[0], f"part-{number:05d}.gz").read_bytes()
        assert gzip.decompress(packed_file) == text
        assert Path(again[0], f"part-{number:05d}.gz").read_bytes() == packed_file


def test_json_fields_are_self_describing() -> None:
    for line in generate_enriched_lines(50, seed=6):
        for name in ("contexts", "derived_contexts"):
            value = json.loads(field(line, name))
            assert value["schema"].startswith("iglu:com.snowplowanalytics.snowplow/contexts/")
            assert all(entity["schema"].startswith("iglu:") for entity in value["data"])
