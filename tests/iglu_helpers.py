"""Helpers of the Iglu tests: static repositories on disk, enriched lines with entities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.test_enriched import contexts, tsv, unstruct, write_run

__all__ = ["contexts", "event_line", "tsv", "unstruct", "write_run", "write_schema"]


def write_schema(root: Path, uri: str, properties: dict[str, Any], **extra: Any) -> None:
    """An object schema ``uri`` (``vendor/name/jsonschema/version``) in a static layout."""
    vendor, name, _, version = uri.split("/")
    folder = root / "schemas" / vendor / name / "jsonschema"
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
        "self": {"vendor": vendor, "name": name, "format": "jsonschema", "version": version},
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }
    (folder / version).write_text(json.dumps(document), encoding="utf-8")


def event_line(
    event_id: str, *entities: tuple[str, Any], event: tuple[str, Any] | None = None
) -> str:
    """An enriched line with ``entities`` in contexts and ``event`` as unstruct_event."""
    values = {"event_id": event_id, "collector_tstamp": "2017-04-11 10:31:05"}
    if entities:
        values["contexts"] = contexts(*entities)
    if event is not None:
        values["unstruct_event"] = unstruct(*event)
    return tsv(**values)
