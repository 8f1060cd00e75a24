"""``triggerpost demo``: a demo shop on the running service, and emails in a minute.

A newcomer should see the product work without writing an HMAC signer. The
demo registers a shop through the same path as ``triggerpost shop add`` (in
the service's database, with a fresh webhook secret), gives it settings under
which every flow's first email is due at once and nothing holds it back
(no waits, no quiet hours, no caps), and then plays real-shaped webhooks
(fixtures from ``tests/fixtures/``, re-dated to now) through the running
service's own HTTP intake, signed as the platform signs them. The service's
workers do the rest as they would for a real shop; the demo only watches the
ledger until the emails are sent, and says where to look.

Played again, the webhooks are new deliveries of the same carts, orders and
customers: the ledger plans nothing twice, so no email goes a second time.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from sqlalchemy import func, select

from connector.platforms.common import ConnectorPlatform, Demo
from connector.platforms.registry import CONNECTORS
from jobs import shop_settings
from jobs.merchant.shops import add_shop
from jobs.settings import Settings
from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Message, MessageState
from jobs.store.secrets import SecretBox

#: the fixtures the demo plays (a clone of the repository has them)
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

#: every flow's first email due at once, and no rule holding one back: the demo
#: shows a minute what a shop sees over days (the shop's own settings, nothing global)
SETTINGS: dict[str, Any] = {
    "flows": {
        "cart_recovery": {"delay_1_hours": 0},
        "thank_you": {"delay_hours": 1},
        "review_request": {"delay_days": 0},
        "delivered_notice": {"enabled": True},
    },
    "engine": {
        "quiet_start": "23:59:59",
        "quiet_end": "00:00",
        "min_gap_hours": 0,
        "marketing_per_window": 100,
    },
}

#: the demo shop's time zone (its customers' addresses are in Sweden)
DEMO_ZONE = "Europe/Stockholm"

#: an ISO 8601 time with its offset, as the platforms write them
ISO_TIME = re.compile(r'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"')


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


@dataclass
class Played:
    """What the demo did, for the reader and for tests."""

    shop: str
    shop_id: int
    url: str
    answers: list[tuple[str, int]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    #: flows whose next email is planned later (a wait the settings cannot shorten)
    later: dict[str, datetime] = field(default_factory=dict)


def demo_platform(connectors: Mapping[str, ConnectorPlatform] = CONNECTORS) -> tuple[str, Demo]:
    """The first platform that declares a demo."""
    for name, connector in connectors.items():
        if connector.demo is not None:
            return name, connector.demo
    raise DemoError("no platform declares a demo")  # pragma: no cover (one does)


def redate(text: str, now: datetime) -> str:
    """Every time in ``text`` moved by one amount, so that the latest is ``now``.

    The gaps between them stay (an account older than its order stays older);
    each time keeps its own offset.
    """
    times = [datetime.fromisoformat(m) for m in ISO_TIME.findall(text)]
    if not times:
        return text
    shift = now - max(times)

    def moved(match: re.Match[str]) -> str:
        at = datetime.fromisoformat(match.group(1)) + shift
        offset = at.utcoffset()
        stamp = at.isoformat(timespec="seconds")
        if match.group(1).endswith("Z") and offset == timedelta(0):
            stamp = stamp.replace("+00:00", "Z")
        return f'"{stamp}"'

    return ISO_TIME.sub(moved, text)


def body_of(
    platform: str, fixture: str, replace: tuple[tuple[str, str], ...], now: datetime
) -> bytes:
    path = FIXTURES / platform / f"{fixture}.json"
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise DemoError(
            f"{path} is missing: the demo plays the fixtures of a clone of the repository"
        ) from exc
    for old, new in replace:
        text = text.replace(old, new)
    # compact, as the platforms send them
    return json.dumps(json.loads(redate(text, now)), separators=(",", ":")).encode()


def register(settings: Settings, platform: str, demo: Demo) -> tuple[int, str, str]:
    """The demo shop registered (or updated) with a fresh secret and the demo's
    settings; its id, key and secret."""
    secret = secrets.token_hex(24)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine).begin() as session:
            shop = add_shop(
                session,
                SecretBox(settings.secret_key),
                platform,
                demo.address,
                name="Demo shop",
                webhook_secret=secret,
                currency="SEK",
                timezone=DEMO_ZONE,
                dev_mode=not settings.production,
            )
            shop_settings.replace(
                session, shop, shop_settings.merged(shop.settings or {}, SETTINGS)
            )
            return shop.id, shop.key, secret
    finally:
        engine.dispose()


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> int:
    return requests.post(url, data=body, headers=headers, timeout=timeout).status_code


def check_running(url: str) -> None:
    try:
        answer = requests.get(f"{url}/readyz", timeout=5)
    except requests.RequestException as exc:
        raise DemoError(
            f"no triggerpost answers at {url} ({type(exc).__name__}): start it first "
            "(`make run`), or pass --url with the address it serves on"
        ) from exc
    if answer.status_code != 200:
        raise DemoError(f"the service at {url} is not ready ({answer.status_code} on /readyz)")


def progress(settings: Settings, shop_id: int) -> tuple[dict[str, int], int, dict[str, datetime]]:
    """The shop's sent emails by flow, how many are due and not sent yet, and when
    each flow's next email that is not due yet is."""
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            sent = dict(
                session.execute(
                    select(Message.flow, func.count())
                    .where(Message.shop_id == shop_id, Message.state == MessageState.SENT)
                    .group_by(Message.flow)
                    .order_by(Message.flow)
                ).all()
            )
            waiting = session.scalar(
                select(func.count()).where(
                    Message.shop_id == shop_id,
                    Message.state.in_(
                        (MessageState.PLANNED, MessageState.SENDING, MessageState.HANDED)
                    ),
                    Message.due_at <= datetime.now(UTC),
                )
            )
            later = session.execute(
                select(Message.flow, func.min(Message.due_at))
                .where(
                    Message.shop_id == shop_id,
                    Message.state == MessageState.PLANNED,
                    Message.due_at > datetime.now(UTC),
                )
                .group_by(Message.flow)
                .order_by(Message.flow)
            ).all()
    finally:
        engine.dispose()
    return (
        {str(k): int(v) for k, v in sent.items()},
        int(waiting or 0),
        {str(flow): due.replace(tzinfo=due.tzinfo or UTC) for flow, due in later},
    )


def play(
    settings: Settings,
    url: str,
    *,
    wait: float = 120.0,
    flows_wanted: int = 3,
    say: Callable[[str], None] = print,
) -> Played:
    """Register the demo shop, play its webhooks at ``url``, wait for its emails."""
    url = url.rstrip("/")
    check_running(url)
    platform, demo = demo_platform()
    shop_id, key, secret = register(settings, platform, demo)
    played = Played(shop=key, shop_id=shop_id, url=url)
    say(f"demo shop {key} (id {shop_id}) registered, with delays of 0 and no quiet hours")
    now = datetime.now(UTC)
    for delivery in demo.deliveries:
        body = body_of(platform, delivery.fixture, delivery.replace, now)
        headers = demo.headers(delivery.topic, body, secret, key, str(uuid.uuid4()))
        status = post(f"{url}/webhooks/{platform}", body, headers)
        played.answers.append((delivery.topic, status))
        say(f"  POST {url}/webhooks/{platform}  {delivery.topic:<24} {status}")
        if status != 200:
            raise DemoError(f"the service answered {status} to {delivery.topic}; see its log")
    say("waiting for the workers to send the emails ...")
    deadline = time.monotonic() + wait
    while True:
        played.sent, played.waiting, played.later = progress(settings, shop_id)
        if (len(played.sent) >= flows_wanted and played.waiting == 0) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(1.0)
    return played


def next_steps(played: Played, settings: Settings, login_link: str | None) -> list[str]:
    _platform, demo = demo_platform()
    total = sum(played.sent.values())
    lines = [
        f"{total} email{'s' * (total != 1)} sent: "
        + (", ".join(f"{flow} {n}" for flow, n in played.sent.items()) or "none yet"),
    ]
    if played.waiting:
        lines.append(f"{played.waiting} more due and not sent yet: is a worker running?")
    if played.later:
        zone = ZoneInfo(DEMO_ZONE)
        lines.append(
            "still to come (waits that cannot be shorter): "
            + ", ".join(
                f"{flow} at {due.astimezone(zone):%H:%M %Z}" for flow, due in played.later.items()
            )
        )
    lines += [
        "",
        "Look at them:",
        f"  the emails (.eml files):   {settings.outbox_dir}"
        if settings.email_url.startswith("file:")
        else f"  the emails went to:        {settings.email_url.split('://', 1)[0]}://",
    ]
    for customer in demo.customers:
        lines.append(
            f"  why she or he got them:    .venv/bin/triggerpost why {played.shop} {customer}"
        )
    if login_link:
        lines.append(f"  the merchant app:          {login_link}")
    return lines
