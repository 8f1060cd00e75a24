"""Webhook fuzzer: hostile deliveries against the intake, counting what must never happen.

Every case is built from a real fixture delivery (``tests/fixtures/<platform>/*.json``)
and belongs to one of three families:

- **mutants**, signed with the shop's own secret: fields deleted, types swapped, nulls,
  huge strings and numbers, unicode and right-to-left text, deep nesting, duplicated
  keys, broken JSON, bodies that are no object, another topic's body, wrong content
  types, odd topics and odd (still signed) headers. Each may be answered 2xx or 4xx,
  never 5xx; each answered "stored" must be in the database. A drain then applies
  them through the real intake (:func:`jobs.intake.deliveries.drain`): each must be processed,
  or refused with its reason on the row (a ``WebhookError``), never crash.
- **forgeries**: a wrong secret, a byte changed after signing, another shop's
  signature, missing, duplicated or malformed headers, odd signatures. None may be
  accepted.
- **replays**: the same delivery sent again is stored once (also after the drain);
  two different WooCommerce bodies under one ``X-WC-Webhook-Delivery-ID`` (WooCommerce
  derives it from the webhook id and the current second, so it happens for real)
  are both stored.

Counted: 5xx answers, wrong accepts, lost deliveries, deliveries stored twice and
drain crashes; the target is zero of each. Kinds take turns, so any ``--count`` of
at least ``len(KINDS)`` tries each kind; the seed fixes every other choice.

    .venv/bin/python bench/fuzz.py [--seed 1] [--count 2000] [--database-url URL]
        [--redis-url URL] [--url http://127.0.0.1:8000] [--keep] [--examples 3]

By default the web app runs in this process (Flask's test client, headers passed
as gunicorn would: repeats joined with ",", UTF-8 bytes as latin-1) on a fresh
SQLite file, or on --database-url, with --redis-url or an embedded Redis. With
--url the requests go over a socket to a running server (``make run``); the
fuzzer then reads its settings from the same TRIGGERPOST_* environment as that
server (the secret key seals the shops' webhook secrets) and needs the server's
database (--database-url, else the environment's). Either way the fuzzer registers
shops of its own (``fuzz-<random>``), and erases them afterwards unless --keep.
Exits 1 when anything was counted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flask import Flask, got_request_exception  # noqa: E402
from sqlalchemy import select  # noqa: E402

from adapters import registry  # noqa: E402
from jobs import runtime as runtimes  # noqa: E402
from jobs.intake import deliveries, privacy  # noqa: E402
from jobs.merchant.shops import add_shop  # noqa: E402
from jobs.runtime import Runtime  # noqa: E402
from jobs.store.models import Delivery, DeliveryStatus, Shop  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
PLATFORMS = ("shopify", "woocommerce")
#: topics whose processing uninstalls or erases the shop: each such case gets a shop
#: of its own, so it cannot take the other cases' deliveries with it
ERASING_TOPICS = frozenset({"app/uninstalled", "shop/redact"})
#: what the intake answers when the signature passed (a forgery must never see these)
PASSED = frozenset({"stored", "duplicate", "ignored", "unsupported"})

FIVE_XX = "5xx"
WRONG_ACCEPT = "wrong accept"
LOST = "lost"
STORED_TWICE = "stored twice"
DRAIN_CRASH = "drain crash"
#: the counts, in the order they are reported; the target for each is 0
CHECKS = (FIVE_XX, WRONG_ACCEPT, LOST, STORED_TWICE, DRAIN_CRASH)

log = logging.getLogger(__name__)
T = TypeVar("T")


# --- what is sent --------------------------------------------------------------


@dataclass
class FuzzShop:
    """A shop the fuzzer registers: the address its webhooks name and its secret."""

    platform: str
    address: str
    secret: str
    id: int = 0  # set once registered


@dataclass(frozen=True)
class Request:
    platform: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    #: the delivery id the headers carry (what a stored row is found by), if any
    delivery_id: str | None


@dataclass
class Case:
    family: str  # mutant, forged or replay
    kind: str
    what: str
    shop: FuzzShop  # the shop the headers name
    requests: list[Request]
    #: a forgery signed with another registered shop's secret: stored under that
    #: shop it is that shop's own delivery, not a wrong accept
    signer: FuzzShop | None = None


@dataclass(frozen=True)
class Fixture:
    platform: str
    name: str
    topic: str
    payload: Any
    handled: bool

    @property
    def label(self) -> str:
        return f"{self.platform}/{self.name}"


def load_fixtures() -> list[Fixture]:
    """Every fixture delivery with its topic (``orders_create__x.json`` is orders/create)."""
    found = []
    for name in PLATFORMS:
        platform = registry.PLATFORMS[name]
        known = (*platform.topic_handlers, *platform.ignored_topics)
        topics = {t.replace("/", "_").replace(".", "_"): t for t in known}
        for path in sorted((FIXTURES / name).glob("*.json")):
            topic = topics[path.stem.split("__", 1)[0]]
            payload = json.loads(path.read_bytes())
            handled = topic in platform.topic_handlers
            found.append(Fixture(name, path.stem, topic, payload, handled))
    return found


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)), as Shopify and WooCommerce sign."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def platform_headers(
    platform: str, topic: str, body: bytes, secret: str, address: str, delivery_id: str
) -> list[tuple[str, str]]:
    """The headers the platform sends with a delivery (see adapters/*/webhooks.py)."""
    signature = sign(secret, body)
    if platform == "shopify":
        return [
            ("Content-Type", "application/json"),
            ("X-Shopify-Topic", topic),
            ("X-Shopify-Hmac-Sha256", signature),
            ("X-Shopify-Shop-Domain", address),
            ("X-Shopify-API-Version", "2026-07"),
            ("X-Shopify-Webhook-Id", delivery_id),
            ("X-Shopify-Triggered-At", "2026-09-14T17:12:41.000000Z"),
            ("X-Shopify-Event-Id", "event-" + delivery_id),
        ]
    resource, _, event = topic.partition(".")
    return [
        ("Content-Type", "application/json"),
        ("User-Agent", "WooCommerce/9.8.1 Hookshot (WordPress/6.8.2)"),
        ("X-WC-Webhook-Source", address),
        ("X-WC-Webhook-Topic", topic),
        ("X-WC-Webhook-Resource", resource),
        ("X-WC-Webhook-Event", event),
        ("X-WC-Webhook-Signature", signature),
        ("X-WC-Webhook-ID", str(17 + sum(topic.encode()) % 40)),
        ("X-WC-Webhook-Delivery-ID", delivery_id),
    ]


IDENTITY = {"shopify": "X-Shopify-Shop-Domain", "woocommerce": "X-WC-Webhook-Source"}
SIGNATURE = {"shopify": "X-Shopify-Hmac-Sha256", "woocommerce": "X-WC-Webhook-Signature"}
TOPIC = {"shopify": "X-Shopify-Topic", "woocommerce": "X-WC-Webhook-Topic"}
DELIVERY_ID = {"shopify": "X-Shopify-Webhook-Id", "woocommerce": "X-WC-Webhook-Delivery-ID"}


def replaced(headers: Sequence[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n.lower() == name.lower() else v) for n, v in headers]


def without(headers: Sequence[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    drop = {n.lower() for n in names}
    return [(n, v) for n, v in headers if n.lower() not in drop]


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name.lower()), None)


# --- JSON surgery ----------------------------------------------------------------

JsonPath = tuple[str | int, ...]


def walk(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def where(path: JsonPath) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text.lstrip(".") or "(the body)"


class Doc:
    """A payload being mutated, written out compact with raw JSON tokens spliced in.

    Some mutations need text no Python value serialises to (``NaN``, ``1e400``, a
    duplicated key, a lone surrogate escape): they put a marker string in the data,
    replaced by the raw text when the body is written.
    """

    def __init__(self, payload: Any) -> None:
        self.data = copy.deepcopy(payload)
        self._raw: dict[str, str] = {}

    def raw(self, text: str) -> str:
        marker = f"\ue000{len(self._raw)}\ue001"
        self._raw[marker] = text
        return marker

    def get(self, path: JsonPath) -> Any:
        value = self.data
        for step in path:
            value = value[step]
        return value

    def set(self, path: JsonPath, value: Any) -> None:
        if not path:
            self.data = value
            return
        self.get(path[:-1])[path[-1]] = value

    def delete(self, path: JsonPath) -> None:
        del self.get(path[:-1])[path[-1]]

    def dumps(self) -> bytes:
        text = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        for marker, raw in self._raw.items():
            text = text.replace(json.dumps(marker, ensure_ascii=False), raw)
        return text.encode()


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- the cases -------------------------------------------------------------------

SWAPS: dict[type, list[Any]] = {
    str: [12345, 1.5, True, [], {}, None],
    int: ["12", "twelve", True, [1], {"value": 1}, 1.0],
    float: ["1.5", False, [1.5], {}],
    bool: ["true", 1, 0, "yes", []],
    type(None): ["", 0, {}, [], False],
    dict: [[], "object", 0, True],
    list: [{}, "list", 0, [[[]]]],
}

HUGE_NUMBERS = [
    ("2**70", str(2**70)),
    ("-2**70", str(-(2**70))),
    ("2**63", str(2**63)),
    ("-2**63-1", str(-(2**63) - 1)),
    ("2**31", str(2**31)),
    ("1e308", "1e308"),
    ("-1e308", "-1e308"),
    ("5e-324", "5e-324"),
    ("1e400 (reads as inf)", "1e400"),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ('"NaN"', '"NaN"'),
    ('"Infinity"', '"Infinity"'),
    ('"1e308"', '"1e308"'),
    ('"-0.00"', '"-0.00"'),
    ("a 400-digit integer", "9" * 400),
    ('a 400-digit "amount"', '"' + "9" * 400 + '.99"'),
    ("a 5000-digit integer (over Python's int limit)", "9" * 5000),
    ("-0.0", "-0.0"),
]

UNICODE = [
    ("Persian, right-to-left", "مریم رضایی"),
    ("Hebrew with a right-to-left override", "\u202e\u05e9\u05dc\u05d5\u05dd\u202c"),
    ("zero-width joiners and spaces", "a\u200db\u200bc\ufeff"),
    ("a family emoji", "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"),
    ("combining accents", "e" + "\u0301" * 60),
    ("the last code point", "\U0010ffff"),
    ("an internationalised address", "jürgen@bücher.example"),
    ("dotted capital I", "İSTANBUL@EXAMPLE.COM"),
    (
        "full-width letters",
        "\uff53\uff48\uff4f\uff50\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
    ),
    ("a BOM and a line separator", "\ufeffa\u2028b\u2029c"),
    ("Cyrillic look-alikes", "\u0430\u0440\u0440\u04cf\u0435@example.com"),
    ("control characters", "a\tb\x1fc\x7fd"),
]
#: escapes written raw into the JSON text: Python reads them into strings that
#: cannot be encoded as UTF-8 (a lone surrogate) or that databases refuse (NUL)
RAW_STRINGS = [
    ("a lone surrogate escape", '"\\ud800"'),
    ("a NUL escape", '"kund\\u0000@example.se"'),
    ("a reversed surrogate pair", '"\\udc00\\ud800"'),
]

DEPTHS = [50, 500, 1000, 5000, 100_000]
#: just over the limits of bounded columns (64, 255 characters), and far over
HUGE_LENGTHS = [80, 300, 4096, 65_536, 1_048_576]

CONTENT_TYPES: list[list[str] | None] = [
    ["text/plain"],
    ["application/x-www-form-urlencoded"],
    ["multipart/form-data; boundary=fuzz"],
    [""],
    None,  # no Content-Type at all
    ["application/json; charset=utf-16"],
    ["APPLICATION/JSON"],
    ["application/json;charset=iso-8859-1"],
    ["application/jsonp"],
    ["application/vnd.api+json"],
    ["application/json, text/plain"],
    ["text/plain", "application/json"],
    ["application/json", "text/plain"],
    ["application/json; boundary=" + "x" * 5000],
]

ODD_TOPICS = {
    "shopify": [
        "",
        "   ",
        "ORDERS/CREATE",
        "orders/create/",
        "orders//create",
        " orders/create\t",
        "../../../etc/passwd",
        "orders/" + "x" * 10_000,
        "заказы/создать",
        "orders/create,orders/paid",
        "order.created",
        "customers/redact",
        "shop/redact",
        "app/uninstalled",
        "bulk_operations/finish",
    ],
    "woocommerce": [
        "",
        "   ",
        "Order.Created",
        "order.created.extra",
        "order.",
        ".created",
        "order",
        "action.woocommerce_new_order",
        "order.created," * 50,
        "заказ.создан",
        "orders/create",
        "order.deleted",
        "coupon.created",
        "x" * 10_000,
    ],
}

SIGNED_HEADER_EDITS: dict[str, list[tuple[str, str | None]]] = {
    # (header, value): None drops the header
    "shopify": [
        ("X-Shopify-Triggered-At", ""),
        ("X-Shopify-Triggered-At", "garbage"),
        ("X-Shopify-Triggered-At", "9999-12-31T23:59:59-23:59"),
        ("X-Shopify-Triggered-At", "0001-01-01T00:00:00+23:59"),
        ("X-Shopify-Triggered-At", "2026-09-14T17:12:41"),
        ("X-Shopify-Triggered-At", "2026-02-30T00:00:00Z"),
        ("X-Shopify-Triggered-At", "1970-01-01T00:00:00Z"),
        ("X-Shopify-Triggered-At", "2026-09-14T17:12:41." + "9" * 5000 + "Z"),
        ("X-Shopify-Triggered-At", None),
        ("X-Shopify-API-Version", ""),
        ("X-Shopify-API-Version", "1999-01"),
        ("X-Shopify-API-Version", "ünstable" * 500),
        ("X-Shopify-API-Version", None),
        ("X-Shopify-Event-Id", "é" * 3000),
        ("X-Shopify-Event-Id", None),
        ("X-Shopify-Webhook-Id", None),
        ("X-Shopify-Webhook-Id", ""),
        ("X-Shopify-Webhook-Id", "{id}" + "x" * 10_000),
        ("X-Shopify-Webhook-Id", "{id}-wébhook-ü-中"),
        ("X-Shopify-Webhook-Id", "{id}' OR 1=1 --"),
        ("X-Shopify-Name", "n" * 20_000),
        ("X-Shopify-Shop-Domain", "{upper}"),
        ("X-Shopify-Shop-Domain", "  {address}\t"),
        ("Content-Type", "application/json; charset=utf-8"),
    ],
    "woocommerce": [
        ("X-WC-Webhook-ID", ""),
        ("X-WC-Webhook-ID", "abc"),
        ("X-WC-Webhook-ID", "-1"),
        ("X-WC-Webhook-ID", "99999999999999999999999999"),
        ("X-WC-Webhook-ID", "\u0661\u0667"),
        ("X-WC-Webhook-ID", None),
        ("X-WC-Webhook-Delivery-ID", None),
        ("X-WC-Webhook-Delivery-ID", ""),
        ("X-WC-Webhook-Delivery-ID", "{id}" + "d" * 10_000),
        ("X-WC-Webhook-Delivery-ID", "{id}-lévering-中"),
        ("X-WC-Webhook-Resource", "product"),
        ("X-WC-Webhook-Event", "deleted"),
        ("User-Agent", None),
        ("User-Agent", "ü" * 8000),
        ("X-WC-Webhook-Source", "{upper}"),
        ("X-WC-Webhook-Source", "{no_slash}"),
        ("X-WC-Webhook-Source", "{http}"),
        ("X-WC-Webhook-Source", "{bare}"),
        ("X-WC-Webhook-Source", "  {address}  "),
        ("Content-Type", "application/json; charset=UTF-8"),
    ],
}

MALFORMED_SOURCES = [
    "https://a:abc/",
    "https://{host}:abc/",
    "https://{host}:99999/",
    "https://{host}:-1/",
    "https://[::1/",
    "https://[{host}]/",
    "https://\uff53\uff48\uff4f\uff50.example/",
    "https://{host}℀evil.example/",
    "https://:80/",
    "http://",
    "https://",
    "javascript:alert(1)",
    "ftp://{host}/",
    "//{host}/",
    "https://{host}/%00",
    "https://{host}\\@evil.example/",
    "https://{host}:0/",
    "https://{host}:443/",
    "https://{host}./",
    "https://[fe80::1%25eth0]/",
    "https://" + "a" * 20_000 + "/",
    "https://bütik-{host}/",
    "https://{host}/" + "ä" * 3000,
]
MALFORMED_DOMAINS = [
    "{host}.evil.example",
    "{host}.",
    "https://{host}",
    "{host}/admin",
    "{host}%00",
    "x-{host}",
    "xn--{host}",
    "vîctim-{host}",
    "{host}\tx",
    "{host}," + "other.myshopify.com",
    "-" * 9000 + ".myshopify.com",
    "",
    "   ",
]
ODD_SIGNATURES = [
    ("empty", ""),
    ("blank", "   "),
    ("padding only", "="),
    ("not base64", "not base64 at all!"),
    ("32 zero bytes", base64.b64encode(bytes(32)).decode()),
    ("a 100 kB value", "A" * 100_000),
    ("non-ASCII", "sïgnätüre=="),
    ("of the empty body", "{empty}"),
    ("the right one, truncated", "{truncated}"),
    ("the right one, one character changed", "{changed}"),
    ("of the body signed with an empty secret", "{empty_secret}"),
]


class Generator:
    """Cases for one seed: every random choice goes through ``self.rng``."""

    def __init__(self, seed: int, nonce: str, fixtures: list[Fixture] | None = None) -> None:
        self.rng = random.Random(seed)
        self.nonce = nonce
        self.fixtures = fixtures if fixtures is not None else load_fixtures()
        self.shops = {
            "shopify": FuzzShop("shopify", f"fuzz-{nonce}-a.myshopify.com", self._secret()),
            "shopify-other": FuzzShop("shopify", f"fuzz-{nonce}-b.myshopify.com", self._secret()),
            "woocommerce": FuzzShop(
                "woocommerce", f"https://fuzz-{nonce}-a.example/", self._secret()
            ),
            "woocommerce-other": FuzzShop(
                "woocommerce", f"https://fuzz-{nonce}-b.example/", self._secret()
            ),
        }
        self.erasable: list[FuzzShop] = []
        self._ids = self.rng.getrandbits(32)
        #: the kind of case being made (set by :func:`generate`)
        self.kind = ""
        self._turns: Counter[str] = Counter()
        self._decks: dict[tuple[str, str, int], list[int]] = {}

    def _secret(self) -> str:
        return f"{self.rng.getrandbits(160):040x}"

    def all_shops(self) -> list[FuzzShop]:
        return [*self.shops.values(), *self.erasable]

    # -- helpers ----------------------------------------------------------------

    def side(self) -> str:
        """The platform of this kind's next case: the two take turns."""
        self._turns[self.kind] += 1
        return PLATFORMS[self._turns[self.kind] % len(PLATFORMS)]

    def deal(self, values: Sequence[T], key: str = "") -> T:
        """The next of ``values`` for this kind of case, like cards from a deck.

        No value comes twice before every other one came once. The first round
        keeps the written order, so a short run (the test suite's) tries the first
        values of each list, where the ones that broke the intake before stand;
        every later round is shuffled by the seed.
        """
        name = (self.kind, key, len(values))
        deck = self._decks.get(name)
        if deck is None:
            deck = self._decks[name] = list(range(len(values)))[::-1]
        if not deck:
            deck[:] = self.rng.sample(range(len(values)), len(values))
        return values[deck.pop()]

    def delivery_id(self, platform: str) -> str:
        self._ids += 1
        if platform == "shopify":
            return str(uuid.UUID(int=(self.rng.getrandbits(96) << 32) | self._ids % 2**32))
        # WooCommerce's: wp_hash(webhook id + the current second), 32 hex digits
        return hashlib.md5(f"{self.nonce}-{self._ids}".encode()).hexdigest()  # noqa: S324

    def fixture(self, *, platform: str | None = None, handled: bool = True) -> Fixture:
        """A random fixture (of a topic we handle, unless ``handled`` is False)."""
        pool = [
            f
            for f in self.fixtures
            if (platform is None or f.platform == platform) and (f.handled or not handled)
        ]
        return self.rng.choice(pool)

    def safe_fixture(self, platform: str | None = None) -> Fixture:
        """A handled fixture whose processing leaves the shop in place."""
        pool = [
            f
            for f in self.fixtures
            if f.handled
            and f.topic not in ERASING_TOPICS
            and (platform is None or f.platform == platform)
        ]
        return self.rng.choice(pool)

    def shop_for(self, platform: str, topic: str) -> FuzzShop:
        if topic in ERASING_TOPICS:
            shop = FuzzShop(
                "shopify",
                f"fuzz-{self.nonce}-e{len(self.erasable)}.myshopify.com",
                self._secret(),
            )
            self.erasable.append(shop)
            return shop
        return self.shops[platform]

    def other_shop(self, shop: FuzzShop) -> FuzzShop:
        same = [s for s in self.shops.values() if s.platform == shop.platform and s is not shop]
        return self.rng.choice(same)

    def signed(
        self,
        fixture: Fixture,
        body: bytes,
        what: str,
        *,
        topic: str | None = None,
        edit: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
    ) -> Case:
        """A mutant: ``body`` signed with the shop's own secret, as the platform would."""
        topic = fixture.topic if topic is None else topic
        shop = self.shop_for(fixture.platform, topic)
        delivery_id = self.delivery_id(fixture.platform)
        headers = platform_headers(
            fixture.platform, topic, body, shop.secret, shop.address, delivery_id
        )
        if edit is not None:
            headers = edit(headers)
        sent_id = header(headers, DELIVERY_ID[fixture.platform]) or header(
            headers, "X-WC-Delivery-ID"
        )
        request = Request(fixture.platform, body, tuple(headers), sent_id)
        return Case("mutant", self.kind, f"{fixture.label}: {what}", shop, [request])

    def path(
        self, doc: Doc, accept: Callable[[Any], bool] = lambda _: True, *, root: bool = False
    ) -> JsonPath:
        """A random path in ``doc`` whose value ``accept``s (any non-root one as a fallback)."""
        nodes = [p for p, v in walk(doc.data) if (p or root) and accept(v)]
        if not nodes:
            nodes = [p for p, _ in walk(doc.data) if p or root] or [()]
        return self.rng.choice(nodes)

    # -- mutants ----------------------------------------------------------------

    def deleted_field(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc)
        doc.delete(path)
        return self.signed(f, doc.dumps(), f"{where(path)} deleted")

    def swapped_type(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc)
        was = type(doc.get(path))
        value = self.deal(SWAPS[was], key=was.__name__)
        doc.set(path, value)
        return self.signed(f, doc.dumps(), f"{where(path)} = {compact(value)}")

    def null(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc, lambda v: v is not None)
        doc.set(path, None)
        return self.signed(f, doc.dumps(), f"{where(path)} = null")

    def huge_string(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc, lambda v: isinstance(v, str))
        length = self.deal(HUGE_LENGTHS)
        unit = self.deal(["A", "ä", "中", "<script>", "@", " ", "\\"])
        doc.set(path, (unit * length)[:length])
        what = f"{where(path)} = {length} characters of {unit!r}"
        return self.signed(f, doc.dumps(), what)

    def huge_number(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        numeric = [
            p
            for p, v in walk(doc.data)
            if p
            and (
                (isinstance(v, int | float) and not isinstance(v, bool))
                or (isinstance(v, str) and v.replace(".", "", 1).lstrip("-").isdigit())
            )
        ]
        path = self.rng.choice(numeric) if numeric else self.path(doc)
        label, raw = self.deal(HUGE_NUMBERS)
        doc.set(path, doc.raw(raw))
        return self.signed(f, doc.dumps(), f"{where(path)} = {label}")

    def unicode(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc, lambda v: isinstance(v, str))
        if self.rng.random() < 0.3:
            label, raw = self.deal(RAW_STRINGS)
            doc.set(path, doc.raw(raw))
        else:
            label, text = self.deal(UNICODE)
            doc.set(path, text)
        return self.signed(f, doc.dumps(), f"{where(path)} = {label}")

    def deep_nesting(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc, root=True)
        depth = self.deal(DEPTHS)
        if self.rng.random() < 0.5:
            raw = "[" * depth + "1" + "]" * depth
            shape = "arrays"
        else:
            raw = '{"a":' * depth + "1" + "}" * depth
            shape = "objects"
        doc.set(path, doc.raw(raw))
        return self.signed(f, doc.dumps(), f"{where(path)} = {shape} nested {depth} deep")

    def duplicated_key(self) -> Case:
        f = self.fixture(platform=self.side())
        doc = Doc(f.payload)
        path = self.path(doc, lambda v: isinstance(v, dict) and bool(v), root=True)
        obj = doc.get(path)
        if not isinstance(obj, dict) or not obj:
            obj = {"id": 1}
        key = self.rng.choice(list(obj))
        other = self.rng.choice([None, "dup", {"x": 1}, [], 0, True, copy.deepcopy(obj[key])])
        entries = [f"{compact(k)}:{compact(v)}" for k, v in obj.items()]
        duplicate = f"{compact(key)}:{compact(other)}"
        first = self.rng.random() < 0.5
        entries.insert(0 if first else len(entries), duplicate)
        doc.set(path, doc.raw("{" + ",".join(entries) + "}"))
        place = "before" if first else "after"
        what = f"{where((*path, key))} repeated {place} it as {compact(other)}"
        return self.signed(f, doc.dumps(), what)

    def broken_json(self) -> Case:
        f = self.fixture(platform=self.side())
        body = Doc(f.payload).dumps()
        cut = self.rng.randrange(1, len(body))
        choices: list[tuple[str, bytes]] = [
            (f"cut after {cut} bytes", body[:cut]),
            ("last brace missing", body[:-1]),
            ("two documents", body + body),
            ("a trailing comma", body[:-1] + b",}"),
            ("an invalid UTF-8 byte", body[:cut] + b"\xff" + body[cut:]),
            ("a UTF-8 BOM first", b"\xef\xbb\xbf" + body),
            ("UTF-16", body.decode().encode("utf-16")),
            ("latin-1 instead of UTF-8", body.decode().encode("latin-1", "replace")),
            ("empty", b""),
            ("whitespace only", b" \n\t "),
            ("a Python repr", repr(f.payload).encode()),
            ("a comment", b"// hi\n" + body),
            ("single quotes", body.replace(b'"', b"'")),
            ("a NUL byte", body[:cut] + b"\x00" + body[cut:]),
        ]
        what, broken = self.deal(choices)
        return self.signed(f, broken, what)

    def not_an_object(self) -> Case:
        f = self.fixture(platform=self.side())
        label, body = self.deal(
            [
                ("an empty object", b"{}"),
                ("an array of the payload", ("[" + compact(f.payload) + "]").encode()),
                ("an empty array", b"[]"),
                ("a string", b'"order"'),
                ("a number", b"42"),
                ("null", b"null"),
                ("true", b"true"),
                ("NaN", b"NaN"),
            ]
        )
        return self.signed(f, body, f"the body is {label}")

    def other_topic_body(self) -> Case:
        f = self.fixture(platform=self.side())
        body_of = self.fixture(platform=f.platform, handled=False)
        body = Doc(body_of.payload).dumps()
        return self.signed(f, body, f"sent with the body of {body_of.name}")

    def content_type(self) -> Case:
        f = self.fixture(platform=self.side())
        types = self.deal(CONTENT_TYPES)

        def edit(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
            kept = without(headers, "Content-Type")
            return [("Content-Type", t) for t in types or []] + kept

        what = "no Content-Type" if types is None else f"Content-Type {' + '.join(types)!r}"
        return self.signed(f, Doc(f.payload).dumps(), what[:200], edit=edit)

    def odd_topic(self) -> Case:
        f = self.fixture(platform=self.side(), handled=False)
        topic = self.deal(ODD_TOPICS[f.platform], key=f.platform)
        body = Doc(f.payload).dumps()
        return self.signed(f, body, f"topic {topic[:80]!r}", topic=topic)

    def odd_signed_header(self) -> Case:
        f = self.safe_fixture(self.side())
        name, value = self.deal(SIGNED_HEADER_EDITS[f.platform], key=f.platform)
        doc = Doc(f.payload)
        if name == DELIVERY_ID[f.platform] and not value and isinstance(doc.data, dict):
            # keyed on the body then: keep it unique, so it is no one else's duplicate
            doc.data["fuzz_note"] = self.delivery_id(f.platform)
        shop = self.shop_for(f.platform, f.topic)
        parts = urlsplit(shop.address if "://" in shop.address else "https://" + shop.address)
        host_path = (parts.netloc + parts.path).rstrip("/")

        def edit(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
            if value is None:
                return without(headers, name)
            text = value.format(
                id=header(headers, DELIVERY_ID[f.platform]) or "",
                upper=shop.address.upper(),
                address=shop.address,
                no_slash=shop.address.rstrip("/"),
                http="http://" + host_path + "/",
                bare=host_path,
            )
            if header(headers, name) is None:
                return [*headers, (name, text)]
            return replaced(headers, name, text)

        shown = "dropped" if value is None else f"= {value[:60]!r}"
        return self.signed(f, doc.dumps(), f"{name} {shown}", edit=edit)

    # -- forgeries --------------------------------------------------------------

    def forged(
        self,
        what: str,
        fixture: Fixture,
        body: bytes,
        headers: list[tuple[str, str]],
        victim: FuzzShop,
        signer: FuzzShop | None = None,
    ) -> Case:
        sent_id = header(headers, DELIVERY_ID[fixture.platform])
        request = Request(fixture.platform, body, tuple(headers), sent_id)
        label = f"{fixture.label}: {what}"
        return Case("forged", self.kind, label, victim, [request], signer=signer)

    def genuine(
        self, fixture: Fixture, shop: FuzzShop, body: bytes | None = None
    ) -> tuple[bytes, list[tuple[str, str]]]:
        body = Doc(fixture.payload).dumps() if body is None else body
        delivery_id = self.delivery_id(fixture.platform)
        return body, platform_headers(
            fixture.platform, fixture.topic, body, shop.secret, shop.address, delivery_id
        )

    def wrong_secret(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        body, headers = self.genuine(f, victim)
        label, secret = self.deal(
            [
                ("a random secret", self._secret()),
                ("an empty secret", ""),
                ("the secret upper-cased", victim.secret.upper()),
                ("the secret with a newline", victim.secret + "\n"),
                ("the secret minus its last character", victim.secret[:-1]),
            ]
        )
        headers = replaced(headers, SIGNATURE[f.platform], sign(secret, body))
        return self.forged(f"signed with {label}", f, body, headers, victim)

    def tampered(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        body, headers = self.genuine(f, victim)
        at = self.rng.randrange(len(body))
        flipped = bytes([body[at] ^ self.rng.randrange(1, 256)])
        swapped = body[:at] + body[at + 1 : at + 2] + body[at : at + 1] + body[at + 2 :]
        pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode()
        label, tampered = self.deal(
            [
                (f"byte {at} changed", body[:at] + flipped + body[at + 1 :]),
                (f"bytes {at} and {at + 1} swapped", swapped),
                ("a newline appended", body + b"\n"),
                ("the last byte dropped", body[:-1]),
                (f"a space inserted at {at}", body[:at] + b" " + body[at:]),
                ("re-serialised with indents", pretty),
                ("re-serialised ASCII-only", json.dumps(json.loads(body)).encode()),
            ]
        )
        if tampered == body:  # a swap of two equal bytes changes nothing
            tampered = body + b" "
            label = "a space appended"
        return self.forged(f"{label} after signing", f, tampered, headers, victim)

    def other_shop_signature(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        signer = self.other_shop(victim)
        body, headers = self.genuine(f, signer)
        headers = replaced(headers, IDENTITY[f.platform], victim.address)
        what = "signed by another shop of ours, naming this one"
        return self.forged(what, f, body, headers, victim, signer)

    def missing_header(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        body, headers = self.genuine(f, victim)
        p = f.platform
        label, drop = self.deal(
            [
                ("no signature", [SIGNATURE[p]]),
                ("no shop", [IDENTITY[p]]),
                ("no signature and no shop", [SIGNATURE[p], IDENTITY[p]]),
                ("no platform headers at all", [n for n, _ in headers if n.startswith("X-")]),
            ]
        )
        headers = without(headers, *drop)
        if self.rng.random() < 0.5 and SIGNATURE[p] not in drop:
            # the other platform's signature header in its place
            other = SIGNATURE["woocommerce" if p == "shopify" else "shopify"]
            headers = [*without(headers, SIGNATURE[p]), (other, sign(victim.secret, body))]
            label += ", the other platform's signature header instead"
        return self.forged(label, f, body, headers, victim)

    def duplicated_header(self) -> Case:
        """Headers repeated so that one copy names this shop and another shop signed."""
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        signer = self.other_shop(victim)
        body, headers = self.genuine(f, signer)
        p = f.platform
        identity, signature = IDENTITY[p], SIGNATURE[p]
        signed_by = header(headers, signature) or ""
        forged = sign(self._secret(), body)
        other_topic = "orders/paid" if p == "shopify" else "order.updated"
        victim_named = replaced(headers, identity, victim.address)
        label, sent = self.deal(
            [
                ("the shop named twice, this one first", [(identity, victim.address), *headers]),
                ("the shop named twice, this one last", [*headers, (identity, victim.address)]),
                (
                    "the shop named twice, in lower and mixed case",
                    [*headers, (identity.lower(), victim.address)],
                ),
                (
                    "two signatures, a forged one first",
                    [
                        *without(victim_named, signature),
                        (signature, forged),
                        (signature, signed_by),
                    ],
                ),
                (
                    "two signatures, a forged one last",
                    [
                        *without(victim_named, signature),
                        (signature, signed_by),
                        (signature, forged),
                    ],
                ),
                ("the topic twice", [*victim_named, (TOPIC[p], other_topic)]),
            ]
        )
        return self.forged(label, f, body, sent, victim, signer)

    def malformed_identity(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        signer = self.other_shop(victim)
        body, headers = self.genuine(f, signer)
        if f.platform == "woocommerce":
            host = urlsplit(victim.address).hostname or ""
            template = self.deal(MALFORMED_SOURCES, key="source")
        else:
            host = victim.address.removesuffix(".myshopify.com")
            template = self.deal(MALFORMED_DOMAINS, key="domain")
            if "{host}" in template and ".myshopify.com" not in template:
                template = template.replace("{host}", "{host}.myshopify.com", 1)
        value = template.replace("{host}", host)
        headers = replaced(headers, IDENTITY[f.platform], value)
        what = f"{IDENTITY[f.platform]}: {value[:80]!r} ({len(value)} characters)"
        return self.forged(what, f, body, headers, victim, signer)

    def odd_signature(self) -> Case:
        f = self.safe_fixture(self.side())
        victim = self.shops[f.platform]
        body, headers = self.genuine(f, victim)
        right = sign(victim.secret, body)
        label, value = self.deal(ODD_SIGNATURES)
        changed = right[:5] + ("B" if right[5] != "B" else "C") + right[6:]
        value = value.format(
            empty=sign(victim.secret, b""),
            truncated=right[: self.rng.randrange(1, len(right) - 1)],
            changed=changed,
            empty_secret=sign("", body),
        )
        headers = replaced(headers, SIGNATURE[f.platform], value)
        return self.forged(f"signature {label}", f, body, headers, victim)

    # -- replays ----------------------------------------------------------------

    def replay(self) -> Case:
        f = self.safe_fixture(self.side())
        shop = self.shops[f.platform]
        body, headers = self.genuine(f, shop)
        delivery_id = header(headers, DELIVERY_ID[f.platform])
        first = Request(f.platform, body, tuple(headers), delivery_id)
        label, again = self.deal(
            [
                ("sent again as it was", headers),
                ("sent again with lower-case header names", [(n.lower(), v) for n, v in headers]),
                ("sent again with the headers reversed", headers[::-1]),
            ]
        )
        if f.platform == "shopify" and self.rng.random() < 0.5:
            # a retry: Shopify keeps the webhook id and the body
            again = replaced(again, "X-Shopify-Triggered-At", "2026-09-14T17:13:41.000000Z")
            label += ", as a later retry"
        second = Request(f.platform, body, tuple(again), delivery_id)
        return Case("replay", self.kind, f"{f.label}: {label}", shop, [first, second])

    def same_delivery_id(self) -> Case:
        """WooCommerce: two deliveries of one webhook in one second share their id."""
        f = self.safe_fixture("woocommerce")
        shop = self.shops["woocommerce"]
        body, headers = self.genuine(f, shop)
        doc = Doc(f.payload)
        if isinstance(doc.data, dict) and isinstance(doc.data.get("id"), int):
            doc.data["id"] += 1 + self.rng.randrange(1000)
            label = f"and the same topic for id {doc.data['id']}"
        else:
            doc.data = {**doc.data, "date_modified_gmt": "2026-09-14T17:31:00"}
            label = "and a later change of it"
        other = doc.dumps()
        delivery_id = header(headers, DELIVERY_ID["woocommerce"])
        other_headers = replaced(headers, SIGNATURE["woocommerce"], sign(shop.secret, other))
        requests = [
            Request("woocommerce", body, tuple(headers), delivery_id),
            Request("woocommerce", other, tuple(other_headers), delivery_id),
        ]
        what = f"{f.label}: one X-WC-Webhook-Delivery-ID for this body {label}"
        return Case("replay", self.kind, what, shop, requests)


MUTANTS: dict[str, Callable[[Generator], Case]] = {
    "deleted-field": Generator.deleted_field,
    "swapped-type": Generator.swapped_type,
    "null": Generator.null,
    "huge-string": Generator.huge_string,
    "huge-number": Generator.huge_number,
    "unicode": Generator.unicode,
    "deep-nesting": Generator.deep_nesting,
    "duplicated-key": Generator.duplicated_key,
    "broken-json": Generator.broken_json,
    "not-an-object": Generator.not_an_object,
    "other-topic-body": Generator.other_topic_body,
    "content-type": Generator.content_type,
    "odd-topic": Generator.odd_topic,
    "odd-signed-header": Generator.odd_signed_header,
}
FORGERIES: dict[str, Callable[[Generator], Case]] = {
    "wrong-secret": Generator.wrong_secret,
    "tampered": Generator.tampered,
    "other-shop-signature": Generator.other_shop_signature,
    "missing-header": Generator.missing_header,
    "duplicated-header": Generator.duplicated_header,
    "malformed-identity": Generator.malformed_identity,
    "odd-signature": Generator.odd_signature,
}
REPLAYS: dict[str, Callable[[Generator], Case]] = {
    "replay": Generator.replay,
    "same-delivery-id": Generator.same_delivery_id,
}
KINDS: dict[str, Callable[[Generator], Case]] = {**MUTANTS, **FORGERIES, **REPLAYS}


def generate(seed: int, count: int, nonce: str) -> tuple[Generator, list[Case]]:
    """``count`` cases, the kinds taking turns; the same seed and nonce give the same cases."""
    generator = Generator(seed, nonce)
    kinds = list(KINDS.items())
    cases = []
    for n in range(count):
        generator.kind, make = kinds[n % len(kinds)]
        cases.append(make(generator))
    return generator, cases


# --- where the requests go -------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all
    outcome: str | None  # the JSON body's "status"
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.status} {self.outcome}" if self.outcome else str(self.status)


class Target(Protocol):
    def send(self, request: Request) -> Answer: ...


def _answer(status: int, body: bytes) -> Answer:
    try:
        data = json.loads(body)
    except ValueError:
        return Answer(status, None, body[:300].decode("utf-8", "replace"))
    if not isinstance(data, dict):
        return Answer(status, None, body[:300].decode("utf-8", "replace"))
    outcome = data.get("status")
    return Answer(status, outcome if isinstance(outcome, str) else None, str(data)[:300])


def wire(value: str) -> str:
    """A header value as the app sees it: its UTF-8 bytes read as latin-1 (as WSGI
    servers do), spaces and tabs around it stripped (as gunicorn does)."""
    return value.encode("utf-8").decode("latin-1").strip(" \t")


def as_wsgi(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers as gunicorn hands them to the app: see :func:`wire`; repeats joined
    with "," (of several Content-Types the last one wins)."""
    joined: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        key = name.lower()
        if key in joined and key != "content-type":
            joined[key] = (joined[key][0], joined[key][1] + "," + wire(value))
        else:
            joined[key] = (joined.get(key, (name, ""))[0], wire(value))
    return list(joined.values())


class InProcess:
    """The app in this process, through Flask's test client."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self._raised: list[BaseException] = []
        got_request_exception.connect(self._note, app)

    def _note(self, sender: Any, exception: BaseException, **_: Any) -> None:
        self._raised.append(exception)

    def send(self, request: Request) -> Answer:
        self._raised.clear()
        try:
            response = self.client.post(
                f"/webhooks/{request.platform}",
                data=request.body,
                headers=as_wsgi(request.headers),
            )
        except Exception as exc:
            return Answer(500, None, f"the test client raised {exc!r}"[:500])
        answer = _answer(response.status_code, response.get_data())
        if self._raised:
            raised = self._raised[-1]
            detail = f"{type(raised).__name__}: {raised}"
            return Answer(answer.status, answer.outcome, detail[:300])
        return answer


class OverHttp:
    """A running server: raw HTTP/1.1 over a socket, so any header bytes can be sent."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--url must be http://host:port, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout

    def send(self, request: Request) -> Answer:
        head = [
            f"POST {self.prefix}/webhooks/{request.platform} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Connection: close",
            f"Content-Length: {len(request.body)}",
            *(f"{name}: {value}" for name, value in request.headers),
        ]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode() + request.body
        received = b""
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            # a server that answers early (a 4xx on the headers) may close before
            # the body is sent: that answer is still there to read
            with contextlib.suppress(OSError):
                sock.sendall(payload)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError as exc:
                if not received:
                    return Answer(0, None, f"no answer: {exc!r}")
        if not received.startswith(b"HTTP/1."):
            return Answer(0, None, f"no answer: {received[:100]!r}")
        head_bytes, _, body = received.partition(b"\r\n\r\n")
        return _answer(int(head_bytes[9:12]), body)


# --- the run and what it counts ----------------------------------------------------


@dataclass
class Finding:
    check: str
    detail: str
    case: Case | None = None
    request: Request | None = None

    def text(self) -> str:
        lines = [f"[{self.check}] " + (self.case.what if self.case else "(no case)")]
        lines.append(f"    {self.detail}")
        if self.case is not None:
            lines.append(f"    kind: {self.case.family}/{self.case.kind}")
        if self.request is not None:
            lines.append("    " + describe(self.request).replace("\n", "\n    "))
        return "\n".join(lines)


def describe(request: Request, width: int = 100) -> str:
    """The request, short enough to read: long values cut, with their length."""

    def cut(text: str) -> str:
        return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"

    lines = [f"POST /webhooks/{request.platform}"]
    lines += [f"{name}: {cut(value)!s}" for name, value in request.headers]
    body = request.body
    text = body[: width * 3].decode("utf-8", "backslashreplace")
    more = "..." if len(body) > width * 3 else ""
    lines.append(f"body ({len(body)} bytes): {text!r}{more}")
    return "\n".join(lines)


@dataclass
class Report:
    seed: int
    count: int
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    #: deliveries the drain applied, and refused with a reason (by kind of case)
    processed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    shops: list[FuzzShop] = field(default_factory=list)

    def note(
        self, check: str, detail: str, case: Case | None = None, request: Request | None = None
    ) -> None:
        self.findings.append(Finding(check, detail, case, request))

    def counts(self) -> dict[str, int]:
        found = Counter(f.check for f in self.findings)
        return {check: found[check] for check in CHECKS}

    def text(self, examples: int = 3) -> str:
        counts = self.counts()
        refused = sum(self.refused.values())
        lines = [
            (
                f"seed {self.seed}: {self.count} cases of {len(self.kinds)} kinds, "
                f"{self.requests} requests"
            ),
            "answers: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.answers.items())),
            f"drain: {self.processed} processed, {refused} refused with a reason",
        ]
        for check in CHECKS:
            per_kind = Counter(f.case.kind for f in self.findings if f.check == check and f.case)
            by_kind = ", ".join(f"{k} {n}" for k, n in per_kind.most_common())
            line = f"  {check + ':':14} {counts[check]:5d}"
            lines.append(f"{line}   ({by_kind})" if by_kind else line)
        for check in CHECKS:
            shown = self._examples(check, examples)
            if shown:
                lines.append(f"\n{check}: {counts[check]}, for example")
                lines += [f.text() for f in shown]
        return "\n".join(lines)

    def _examples(self, check: str, n: int) -> list[Finding]:
        """Up to ``n`` findings of ``check``, one per kind of case first."""
        found = [f for f in self.findings if f.check == check]
        seen: set[str] = set()
        first = []
        for f in found:
            kind = f.case.kind if f.case else ""
            if kind not in seen:
                seen.add(kind)
                first.append(f)
        rest = [f for f in found if f not in first]
        return (first + rest)[:n]


def register(runtime: Runtime, shops: Sequence[FuzzShop]) -> None:
    with runtime.sessions.begin() as session:
        for shop in shops:
            row = add_shop(
                session,
                runtime.secrets,
                shop.platform,
                shop.address,
                webhook_secret=shop.secret,
                currency="SEK",
            )
            shop.id = row.id


def erase(runtime: Runtime, shops: Sequence[FuzzShop]) -> None:
    """Remove every row of the fuzzer's shops (those a drain erased are gone already)."""
    with runtime.sessions.begin() as session:
        for shop in shops:
            if shop.id:
                privacy.erase_shop(session, shop.id)


def _same_delivery(row: Delivery, request: Request) -> bool:
    """The row holds the request's delivery: the same delivery id (or none) and body."""
    names = {DELIVERY_ID[request.platform].lower(), "x-wc-delivery-id"}
    kept = next((v for k, v in row.headers.items() if k.lower() in names and v), None)
    sent = wire(request.delivery_id) if request.delivery_id else None
    # a customers/redact delivery keeps no body once applied (it named the person)
    return kept == sent and row.body in (request.body, privacy.ERASED_BODY)


def _rows_for(rows: list[Delivery], case: Case, request: Request) -> list[Delivery]:
    """The stored rows of ``request`` under the shop it names."""
    return [r for r in rows if r.shop_id == case.shop.id and _same_delivery(r, request)]


def _stored_rows(runtime: Runtime, shops: Sequence[FuzzShop]) -> list[Delivery]:
    ids = [s.id for s in shops]
    with runtime.sessions() as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.shop_id.in_(ids))))
        session.expunge_all()
    return rows


def run(
    runtime: Runtime,
    target: Target,
    *,
    seed: int,
    count: int,
    nonce: str | None = None,
    settle: float = 0.0,
) -> Report:
    """Send ``count`` cases, drain what was stored, and count what must never happen.

    ``settle`` is how long to wait for deliveries that a running server's own
    workers hold while this process drains (0 in process: nothing else drains).
    """
    generator, cases = generate(seed, count, nonce or uuid.uuid4().hex[:8])
    shops = generator.all_shops()
    register(runtime, shops)
    report = Report(seed, count, shops=shops)

    answered: list[tuple[Case, Request, Answer]] = []
    for case in cases:
        report.kinds[case.kind] += 1
        for request in case.requests:
            answer = target.send(request)
            report.requests += 1
            report.answers[answer.label] += 1
            answered.append((case, request, answer))
            if answer.status >= 500 or answer.status == 0:
                report.note(FIVE_XX, f"answered {answer.label}: {answer.detail}", case, request)

    rows = _stored_rows(runtime, shops)
    mine: dict[int, tuple[Case, Request]] = {}
    _check_answers(report, answered, rows, mine)

    _drain(runtime, report, shops, set(mine), settle)
    _check_processing(runtime, report, mine)

    # a replay after the drain is still the same delivery
    for case in cases:
        if case.kind != "replay":
            continue
        request = case.requests[0]
        answer = target.send(request)
        report.requests += 1
        report.answers[answer.label] += 1
        if answer.status >= 500 or answer.status == 0:
            report.note(FIVE_XX, f"answered {answer.label}: {answer.detail}", case, request)
        elif answer.outcome == "stored":
            detail = "sent again after the drain and stored again"
            report.note(STORED_TWICE, detail, case, request)
    return report


def _check_answers(
    report: Report,
    answered: list[tuple[Case, Request, Answer]],
    rows: list[Delivery],
    mine: dict[int, tuple[Case, Request]],
) -> None:
    """What each answer promised against what the database holds."""
    by_case: dict[int, list[tuple[Request, Answer]]] = {}
    for case, request, answer in answered:
        by_case.setdefault(id(case), []).append((request, answer))
    cases = {id(case): case for case, _, _ in answered}
    for key, sent in by_case.items():
        case = cases[key]
        if case.family == "forged":
            _check_forgery(report, case, sent, rows)
            continue
        for n, (request, answer) in enumerate(sent):
            found = _rows_for(rows, case, request)
            for row in found:
                mine.setdefault(row.id, (case, request))
            expect_new = case.family == "mutant" or n == 0 or case.kind == "same-delivery-id"
            if answer.outcome == "stored" and not found:
                report.note(LOST, "answered 200 stored, but no such row", case, request)
            elif answer.outcome == "duplicate" and expect_new:
                detail = "never sent before, answered 200 duplicate and not stored"
                report.note(LOST, detail, case, request)
            elif case.family == "replay" and answer.status != 200 and expect_new:
                detail = f"a genuine delivery answered {answer.label}: {answer.detail}"
                report.note(LOST, detail, case, request)
            if len(found) > 1:
                report.note(STORED_TWICE, f"{len(found)} rows", case, request)
        if case.kind == "replay":
            found = _rows_for(rows, case, case.requests[0])
            if len(found) > 1:
                report.note(STORED_TWICE, f"replayed and stored {len(found)} times", case)


def _check_forgery(
    report: Report, case: Case, sent: list[tuple[Request, Answer]], rows: list[Delivery]
) -> None:
    for request, answer in sent:
        stored = [r for r in rows if _same_delivery(r, request)]
        for row in stored:
            if case.signer is None or row.shop_id != case.signer.id:
                shop = "the shop it names" if row.shop_id == case.shop.id else "a shop"
                detail = f"answered {answer.label} and stored under {shop} (delivery {row.id})"
                report.note(WRONG_ACCEPT, detail, case, request)
                return
        if 200 <= answer.status < 300 and answer.outcome in PASSED:
            signer_kept = case.signer is not None and any(
                r.shop_id == case.signer.id for r in stored
            )
            if not signer_kept:
                report.note(WRONG_ACCEPT, f"answered {answer.label}", case, request)


def _drain(
    runtime: Runtime, report: Report, shops: Sequence[FuzzShop], ids: set[int], settle: float
) -> None:
    """Every shop's stored deliveries through the real intake, as a worker drains them."""
    deadline = time.monotonic() + settle
    while True:
        for shop in shops:
            try:
                deliveries.drain(runtime, shop.id)
            except Exception as exc:
                report.note(DRAIN_CRASH, f"the drain of shop {shop.address} raised {exc!r}"[:600])
        if time.monotonic() >= deadline:
            return
        with runtime.sessions() as session:
            waiting = session.scalar(
                select(Delivery.id)
                .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.RECEIVED)
                .limit(1)
            )
        if waiting is None:
            return
        time.sleep(0.2)


def _check_processing(
    runtime: Runtime, report: Report, mine: dict[int, tuple[Case, Request]]
) -> None:
    """Each stored delivery was applied, or refused with its reason; none crashed."""
    with runtime.sessions() as session:
        found = {
            row.id: (row.status, row.error, row.body == privacy.ERASED_BODY)
            for row in session.execute(
                select(Delivery.id, Delivery.status, Delivery.error, Delivery.body).where(
                    Delivery.id.in_(list(mine))
                )
            )
        }
        shops = set(session.scalars(select(Shop.id)))
    for delivery_id, (case, request) in sorted(mine.items()):
        if delivery_id not in found:
            if case.shop.id in shops:
                report.note(LOST, f"delivery {delivery_id} vanished in the drain", case, request)
            continue  # erased with its shop (shop/redact): as it should be
        status, error, erased = found[delivery_id]
        if status == DeliveryStatus.PROCESSED:
            report.processed += 1
        elif status == DeliveryStatus.FAILED and (error or "").startswith("WebhookError:"):
            report.refused[case.kind] += 1
        elif status == DeliveryStatus.FAILED and error is None and erased:
            # a customers/redact erased the body and its error (both may name the person)
            report.refused[case.kind] += 1
        elif status == DeliveryStatus.FAILED:
            detail = f"delivery {delivery_id} failed: {error}"[:600]
            report.note(DRAIN_CRASH, detail, case, request)
        else:
            detail = f"delivery {delivery_id} still {status} after the drain"
            report.note(DRAIN_CRASH, detail, case, request)


# --- the command ------------------------------------------------------------------

SECRET_KEY = "fuzz-" + "k" * 40
APP_SECRET = "fuzz-app-secret-0123456789"  # noqa: S105 - a throwaway secret


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=2000, help="cases (a few requests each)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file (in process)")
    parser.add_argument("--redis-url", help="in process; default: an embedded redis-server")
    parser.add_argument("--url", help="fuzz the server running here (http://127.0.0.1:8000)")
    parser.add_argument("--keep", action="store_true", help="keep the fuzzer's shops and rows")
    parser.add_argument("--examples", type=int, default=3, help="shown per count")
    parser.add_argument("--verbose", action="store_true", help="show the app's own log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)

    from connector.app import create_app
    from connector.embedded_redis import EmbeddedRedis
    from jobs.settings import Settings
    from jobs.store.db import migrate

    workdir = Path(tempfile.mkdtemp(prefix="triggerpost-fuzz-"))
    embedded = None
    try:
        if args.url:
            env = dict(os.environ)
            if args.database_url:
                env["TRIGGERPOST_DATABASE_URL"] = args.database_url
            settings = Settings.from_env(env)
            runtime = Runtime.create(settings)
            target: Target = OverHttp(args.url)
            print(f"fuzzing the server at {args.url}, database {settings.database_url}")
        else:
            redis = args.redis_url
            if redis is None:
                embedded = EmbeddedRedis(workdir / "redis")
                embedded.start()
                redis = embedded.url
            database = args.database_url or f"sqlite:///{workdir / 'fuzz.db'}"
            migrate(database)
            settings = Settings.from_env(
                {
                    "TRIGGERPOST_DATA_DIR": str(workdir / "var"),
                    "TRIGGERPOST_DATABASE_URL": database,
                    "TRIGGERPOST_REDIS_URL": redis,
                    "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
                    "TRIGGERPOST_SHOPIFY_API_SECRET": APP_SECRET,
                }
            )
            runtime = Runtime.create(settings)
            target = InProcess(create_app(runtime=runtime))
            print(f"fuzzing the app in this process, database {database}")
        runtimes.install(runtime)
        started = time.monotonic()
        # a running server's workers may hold deliveries while this process drains
        settle = 30.0 if args.url else 0.0
        report = run(runtime, target, seed=args.seed, count=args.count, settle=settle)
        elapsed = time.monotonic() - started
        if not args.keep:
            erase(runtime, report.shops)
        runtime.close()
        print(report.text(args.examples))
        print(f"\n{elapsed:.1f} s; target: 0 of each count")
        return 1 if any(report.counts().values()) else 0
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
