"""One realistic Snowplow enriched event, as its 131 fields: the generator behind
``spark_manifests.samples``.

``event_fields`` fills the fields of one event of a random type (page view, page ping,
structured, unstructured, transaction, transaction item) with its contexts and derived
contexts, from a seeded random stream.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from typing import Callable

from ._enriched_fields import FIELD_COUNT, INDEX

_SNOWPLOW = "com.snowplowanalytics.snowplow"
CONTEXTS_SCHEMA = f"iglu:{_SNOWPLOW}/contexts/jsonschema/1-0-1"
_UNSTRUCT_SCHEMA = f"iglu:{_SNOWPLOW}/unstruct_event/jsonschema/1-0-0"

_APPS = ("shop", "blog", "mobile-app")
_CITIES = (
    ("DE", "BE", "Berlin", "10115", 52.5200, 13.4050, "Land Berlin", "Europe/Berlin"),
    ("CH", "ZH", "Zürich", "8001", 47.3769, 8.5417, "Zürich", "Europe/Zurich"),
    ("BR", "SP", "São Paulo", "01000-000", -23.5505, -46.6333, "São Paulo", "America/Sao_Paulo"),
    ("JP", "13", "東京", "100-0001", 35.6895, 139.6917, "東京都", "Asia/Tokyo"),
    ("US", "NY", "New York", "10001", 40.7128, -74.0060, "New York", "America/New_York"),
    ("GB", "ENG", "London", "EC1A", 51.5074, -0.1278, "England", "Europe/London"),
)
_PAGES = (
    ("/", "Acme \u2013 home", ""),
    ("/products/42", 'The "Best" Kettle — 1.7 l', "ref=home"),
    ("/products/7", "Café au lait mug ☕", "colour=blue&size=L"),
    ("/blog/2017/why", "Why? Ünïcödé & <tags>", ""),
    ("/search", "Search results for 'tea'", "q=tea&page=2"),
    ("/checkout", "Checkout \\ step 1", ""),
)
_REFERRERS = (
    ("https", "www.google.com", 443, "/search", "q=acme+kettle", "search", "Google", "acme kettle"),
    ("http", "news.ycombinator.com", 80, "/item", "id=1", "unknown", "", ""),
    ("https", "t.co", 443, "/abc", "", "social", "Twitter", ""),
)
_BROWSERS = (
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_4) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/57.0.2987.133 Safari/537.36",
        "Chrome 57",
        "Chrome",
        "57.0.2987.133",
        "WEBKIT",
        "Mac OS X",
        "Mac OS X",
        "Apple Inc.",
        "Computer",
        "0",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3 like Mac OS X) AppleWebKit/603.1.30 "
        "(KHTML, like Gecko) Version/10.0 Mobile/14E277 Safari/602.1",
        "Mobile Safari",
        "Safari",
        "10.0",
        "WEBKIT",
        "iOS 10 (iPhone)",
        "iOS",
        "Apple Inc.",
        "Mobile",
        "1",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:52.0) Gecko/20100101 Firefox/52.0",
        "Firefox 52",
        "Firefox",
        "52.0",
        "GECKO",
        "Windows 10",
        "Windows",
        "Microsoft Corporation",
        "Computer",
        "0",
    ),
)
_PRODUCTS = (
    ("sku-42", 'Kettle "Turbo"', "Kitchen", 39.99),
    ("sku-7", "Café mug", "Kitchen", 9.5),
    ("sku-13", "Teapot 日本", "Kitchen", 54.0),
    ("sku-99", "Gift card \\ €50", "Gifts", 50.0),
)
_LANGS = ("en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR")


def _tstamp(moment: datetime, rng: random.Random) -> str:
    # Mostly with milliseconds, as Snowplow writes them; sometimes without.
    if rng.random() < 0.15:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def dumps(value: object, rng: random.Random) -> str:
    # Snowplow writes raw UTF-8; some trackers send \\u escapes: produce both.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=rng.random() < 0.1)


def self_describing(schema: str, data: object) -> dict[str, object]:
    return {"schema": f"iglu:{schema}", "data": data}


def event_fields(rng: random.Random, moment: datetime) -> list[str]:
    f = [""] * FIELD_COUNT
    kind = rng.choices(_EVENT_KINDS, weights=_EVENT_WEIGHTS)[0]
    collector = moment + timedelta(microseconds=rng.randrange(1_000_000))
    created = collector - timedelta(milliseconds=rng.randrange(50, 5000))
    sent = created + timedelta(milliseconds=rng.randrange(1, 40))
    set_ = _setter(f)
    set_("app_id", rng.choice(_APPS))
    set_("platform", "web" if rng.random() < 0.9 else "mob")
    set_("etl_tstamp", _tstamp(moment + timedelta(minutes=55), rng))
    set_("collector_tstamp", _tstamp(collector, rng))
    set_("dvce_created_tstamp", _tstamp(created, rng))
    set_("dvce_sent_tstamp", _tstamp(sent, rng))
    set_("derived_tstamp", _tstamp(collector - (sent - created), rng))
    if rng.random() < 0.05:
        set_("true_tstamp", _tstamp(created, rng))
    set_("event_id", _uuid(rng))
    if rng.random() < 0.7:
        set_("txn_id", str(rng.randrange(100000, 999999)))
    set_("name_tracker", rng.choice(("cf", "sp", "clojure")))
    set_("v_tracker", rng.choice(("js-2.7.2", "js-2.8.0", "ios-0.6.2")))
    set_("v_collector", "clj-1.1.0-tom-0.2.0")
    set_("v_etl", "spark-1.9.0-common-0.25.0")
    if rng.random() < 0.3:
        set_("user_id", f"user{rng.randrange(10000)}@example.com")
    set_("user_ipaddress", f"92.231.{rng.randrange(256)}.x")
    set_("user_fingerprint", str(rng.randrange(10**9, 4 * 10**9)))
    set_("domain_userid", f"{rng.getrandbits(64):016x}")
    set_("domain_sessionidx", str(rng.randrange(1, 60)))
    set_("domain_sessionid", _uuid(rng))
    set_("network_userid", _uuid(rng))
    _geo(rng, set_)
    page = rng.choice(_PAGES)
    _page(rng, set_, page)
    _browser(rng, set_)
    set_("event_fingerprint", f"{rng.getrandbits(128):032x}")
    set_("etl_tags", "" if rng.random() < 0.9 else '["sample"]')
    set_("contexts", dumps(_contexts(rng, page), rng))
    set_("derived_contexts", dumps(_derived_contexts(rng), rng))
    _EVENT_FILLERS[kind](rng, set_)
    return f


def _setter(fields: list[str]) -> Callable[[str, str], None]:
    def set_(name: str, value: str) -> None:
        fields[INDEX[name]] = value

    return set_


def _geo(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    if rng.random() < 0.1:  # no geo lookup: all geo fields empty
        return
    country, region, city, zipcode, lat, lon, region_name, tz = rng.choice(_CITIES)
    set_("geo_country", country)
    set_("geo_region", region)
    set_("geo_city", city)
    set_("geo_zipcode", zipcode)
    set_("geo_latitude", f"{lat + rng.uniform(-0.05, 0.05):.4f}")
    set_("geo_longitude", f"{lon + rng.uniform(-0.05, 0.05):.4f}")
    set_("geo_region_name", region_name)
    set_("geo_timezone", tz)


def _page(rng: random.Random, set_: Callable[[str, str], None], page: tuple[str, str, str]) -> None:
    path, title, query = page
    fragment = "reviews" if rng.random() < 0.1 else ""
    url = f"https://shop.acme.com{path}" + (f"?{query}" if query else "")
    set_("page_url", url + (f"#{fragment}" if fragment else ""))
    set_("page_title", title)
    set_("page_urlscheme", "https")
    set_("page_urlhost", "shop.acme.com")
    set_("page_urlport", "443")
    set_("page_urlpath", path)
    set_("page_urlquery", query)
    set_("page_urlfragment", fragment)
    set_("doc_charset", "UTF-8")
    set_("doc_width", str(rng.choice((1280, 1440, 375))))
    set_("doc_height", str(rng.randrange(800, 6000)))
    if rng.random() < 0.5:
        scheme, host, port, rpath, rquery, medium, source, term = rng.choice(_REFERRERS)
        set_("page_referrer", f"{scheme}://{host}{rpath}" + (f"?{rquery}" if rquery else ""))
        set_("refr_urlscheme", scheme)
        set_("refr_urlhost", host)
        set_("refr_urlport", str(port))
        set_("refr_urlpath", rpath)
        set_("refr_urlquery", rquery)
        set_("refr_medium", medium)
        set_("refr_source", source)
        set_("refr_term", term)
    if rng.random() < 0.2:
        set_("mkt_medium", "cpc")
        set_("mkt_source", "google")
        set_("mkt_term", "kettle")
        set_("mkt_campaign", "spring_sale")
        set_("mkt_clickid", f"{rng.getrandbits(48):x}")
        set_("mkt_network", "Google")
    if rng.random() < 0.03:  # cross-domain navigation
        set_("refr_domain_userid", f"{rng.getrandbits(64):016x}")
        set_("refr_device_tstamp", "2017-04-11 09:00:00.000")


def _browser(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    ua, name, family, version, engine, os_name, os_family, maker, device, mobile = rng.choice(
        _BROWSERS
    )
    set_("useragent", ua)
    set_("br_name", name)
    set_("br_family", family)
    set_("br_version", version)
    set_("br_type", "Browser")
    set_("br_renderengine", engine)
    set_("br_lang", rng.choice(_LANGS))
    if rng.random() < 0.9:  # older trackers send no plugin flags
        for feature in ("pdf", "flash", "java", "director", "quicktime", "realplayer"):
            set_(f"br_features_{feature}", rng.choice("01"))
        for feature in ("windowsmedia", "gears", "silverlight"):
            set_(f"br_features_{feature}", "0")
    set_("br_cookies", "1")
    set_("br_colordepth", "24")
    set_("br_viewwidth", str(rng.choice((1280, 1440, 375))))
    set_("br_viewheight", str(rng.choice((720, 900, 667))))
    set_("os_name", os_name)
    set_("os_family", os_family)
    set_("os_manufacturer", maker)
    set_("os_timezone", rng.choice(("Europe/Berlin", "America/New_York", "Asia/Tokyo")))
    set_("dvce_type", device)
    set_("dvce_ismobile", mobile)
    set_("dvce_screenwidth", str(rng.choice((1920, 2560, 375))))
    set_("dvce_screenheight", str(rng.choice((1080, 1440, 667))))


def _contexts(rng: random.Random, page: tuple[str, str, str]) -> dict[str, object]:
    entities = [self_describing(f"{_SNOWPLOW}/web_page/jsonschema/1-0-0", {"id": _uuid(rng)})]
    # Several products: two (or more) entities of one schema, in two revisions of model 1.
    for _ in range(rng.choice((0, 1, 2, 2, 3))):
        sku, name, category, price = rng.choice(_PRODUCTS)
        revision = rng.choice(("1-0-0", "1-0-1"))
        data: dict[str, object] = {"sku": sku, "name": name, "category": category, "price": price}
        if revision == "1-0-1":
            data["tags"] = ["new", 'say "hi"'] if rng.random() < 0.5 else []
        entities.append(self_describing(f"com.acme/product/jsonschema/{revision}", data))
    if rng.random() < 0.3:
        entities.append(
            self_describing(
                "com.google.analytics/cookies/jsonschema/1-0-0",
                {"__utma": f"{rng.getrandbits(32)}.{rng.getrandbits(32)}", "_ga": "GA1.2.3"},
            )
        )
    if rng.random() < 0.2:
        entities.append(
            self_describing(
                "com.acme.marketing/ABTest/jsonschema/2-1-0",
                {"experiment": "checkout-colour", "variant": rng.choice("AB"), "page": page[1]},
            )
        )
    return self_describing(CONTEXTS_SCHEMA[len("iglu:") :], entities)


def _derived_contexts(rng: random.Random) -> dict[str, object]:
    entities = [
        self_describing(
            f"{_SNOWPLOW}/ua_parser_context/jsonschema/1-0-0",
            {
                "useragentFamily": "Chrome",
                "useragentMajor": "57",
                "useragentMinor": "0",
                "useragentPatch": None,
                "osFamily": "Mac OS X",
                "deviceFamily": "Other",
            },
        )
    ]
    if rng.random() < 0.5:
        start = 1491906665000 + rng.randrange(10**6)
        entities.append(
            self_describing(
                "org.w3/PerformanceTiming/jsonschema/1-0-0",
                {"navigationStart": start, "domComplete": start + rng.randrange(200, 4000)},
            )
        )
    if rng.random() < 0.2:
        entities.append(
            self_describing(
                "com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0",
                {"spiderOrRobot": False, "category": "BROWSER", "reason": "PASSED_ALL"},
            )
        )
    return self_describing(CONTEXTS_SCHEMA[len("iglu:") :], entities)


# -- event types --------------------------------------------------------------------------


def _snowplow_event(set_: Callable[[str, str], None], name: str, event: str) -> None:
    set_("event", event)
    set_("event_vendor", _SNOWPLOW)
    set_("event_name", name)
    set_("event_format", "jsonschema")
    set_("event_version", "1-0-0")


def _page_view(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    _snowplow_event(set_, "page_view", "page_view")


def _page_ping(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    _snowplow_event(set_, "page_ping", "page_ping")
    x, y = rng.randrange(0, 100), rng.randrange(0, 3000)
    set_("pp_xoffset_min", "0")
    set_("pp_xoffset_max", str(x))
    set_("pp_yoffset_min", str(y))
    set_("pp_yoffset_max", str(y + rng.randrange(0, 1500)))


def _struct(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    _snowplow_event(set_, "event", "struct")
    set_("se_category", rng.choice(("video", "basket", "newsletter")))
    set_("se_action", rng.choice(("play", "add", "subscribe")))
    if rng.random() < 0.6:
        set_("se_label", rng.choice(('Intro "2017"', "bär", "tab\\tnot")))
    if rng.random() < 0.4:
        set_("se_property", "hd")
    if rng.random() < 0.5:
        set_("se_value", f"{rng.uniform(0, 100):.2f}")


_UNSTRUCT_EVENTS: tuple[tuple[str, Callable[[random.Random], dict[str, object]]], ...] = (
    (
        f"{_SNOWPLOW}/link_click/jsonschema/1-0-1",
        lambda rng: {
            "targetUrl": 'https://www.example.com/a?b=c&d="e"',
            "elementId": "nav-link",
            "elementClasses": ["nav", "highlight"],
            "elementTarget": "_blank",
        },
    ),
    (
        f"{_SNOWPLOW}/submit_form/jsonschema/1-0-0",
        lambda rng: {
            "formId": "signup",
            "formClasses": [],
            "elements": [
                {"name": "email", "value": None, "nodeName": "INPUT", "type": "email"},
                {"name": "comment", "value": "Grüße\\n „quoted“", "nodeName": "TEXTAREA"},
            ],
        },
    ),
    (
        "com.acme.shop/AddToBasket/jsonschema/2-0-0",
        lambda rng: {"sku": rng.choice(_PRODUCTS)[0], "quantity": rng.randrange(1, 5)},
    ),
)


def _unstruct(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    schema, make_data = rng.choice(_UNSTRUCT_EVENTS)
    vendor, name, event_format, version = schema.split("/")
    set_("event", "unstruct")
    set_("event_vendor", vendor)
    set_("event_name", name)
    set_("event_format", event_format)
    set_("event_version", version)
    payload = self_describing(
        _UNSTRUCT_SCHEMA[len("iglu:") :], self_describing(schema, make_data(rng))
    )
    set_("unstruct_event", dumps(payload, rng))


def _transaction(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    _snowplow_event(set_, "transaction", "transaction")
    total = round(rng.uniform(5, 500), 2)
    set_("tr_orderid", f"order-{rng.randrange(10**6)}")
    set_("tr_affiliation", "web shop")
    set_("tr_total", f"{total:.2f}")
    set_("tr_tax", f"{total * 0.19:.2f}")
    set_("tr_shipping", rng.choice(("0", "4.95", "")))
    set_("tr_city", "Köln")
    set_("tr_state", "NRW")
    set_("tr_country", "DE")
    set_("tr_currency", "EUR")
    set_("tr_total_base", f"{total * 1.08:.2f}")
    set_("tr_tax_base", f"{total * 0.19 * 1.08:.2f}")
    set_("base_currency", "USD")


def _transaction_item(rng: random.Random, set_: Callable[[str, str], None]) -> None:
    _snowplow_event(set_, "transaction_item", "transaction_item")
    sku, name, category, price = rng.choice(_PRODUCTS)
    set_("ti_orderid", f"order-{rng.randrange(10**6)}")
    set_("ti_sku", sku)
    set_("ti_name", name)
    set_("ti_category", category)
    set_("ti_price", f"{price}")
    set_("ti_quantity", str(rng.randrange(1, 4)))
    set_("ti_currency", "EUR")
    set_("ti_price_base", f"{price * 1.08:.2f}")
    set_("base_currency", "USD")


_EVENT_FILLERS = {
    "page_view": _page_view,
    "page_ping": _page_ping,
    "struct": _struct,
    "unstruct": _unstruct,
    "transaction": _transaction,
    "transaction_item": _transaction_item,
}
_EVENT_KINDS = tuple(_EVENT_FILLERS)
_EVENT_WEIGHTS = (30, 35, 10, 15, 5, 5)
