"""Iglu without Spark: JSON Schema -> column types, version merging, the resolver (resolver
configuration, static repositories, priorities, vendor prefixes, an Iglu Server over HTTP,
an unreachable repository)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from spark_manifests import IgluConfigError
from spark_manifests._iglu_types import column_name, ddl, merge, node_of
from spark_manifests.iglu import IgluResolver, SchemaResolutionError
from tests.iglu_helpers import write_schema

PRODUCT = "com.acme/product/jsonschema"


def type_of(schema: dict[str, Any]) -> str:
    return ddl(node_of(json.loads(json.dumps(schema), parse_float=Decimal)), json_keys=False)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer"}, "bigint"),
        ({"type": "integer", "minimum": 0, "maximum": 100}, "int"),
        ({"type": "integer", "minimum": 0, "maximum": 2**40}, "bigint"),
        ({"type": "integer", "minimum": 0, "maximum": 10**30}, "decimal(38,0)"),
        ({"type": "number"}, "double"),
        ({"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 99999}, "decimal(9,2)"),
        (
            {"type": "number", "multipleOf": 0.0001, "minimum": -1e12, "maximum": 1e12},
            "decimal(18,4)",
        ),
        ({"type": "number", "multipleOf": 0.01}, "double"),
        ({"type": "number", "multipleOf": 1}, "bigint"),
        ({"type": ["number", "null"]}, "double"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "string", "format": "date-time"}, "timestamp_ltz"),
        ({"type": ["string", "null"], "format": "date"}, "date"),
        ({"type": "string", "format": "email"}, "string"),
        ({"type": ["string", "integer"]}, "string"),  # a union: JSON text
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "string"),
        ({"anyOf": [{"type": "string"}]}, "string"),
        ({"type": "object"}, "string"),  # no properties: JSON text
        ({"enum": ["a", "b", None]}, "string"),
        ({"enum": [1, 2.5]}, "decimal(9,1)"),
        ({"type": "array", "items": {"type": "integer"}}, "array<bigint>"),
        ({"type": "array"}, "array<string>"),
        (
            {
                "type": "object",
                "properties": {
                    "zLast": {"type": "string"},
                    "HTTPStatus": {"type": "integer", "minimum": 100, "maximum": 599},
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"skuCode": {"type": "string"}}},
                    },
                },
            },
            "struct<`http_status`: int, `items`: array<struct<`sku_code`: string>>, "
            "`z_last`: string>",
        ),
    ],
)
def test_types_follow_the_loaders_rules(schema: dict[str, Any], expected: str) -> None:
    assert type_of(schema) == expected


def test_column_names_are_the_loaders_snake_case() -> None:
    assert column_name("navigationStart") == "navigation_start"
    assert column_name("HTTPStatus") == "http_status"
    assert column_name("already_snake") == "already_snake"
    assert column_name("a-b.c") == "a_b_c"


def obj(**properties: Any) -> Any:
    return node_of({"type": "object", "properties": properties})


def test_minor_versions_merge_and_a_type_change_breaks() -> None:
    first = obj(a={"type": "string"}, b={"type": "integer"})
    second = obj(a={"type": "string"}, c={"type": "boolean"})
    merged = merge(first, second)
    assert merged is not None
    assert [f.name for f in merged.fields] == ["a", "b", "c"]  # kept in place, new appended
    assert merge(merged, obj(b={"type": "string"})) is None
    nested = obj(
        n={"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}}
    )
    widened = obj(
        n={"type": "array", "items": {"type": "object", "properties": {"y": {"type": "string"}}}}
    )
    assert ddl(merge(nested, widened), json_keys=False) == (  # type: ignore[arg-type]
        "struct<`n`: array<struct<`x`: bigint, `y`: string>>>"
    )


def test_a_wider_integer_or_decimal_is_not_a_breaking_change() -> None:
    small = {"type": "integer", "minimum": 0, "maximum": 100}
    price = {"type": "number", "multipleOf": Decimal("0.01"), "minimum": 0}
    first = obj(n=small, p={**price, "maximum": 999})
    wider = obj(n={**small, "maximum": 2**40}, p={**price, "maximum": 10**12})
    merged = merge(first, wider)
    assert merged is not None
    assert ddl(merged, json_keys=False) == "struct<`n`: bigint, `p`: decimal(18,2)>"
    assert merge(wider, first) == merged  # a later, narrower version fits the wider column
    assert merge(obj(p={**price, "maximum": 999}), obj(p={"type": "number"})) is None


# -- resolver ---------------------------------------------------------------------------------


def test_static_repositories_in_order_and_the_cache(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_schema(second, f"{PRODUCT}/1-0-0", {"from": {"enum": ["second"]}})
    write_schema(second, f"{PRODUCT}/1-0-1", {"from": {"enum": ["second"]}})
    write_schema(first, f"{PRODUCT}/1-0-1", {"from": {"enum": ["first"]}})
    resolver = IgluResolver.coerce([str(first), str(second)])
    assert resolver.schema(f"iglu:{PRODUCT}/1-0-1")["properties"]["from"]["enum"] == ["first"]
    assert resolver.schema(f"iglu:{PRODUCT}/1-0-0")["properties"]["from"]["enum"] == ["second"]
    assert resolver.model_versions("com.acme", "product", "1") == ["1-0-0", "1-0-1"]
    (second / "schemas" / "com.acme" / "product" / "jsonschema" / "1-0-0").unlink()
    assert "properties" in resolver.schema(f"iglu:{PRODUCT}/1-0-0")  # cached: fetched once


def resolver_config(*repositories: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {"cacheSize": 500, "cacheTtl": 600, "repositories": list(repositories)},
    }


def repository(
    name: str, priority: int, prefixes: list[str], connection: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "priority": priority,
        "vendorPrefixes": prefixes,
        "connection": connection,
    }


def test_resolver_config_priorities_and_vendor_prefixes(tmp_path: Path) -> None:
    for label in ("low", "high", "acme"):
        write_schema(tmp_path / label, f"{PRODUCT}/1-0-0", {"from": {"enum": [label]}})
        write_schema(
            tmp_path / label, "com.other/thing/jsonschema/1-0-0", {"from": {"enum": [label]}}
        )
    config = resolver_config(
        repository("low", 5, [], {"embedded": {"path": str(tmp_path / "low")}}),
        repository("acme", 9, ["com.acme"], {"embedded": {"path": str(tmp_path / "acme")}}),
        repository("high", 1, [], {"embedded": {"path": str(tmp_path / "high")}}),
    )
    path = tmp_path / "resolver.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    resolver = IgluResolver.coerce(str(path))
    # The vendor prefix wins over priority; otherwise the lowest priority number first.
    assert resolver.schema(f"iglu:{PRODUCT}/1-0-0")["properties"]["from"]["enum"] == ["acme"]
    other = resolver.schema("iglu:com.other/thing/jsonschema/1-0-0")
    assert other["properties"]["from"]["enum"] == ["high"]


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": {}}, "not an Iglu resolver"),
        (resolver_config(), "no repositories"),
        (resolver_config({"name": "x", "connection": {}}), "needs an http"),
    ],
)
def test_bad_resolver_configs_say_what_is_wrong(config: dict[str, Any], says: str) -> None:
    with pytest.raises(IgluConfigError, match=says):
        IgluResolver.coerce(config)


class IgluServerHandler(SimpleHTTPRequestHandler):
    """A static repository with Iglu Server's listing of a model's versions and an API key."""

    apikey = "secret-key"
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.headers.get("apikey") != self.apikey:
            self.send_error(403)
            return
        parts = self.path.strip("/").split("/")  # api/schemas/<vendor>/<name>/jsonschema/<x>
        if len(parts) == 6 and parts[5].isdigit():  # a model: list its versions
            folder = Path(self.directory, *parts[1:5])
            found = (
                sorted(p.name for p in folder.glob(f"{parts[5]}-*-*")) if folder.is_dir() else []
            )
            body = json.dumps([f"iglu:{parts[2]}/{parts[3]}/jsonschema/{v}" for v in found])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.path = self.path.replace("/api/", "/", 1)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def iglu_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An Iglu Server on 127.0.0.1 serving ``root``; yields its API URL and root."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(IgluServerHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    IgluServerHandler.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_repository_with_api_key_and_listing(iglu_server: tuple[str, Path]) -> None:
    url, root = iglu_server
    for version in ("1-0-0", "1-0-1", "1-1-0"):
        write_schema(root, f"{PRODUCT}/{version}", {"sku": {"type": "string"}})
    config = resolver_config(
        repository("server", 0, ["com.acme"], {"http": {"uri": url, "apikey": "secret-key"}})
    )
    resolver = IgluResolver.coerce(config)
    assert resolver.model_versions("com.acme", "product", "1") == ["1-0-0", "1-0-1", "1-1-0"]
    assert resolver.schema(f"iglu:{PRODUCT}/1-1-0")["self"]["version"] == "1-1-0"
    resolver.schema(f"iglu:{PRODUCT}/1-1-0")
    assert IgluServerHandler.requests.count("/api/schemas/com.acme/product/jsonschema/1-1-0") == 1
    refused = IgluResolver.coerce([url])  # no API key: 403, the repository cannot be read
    with pytest.raises(SchemaResolutionError, match="unreachable \\(HTTP 403\\)"):
        refused.schema(f"iglu:{PRODUCT}/1-0-0")


def test_unreachable_repository_is_skipped_and_named(tmp_path: Path) -> None:
    write_schema(tmp_path / "local", f"{PRODUCT}/1-0-0", {"sku": {"type": "string"}})
    dead = f"http://127.0.0.1:{free_port()}"
    resolver = IgluResolver.coerce([dead, str(tmp_path / "local")])
    assert resolver.schema(f"iglu:{PRODUCT}/1-0-0")["self"]["version"] == "1-0-0"
    with pytest.raises(SchemaResolutionError) as raised:
        resolver.schema(f"iglu:{PRODUCT}/2-0-0")
    message = str(raised.value)
    assert f"iglu:{PRODUCT}/2-0-0" in message
    assert f"{dead}: unreachable" in message
    assert "local: not found" in message


def test_s3_repository(aws: Any, tmp_path: Path) -> None:
    write_schema(tmp_path, f"{PRODUCT}/1-0-0", {"sku": {"type": "string"}})
    client = aws.client("s3")
    client.create_bucket(Bucket="acme-iglu")
    schema = tmp_path / "schemas" / "com.acme" / "product" / "jsonschema" / "1-0-0"
    client.put_object(
        Bucket="acme-iglu",
        Key="iglu/schemas/com.acme/product/jsonschema/1-0-0",
        Body=schema.read_bytes(),
    )
    resolver = IgluResolver.from_repositories(["s3://acme-iglu/iglu/"], session=aws)
    assert resolver.schema(f"iglu:{PRODUCT}/1-0-0")["self"]["version"] == "1-0-0"
    assert resolver.model_versions("com.acme", "product", "1") == ["1-0-0"]
    with pytest.raises(SchemaResolutionError, match="not found"):
        resolver.schema(f"iglu:{PRODUCT}/1-0-1")
