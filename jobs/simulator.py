"""The simulator: a scenario through the real engine on a virtual clock.

A scenario is a shop (platform, address, name, currency, timezone, language,
settings; the first registered platform and its sample address if left out) and timed
events in the common event model; the people are whoever the events name. The
simulator applies each event at its time through ``jobs.intake.apply.apply``
(the same code webhooks reach), and between events runs whatever the ledger says is due, in
time order, through the real send path (``jobs.sending.pipeline.run``, the guards,
``jobs.engine.enrolment.wake``), with the clock jumping from one due time to the next. Weeks
of a shop's life take milliseconds, in a scratch SQLite database.

Nothing leaves the machine: emails go to an in-memory outbox (they are still
rendered when a renderer is given), discount codes to an in-memory book.

Scenario JSON::

    {"shop": {"platform": "shopify", "domain": "x.myshopify.com", "name": "X",
              "currency": "SEK", "timezone": "Europe/Stockholm", "locale": "sv",
              "settings": {"flows": {...}, "engine": {...}}},
     "start": "2026-03-01T09:00:00Z", "until": "2026-03-08T00:00:00Z",
     "events": [{"at": "2026-03-01T10:00:00Z",
                 "event": {"type": "CheckoutUpdated", "version": 1, "data": {...}}}]}

Any event of the model may appear, the facts triggerpost makes from dates
included (a daily scan's ``{"type": "BirthdayCame", "version": 1, "data":
{"occurred_at": ..., "contact": {"customer_id": "7", "email": null}, "on":
"2026-03-05"}}``): they take the same path as a webhook's events.

The shop's daily scans (:mod:`jobs.intake.scans`) run on the virtual clock too,
each shop-local day at ``SCAN_TIME`` from the first one after ``start``, in time
order with the due sends: birthdays, anniversaries, lapses and quiet subscribers
come from the contacts' own data, as in production. With no enabled flow
triggered by a fact there is nothing to scan, and nothing changes in the timeline.

A timed item may instead change the shop's settings, as the merchant does with
``triggerpost shop settings --set`` (``{"at": ..., "settings": {"flows":
{"delivered_notice": {"enabled": true}}}}``: merged into what is stored, and
refused with the merchant's words if the result is not valid). Any item, and
the scenario itself, may carry a ``"note"`` for the reader; the simulator
ignores it. Every other key must be one the event model or the scenario
knows: a misspelt field (``"accepts_marketing"`` in a customer) is refused
with its place named, rather than read as absent.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from adapters import events as ev
from adapters import registry
from adapters.platform import DiscountRequest, WebhookSigner
from jobs import shop_settings
from jobs.engine import enrolment, ledger
from jobs.intake import apply, scans
from jobs.merchant.shops import add_shop
from jobs.reports.decisions import timeline
from jobs.runtime import Runtime
from jobs.sending import pipeline
from jobs.settings import Settings
from jobs.store.db import migrate
from jobs.store.models import (
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Shop,
)

#: the secret a scenario's shop is registered with where each shop signs its webhooks
SCRATCH_WEBHOOK_SECRET = "simulated-shop-secret"  # noqa: S105 (nothing is signed with it)
#: the scratch store's page cache per connection, in KiB
SCRATCH_CACHE_KIB = 65536


class ScenarioError(ValueError):
    """The scenario file cannot be run; the message says where."""


@dataclass(frozen=True)
class TimedEvent:
    """An event at its time, or (``settings``) the merchant changing the shop's settings."""

    at: datetime
    event: ev.Event | None
    settings: dict[str, Any] | None = None


#: what a scenario and each of its timed items may hold ("note" is for the reader)
SCENARIO_KEYS = frozenset({"shop", "start", "until", "events", "note"})
SHOP_KEYS = frozenset({"platform", "domain", "name", "currency", "timezone", "locale", "settings"})
ITEM_KEYS = frozenset({"at", "event", "settings", "note"})
EVENT_KEYS = frozenset({"type", "version", "data"})


@dataclass
class Scenario:
    shop: dict[str, Any]
    start: datetime
    until: datetime
    events: list[TimedEvent]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scenario:
        try:
            _only(raw, SCENARIO_KEYS, "scenario")
            events = [_timed(item, f"events[{i}]") for i, item in enumerate(raw.get("events", []))]
            start = _time(raw["start"]) if "start" in raw else min(e.at for e in events)
            until = _time(raw["until"])
            shop = dict(raw.get("shop") or {})
            _only(shop, SHOP_KEYS, "shop")
        except (KeyError, TypeError, ValueError) as exc:
            raise ScenarioError(f"scenario: {exc}") from exc
        # sorted by time only: items of the same moment keep the file's order
        return cls(shop, start, until, sorted(events, key=lambda e: e.at))

    @classmethod
    def load(cls, path: Path) -> Scenario:
        try:
            raw = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"{path}: {exc}") from exc
        return cls.from_dict(raw)


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ev.utc(parsed)


def _only(raw: Any, allowed: frozenset[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a JSON object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(allowed))})"
        )


def _timed(item: Any, where: str) -> TimedEvent:
    _only(item, ITEM_KEYS, where)
    if ("event" in item) == ("settings" in item):
        raise ScenarioError(f"{where}: give either an event or settings")
    at = _time(item["at"])
    if "settings" in item:
        if not isinstance(item["settings"], dict):
            raise ScenarioError(f"{where}.settings must be a JSON object")
        return TimedEvent(at, None, item["settings"])
    _only(item["event"], EVENT_KEYS, f"{where}.event")
    event = ev.from_dict(item["event"])
    _no_unknown_fields(item["event"].get("data"), ev.to_dict(event)["data"], f"{where}.event.data")
    return TimedEvent(at, event)


def _no_unknown_fields(raw: Any, read: Any, where: str) -> None:
    """Every key of ``raw`` is one the event model read back (``read`` is the event
    as the model writes it, every field present): nothing was dropped unseen."""
    if isinstance(raw, dict) and isinstance(read, dict):
        unknown = sorted(set(raw) - set(read))
        if unknown:
            raise ScenarioError(f"{where}: no field {', '.join(map(repr, unknown))} in the model")
        for key, value in raw.items():
            _no_unknown_fields(value, read[key], f"{where}.{key}")
    elif isinstance(raw, list) and isinstance(read, list):
        for i, (value, back) in enumerate(zip(raw, read, strict=False)):
            _no_unknown_fields(value, back, f"{where}[{i}]")


@dataclass
class Outbox:
    """Where simulated sends go: what a recipient's inbox would hold."""

    sent: list[pipeline.Composed] = field(default_factory=list)


class SimulatedCourier:
    """Delivery into the outbox; rendering through ``render`` when one is given."""

    provider = "simulator"
    supports_idempotency = True

    def __init__(self, outbox: Outbox, compose: Any = None) -> None:
        self.outbox = outbox
        self._compose = compose

    def compose(
        self, session: Session, shop: Shop, message: Message, contact: Contact, at: datetime
    ) -> pipeline.Composed:
        if self._compose is not None:
            composed: pipeline.Composed = self._compose(session, shop, message, contact, at)
            return composed
        return pipeline.Composed(
            email_to=contact.email or "",
            subject=f"{message.flow}/{message.step}",
            locale=contact.locale,
            message_id_header=message.message_id_header or f"<sim-{message.id}@triggerpost>",
            payload={"discount_code": message.discount_code},
        )

    def deliver(self, composed: pipeline.Composed) -> str | None:
        self.outbox.sent.append(composed)
        return composed.message_id_header


@dataclass
class DiscountBook:
    issued: dict[str, DiscountRequest] = field(default_factory=dict)

    def issue(self, shop: Shop, request: DiscountRequest) -> None:
        self.issued.setdefault(request.code, request)


class Simulator:
    """Drives one shop through time. Use :func:`scratch_runtime` for a throwaway store."""

    def __init__(
        self, sender: pipeline.Sender, shop_id: int, start: datetime, *, scans: bool = True
    ) -> None:
        self.sender = sender
        self.runtime = sender.runtime
        self.shop_id = shop_id
        self.clock = start
        #: run the shop's daily scans on the clock (off: a test plays the facts itself)
        self.scans = scans
        #: when the shop's next daily scan runs (known once the clock first moves)
        self.next_scan: datetime | None = None
        self._next_due: Any = None
        #: the earliest planned message and enrollment wake :meth:`next_due` last read
        self._due: tuple[datetime | None, datetime | None] = (None, None)

    def apply(
        self,
        event: ev.Event,
        at: datetime,
        then: Callable[[Session, datetime], object] | None = None,
        *,
        replayed: bool = False,
    ) -> None:
        """Run what is due until ``at``, then apply the event at ``at``; ``then`` (a dry
        run's bookkeeping) is called in the event's transaction after it, with the time.
        ``replayed``: the event is from a shop's event log (see ``apply.apply``)."""
        self.run_until(at)
        self.clock = max(self.clock, at)
        with self.runtime.sessions.begin() as session:
            shop = session.get_one(Shop, self.shop_id)
            apply.apply(session, shop, event, delivery_id=None, at=self.clock, replayed=replayed)
            enrolment.take_due_work(session)  # the simulator reads due work from the ledger
            if then is not None:
                then(session, at)

    def change_settings(self, patch: dict[str, Any], at: datetime) -> None:
        """The merchant changes the shop's settings (merged, as ``shop settings --set``)."""
        self.run_until(at)
        self.clock = max(self.clock, at)
        with self.runtime.sessions.begin() as session:
            shop = session.get_one(Shop, self.shop_id)
            try:
                shop_settings.update(session, shop, patch)
            except shop_settings.SettingsError as exc:
                problems = "; ".join(map(str, exc.problems))
                raise ScenarioError(f"settings at {at.isoformat()}: {problems}") from exc

    def play(self, scenario: Scenario) -> None:
        """Apply the scenario's events and settings changes at their times, then run
        until its end."""
        for item in scenario.events:
            if item.settings is not None:
                self.change_settings(item.settings, item.at)
            elif item.event is not None:
                self.apply(item.event, item.at)
        self.run_until(scenario.until)

    def next_due(self) -> datetime | None:
        """The earliest due time in the ledger (a planned message or a waiting enrollment)."""
        with self.runtime.sessions() as session:
            message, wake = session.execute(self._next_due_query).one()
        self._due = (message, wake)
        times = [t for t in (message, wake) if t is not None]
        return min(times) if times else None

    @property
    def _next_due_query(self) -> Any:
        if self._next_due is None:
            # one statement for both: the loop asks after every step
            self._next_due = select(
                select(func.min(Message.due_at))
                .where(Message.shop_id == self.shop_id, Message.state == MessageState.PLANNED)
                .scalar_subquery(),
                select(func.min(Enrollment.wake_at))
                .where(
                    Enrollment.shop_id == self.shop_id,
                    Enrollment.state == EnrollmentState.ACTIVE,
                )
                .scalar_subquery(),
            )
        return self._next_due

    def run_until(self, until: datetime) -> None:
        """Run everything due up to ``until``, in time order: the shop's daily scans
        (each shop-local day at ``jobs.intake.scans.SCAN_TIME``) and its due work."""
        for _ in range(1_000_000):
            due = self.next_due()
            scan = self._scan_at() if self.scans else None
            if scan is not None and scan <= until and (due is None or scan <= due):
                self.clock = max(self.clock, scan)
                self.scan(self.clock)
                continue
            if due is None or due > until:
                break
            self.clock = max(self.clock, due)
            self._run_due(self.clock, *self._due)
        self.clock = max(self.clock, until)

    def _scan_at(self) -> datetime:
        if self.next_scan is None:
            # the first day's scan is the one after the scenario began
            self.next_scan = scans.next_scan_at(self.clock, self._timezone())
        return self.next_scan

    def _timezone(self) -> str | None:
        with self.runtime.sessions() as session:
            return session.get_one(Shop, self.shop_id).timezone

    def scan(self, at: datetime) -> dict[str, int]:
        """The shop's daily scan at ``at``, as the sweeper's job runs it; the facts go
        through the same path as events, and what they plan is run by the clock.

        One transaction (:func:`jobs.intake.scans.scan_shop_at_once`): the same facts
        and scan states as the job's batches, which a scratch store need not resume."""
        with self.runtime.sessions.begin() as session:
            shop = session.get(Shop, self.shop_id)
            if shop is None:
                raise scans.ScanError(f"shop {self.shop_id} does not exist")
            emitted = scans.scan_shop_at_once(session, shop, at)
            timezone = shop.timezone
            enrolment.take_due_work(session)  # the simulator reads due work from the ledger
        self.next_scan = scans.next_scan_at(at, timezone)
        return emitted

    def _run_due(
        self, at: datetime, message_due: datetime | None, wake_due: datetime | None
    ) -> None:
        """Wake the enrollments due by ``at``, then run the messages due by then, in send
        order. ``message_due``, ``wake_due``: the earliest of each, as :meth:`next_due`
        read them just before (none of that kind is due when it is None or later)."""
        messages: Sequence[Row[int, int, int | None]] = ()
        wakes: Sequence[int] = ()
        with self.runtime.sessions() as session:
            if message_due is not None and message_due <= at:
                messages = session.execute(
                    select(Message.id, Message.enrollment_id, Message.contact_id)
                    .where(
                        Message.shop_id == self.shop_id,
                        Message.state == MessageState.PLANNED,
                        Message.due_at <= at,
                    )
                    .order_by(Message.due_at, Message.priority.desc(), Message.id)
                ).all()
            if wake_due is not None and wake_due <= at:
                wakes = session.scalars(
                    select(Enrollment.id).where(
                        Enrollment.shop_id == self.shop_id,
                        Enrollment.state == EnrollmentState.ACTIVE,
                        Enrollment.wake_at <= at,
                    )
                ).all()
        for enrollment_id in wakes:
            with self.runtime.sessions.begin() as session:
                enrolment.wake(session, enrollment_id, at)
                enrolment.take_due_work(session)
        for message_id, enrollment_id, contact_id in messages:
            # what each message belongs to read with the list, as a drain reads it
            refs = ledger.Refs(enrollment_id, contact_id)
            pipeline.run(self.sender, message_id, at, refs=refs)


@contextmanager
def scratch_runtime(base: Settings | None = None) -> Iterator[Runtime]:
    """A migrated throwaway SQLite store (Redis is never touched by the simulator)."""
    with tempfile.TemporaryDirectory(prefix="triggerpost-sim-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'sim.db'}"
        migrate(url)
        settings = Settings.from_env(
            {
                "TRIGGERPOST_DATA_DIR": tmp,
                "TRIGGERPOST_DATABASE_URL": url,
                "TRIGGERPOST_REDIS_URL": "redis://127.0.0.1:1/0",
                "TRIGGERPOST_SECRET_KEY": (base.secret_key if base else "simulator-" + "s" * 32),
            }
        )
        runtime = Runtime.create(settings)
        # a store thrown away after the run needs no commit to survive a power cut
        sa_event.listen(runtime.engine, "connect", _no_sync)
        try:
            yield runtime
        finally:
            runtime.close()


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=OFF")
    # nor do its deleted rows need overwriting; and its pages are kept in memory (a
    # dry run's store grows to the shop's whole log)
    dbapi_connection.execute("PRAGMA secure_delete=OFF")
    dbapi_connection.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")


@dataclass
class Result:
    timeline: list[dict[str, Any]]
    sent: list[pipeline.Composed]
    discounts: dict[str, DiscountRequest]
    #: the scenario's shop in the store it ran in (for reading more of that store)
    shop_id: int | None = None


def simulate(scenario: Scenario, *, compose: Any = None, runtime: Runtime | None = None) -> Result:
    """Run the scenario in a scratch store, or in ``runtime``'s (a test's database)."""
    if runtime is None:
        with scratch_runtime() as scratch:
            return _simulate(scenario, scratch, compose)
    return _simulate(scenario, runtime, compose)


def scratch_sender(
    runtime: Runtime, compose: Any = None
) -> tuple[pipeline.Sender, Outbox, DiscountBook]:
    """A sender that delivers into an in-memory outbox, issues codes into an
    in-memory book and asks no platform anything (no live re-check, no catalogue);
    due work is left in the ledger, where :class:`Simulator` finds it."""
    outbox, book = Outbox(), DiscountBook()
    sender = pipeline.Sender(
        runtime,
        SimulatedCourier(outbox, compose),
        discounts=book,
        hand_off=lambda work: None,
    )
    return sender, outbox, book


def _simulate(scenario: Scenario, runtime: Runtime, compose: Any) -> Result:
    sender, outbox, book = scratch_sender(runtime, compose)
    raw = scenario.shop
    platform = registry.platform(raw["platform"]) if "platform" in raw else registry.default()
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session,
            runtime.secrets,
            platform.name,
            raw.get("domain", platform.sample_address),
            name=raw.get("name"),
            currency=raw.get("currency", "USD"),
            # nothing is signed in a simulation, but a shop signing its own webhooks
            # cannot be registered without a secret
            webhook_secret=SCRATCH_WEBHOOK_SECRET
            if platform.webhook_signer == WebhookSigner.SHOP
            else None,
        )
        shop.timezone = raw.get("timezone")
        shop.locale = raw.get("locale")
        try:
            shop_settings.replace(session, shop, raw.get("settings") or {})
        except shop_settings.SettingsError as exc:
            problems = "; ".join(map(str, exc.problems))
            raise ScenarioError(f"shop.settings: {problems}") from exc
        shop_id = shop.id
    simulator = Simulator(sender, shop_id, scenario.start)
    simulator.play(scenario)
    with runtime.sessions() as session:
        rows = timeline(session, shop_id)
    return Result(rows, outbox.sent, book.issued, shop_id)
