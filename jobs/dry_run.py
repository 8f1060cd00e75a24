"""A dry run on the shop's own history: what its flows would have sent lately.

``dry_run`` replays the shop's event log (the ``events`` table: every event the
adapters produced) of the last ``days`` days through the real engine, in a
scratch SQLite store on the simulator's virtual clock (:mod:`jobs.simulator`),
with the shop's stored settings or proposed ones, and counts what came of it:
emails per flow and step, the deferrals (quiet hours, caps) and the emails not
sent, by reason, and the most emails any one contact would have got. The
merchant sees it before switching a flow on (``triggerpost simulate --shop``,
and the flow editor).

Nothing of the real store is written, nothing is sent, no discount code is
made and no platform is asked: the replay's sender delivers into the
simulator's in-memory outbox and book, and the scratch shop holds no token.

How faithful it is:

- the state before the window counts: the log's events before it are applied
  first as the shop's past (``apply(..., historical=True)``: contacts, orders,
  products and consent as they were; no flow acts on them), in batches, so a
  customer's earlier orders bring a loyalty milestone into the window;
- the window's events are applied at their times, due emails run in time
  order between them, and the clock runs to the window's end; what is still
  planned then is counted apart ("would be sent after");
- left out of the replay (and counted): the time-based facts (birthdays,
  lapses: the daily scans make them afresh), the privacy requests and the
  app's uninstall (their logged data is replaced; the run supposes the shop
  installed throughout) and events whose data was erased with a customer (so
  an erased person is never emailed in a dry run either);
- what no event carries is copied from the store: a contact's birthday, and
  consent when the log holds none for them (from a contacts import; consent
  dated after the moment the replay creates the contact is left out, as it
  did not exist yet), matched by customer id, else address; and the shop's
  suppressions (unsubscribes, bounces, complaints), so nobody the shop must
  not email counts as reached.

The result speaks of counts, flows and reasons only; the contact who would get
the most emails is named by the store's internal contact id, never an address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from adapters import events as ev
from jobs import shop_settings
from jobs.intake import apply
from jobs.simulator import Simulator, scratch_runtime, scratch_sender
from jobs.store.models import (
    Contact,
    Decision,
    Message,
    MessageState,
    Shop,
    ShopStatus,
    StoredEvent,
    Suppression,
    now,
)

#: events of the past applied per transaction of the scratch store
BATCH = 1000
#: the longest window a dry run replays
MAX_DAYS = 366


class DryRunError(ValueError):
    """The dry run cannot be made (no such shop, a window it cannot replay)."""


class LeftOut(StrEnum):
    """Why a logged event is not replayed (:data:`LEFT_OUT_WORDS` says it to a merchant)."""

    FACT = "fact"
    PRIVACY = "privacy_request"
    UNINSTALL = "uninstall"
    ERASED = "erased"
    AFTER = "after_window"


LEFT_OUT_WORDS: dict[str, str] = {
    LeftOut.FACT: "time-based facts (the daily scans make them afresh)",
    LeftOut.PRIVACY: "privacy requests (their logged data is replaced)",
    LeftOut.UNINSTALL: "app uninstalls (the run supposes the shop installed)",
    LeftOut.ERASED: "erased with a customer, or unreadable",
    LeftOut.AFTER: "after the window's end",
}


#: event types never replayed, and why
SKIPPED_TYPES: dict[str, LeftOut] = {
    **{kind.__name__: LeftOut.FACT for kind in ev.FACTS},
    ev.CustomerDataRequested.__name__: LeftOut.PRIVACY,
    ev.CustomerRedactRequested.__name__: LeftOut.PRIVACY,
    ev.ShopRedactRequested.__name__: LeftOut.PRIVACY,
    ev.AppUninstalled.__name__: LeftOut.UNINSTALL,
}


@dataclass(frozen=True)
class StepCount:
    """Emails of one step of one flow."""

    flow: str
    step: str
    count: int


@dataclass(frozen=True)
class DryRun:
    """What the shop's flows would have done over the window, in counts."""

    shop: str
    start: datetime
    until: datetime
    #: True when proposed settings (merged onto the stored ones) were used
    proposed: bool
    #: logged events applied as the shop's past, and through the engine in the window
    events_before: int
    events_in_window: int
    #: logged events not replayed, by why (a LeftOut)
    left_out: dict[str, int]
    #: emails sent within the window, and still planned at its end, per flow and step
    sent: list[StepCount]
    after: list[StepCount]
    #: emails held back at least once, by the reason of the deferral ("quiet_hours",
    #: "cap:weekly", ...)
    deferred: dict[str, int]
    #: emails not sent: a guard said no (``skipped``), the flow ended first (``exited``),
    #: never found a slot (``expired``), cancelled, failed: by state, then reason
    not_sent: dict[str, dict[str, int]]
    #: contacts who would get at least one email, and the most any one would get
    contacts_reached: int
    most_to_one_contact: int
    #: that contact's id in the store (internal; for the merchant app's link), if any
    busiest_contact_id: int | None
    #: what was copied from the store because no event carries it
    copied: dict[str, int] = field(default_factory=dict)
    #: ``deferred`` and ``not_sent`` of each flow on its own (the flow editor shows one)
    deferred_by_flow: dict[str, dict[str, int]] = field(default_factory=dict)
    not_sent_by_flow: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def sent_by_flow(self) -> dict[str, int]:
        return _by_flow(self.sent)

    def after_by_flow(self) -> dict[str, int]:
        return _by_flow(self.after)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (``simulate --shop --json``)."""
        return {
            "shop": self.shop,
            "start": self.start.isoformat(),
            "until": self.until.isoformat(),
            "settings": "proposed" if self.proposed else "stored",
            "events": {
                "before_window": self.events_before,
                "in_window": self.events_in_window,
                "left_out": self.left_out,
            },
            "sent": _nested(self.sent),
            "sent_total": sum(s.count for s in self.sent),
            "would_be_sent_after": _nested(self.after),
            "deferred": self.deferred,
            "not_sent": self.not_sent,
            "contacts_reached": self.contacts_reached,
            "most_to_one_contact": self.most_to_one_contact,
            "busiest_contact_id": self.busiest_contact_id,
            "copied_from_store": self.copied,
        }


def _by_flow(counts: Iterable[StepCount]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for count in counts:
        total[count.flow] += count.count
    return dict(total)


def _nested(counts: Iterable[StepCount]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for count in counts:
        nested.setdefault(count.flow, {})[count.step] = count.count
    return nested


def proposed_settings(shop: Shop, patch: Any) -> dict[str, Any]:
    """``patch`` merged onto the shop's stored settings, as ``shop settings --set``
    merges it; :class:`jobs.shop_settings.SettingsError` (every bad field, in the
    merchant's words) if the result is not valid."""
    if not isinstance(patch, Mapping):
        raise shop_settings.SettingsError(
            [shop_settings.Problem((), "must be a JSON object of settings")]
        )
    merged = shop_settings.merged(shop.settings or {}, patch)
    problems = shop_settings.validate(merged)
    if problems:
        raise shop_settings.SettingsError(problems)
    return merged


def dry_run(
    sessions: sessionmaker[Session],
    shop_id: int,
    *,
    days: int = 30,
    settings: Mapping[str, Any] | None = None,
    until: datetime | None = None,
    batch: int = BATCH,
) -> DryRun:
    """Replay the shop's last ``days`` days in a scratch store (see the module docstring).

    ``sessions`` reads the real store and is never written through: sessions for
    reading only (``jobs.store.db.make_read_sessions``; on SQLite two are open at
    once, the log's and the contacts', and take no writer lock). ``settings``:
    proposed settings merged onto the stored ones (refused with
    ``SettingsError``); None runs on the stored settings. ``until``: the
    window's end (now when None).
    """
    if not 1 <= days <= MAX_DAYS:
        raise DryRunError(f"a dry run replays 1 to {MAX_DAYS} days, not {days}")
    until = ev.utc(until) if until is not None else now()
    start = until - timedelta(days=days)
    with sessions() as session:
        real = session.get(Shop, shop_id)
        if real is None:
            raise DryRunError(f"no shop {shop_id}")
        proposed = proposed_settings(real, settings) if settings is not None else None
        session.expunge(real)
    with scratch_runtime() as scratch:
        replay = _Replay(sessions, real, scratch.sessions, batch)
        replay.make_shop(proposed)
        sender, _outbox, _book = scratch_sender(scratch)
        simulator = Simulator(sender, replay.scratch_id, start)
        for item, event in replay.logged(start, until):
            if item.occurred_at < start:
                replay.past(event)
            else:
                replay.flush_past()
                simulator.apply(
                    event, item.occurred_at, then=replay.copy_new_contacts_in, replayed=True
                )
                replay.events_in_window += 1
        replay.flush_past()
        simulator.run_until(until)
        with scratch.sessions() as session:
            return replay.result(session, start, until, proposed is not None)


@dataclass(frozen=True)
class _Logged:
    type: str
    version: int
    occurred_at: datetime
    data: Any


class _Replay:
    """The real store read, the scratch store written: one dry run's bookkeeping."""

    def __init__(
        self,
        real_sessions: sessionmaker[Session],
        real: Shop,
        scratch_sessions: sessionmaker[Session],
        batch: int,
    ) -> None:
        self.real_sessions = real_sessions
        self.real = real
        self.scratch_sessions = scratch_sessions
        self.batch = batch
        self.scratch_id = 0
        self.left_out: Counter[str] = Counter()
        self.events_before = 0
        self.events_in_window = 0
        self.copied: Counter[str] = Counter()
        self._pending: list[ev.Event] = []
        self._contact_mark = 0  # contacts up to this scratch id have had their copy

    # --- the scratch shop ------------------------------------------------------------

    def make_shop(self, proposed: dict[str, Any] | None) -> None:
        """The shop in the scratch store: its identity, settings and suppressions;
        no secret or token, so nothing in the replay can call its platform."""
        real = self.real
        with self.scratch_sessions.begin() as session:
            shop = Shop(
                platform=real.platform,
                key=real.key,
                name=real.name,
                base_url=real.base_url,
                currency=real.currency,
                timezone=real.timezone,
                locale=real.locale,
                status=ShopStatus.ACTIVE,
                installed_at=real.installed_at,
            )
            # written as they are (validated above when proposed), not through
            # shop_settings.replace: its notice bookkeeping is the real shop's
            if proposed is None:
                shop.settings = real.settings or {}
                shop.settings_valid = real.settings_valid
            else:
                shop.settings = proposed
                shop.settings_valid = proposed
            session.add(shop)
            session.flush()
            self.scratch_id = shop.id
            with self.real_sessions() as real_session:
                for row in real_session.scalars(
                    select(Suppression).where(Suppression.shop_id == real.id)
                ):
                    session.add(
                        Suppression(
                            shop_id=shop.id,
                            email=row.email,
                            scope=row.scope,
                            reason=row.reason,
                            source=row.source,
                            created_at=row.created_at,
                        )
                    )
                    self.copied["suppressions"] += 1

    # --- the log -------------------------------------------------------------------------

    def logged(self, start: datetime, until: datetime) -> Iterator[tuple[_Logged, ev.Event]]:
        """The shop's logged events up to ``until`` in time order, readable and
        replayable; the others counted in ``left_out``."""
        query = (
            select(
                StoredEvent.type,
                StoredEvent.version,
                StoredEvent.occurred_at,
                StoredEvent.data,
            )
            .where(StoredEvent.shop_id == self.real.id)
            .order_by(StoredEvent.occurred_at, StoredEvent.id)
        )
        with self.real_sessions() as session:
            rows = session.execute(query, execution_options={"yield_per": self.batch})
            for raw in rows:
                item = _Logged(raw.type, raw.version, ev.utc(raw.occurred_at), raw.data)
                reason = SKIPPED_TYPES.get(item.type)
                if reason is None and item.occurred_at > until:
                    reason = LeftOut.AFTER
                if reason is not None:
                    self.left_out[reason] += 1
                    continue
                try:
                    event = ev.from_dict(
                        {"type": item.type, "version": item.version, "data": item.data}
                    )
                except (ev.EventError, KeyError, TypeError, ValueError):
                    self.left_out[LeftOut.ERASED] += 1
                    continue
                yield item, event

    def past(self, event: ev.Event) -> None:
        self._pending.append(event)
        if len(self._pending) >= self.batch:
            self.flush_past()

    def flush_past(self) -> None:
        """Apply the waiting events of the past in one transaction: stored and logged,
        no flow acts on them."""
        if not self._pending:
            return
        with self.scratch_sessions.begin() as session:
            shop = session.get_one(Shop, self.scratch_id)
            for event in self._pending:
                apply.apply(
                    session, shop, event, delivery_id=None, at=event.occurred_at, historical=True
                )
        self.events_before += len(self._pending)
        last = self._pending[-1].occurred_at
        self._pending = []
        self.copy_new_contacts(last)

    # --- what no event carries -------------------------------------------------------

    def copy_new_contacts(self, at: datetime) -> None:
        """Give the contacts the replay created since the last call what the store
        knows of them and no event carries: birthday, and consent the log has not
        given them (if it was given by ``at``)."""
        with self.scratch_sessions.begin() as session:
            self.copy_new_contacts_in(session, at)

    def copy_new_contacts_in(self, session: Session, at: datetime) -> None:
        """:meth:`copy_new_contacts` in the transaction that made them."""
        fresh = list(
            session.scalars(
                select(Contact)
                .where(Contact.shop_id == self.scratch_id, Contact.id > self._contact_mark)
                .order_by(Contact.id)
            )
        )
        if not fresh:
            return
        self._contact_mark = fresh[-1].id
        wanted = [c for c in fresh if c.birthday is None or c.consent_state is None]
        for chunk in _chunks(wanted, 500):
            known = self._real_contacts(chunk)
            for contact in chunk:
                found = known.get(("id", contact.customer_id)) or known.get(
                    ("email", contact.email)
                )
                if found is None:
                    continue
                if contact.birthday is None and found.birthday is not None:
                    contact.birthday = found.birthday
                    self.copied["birthday"] += 1
                if (
                    contact.consent_state is None
                    and found.consent_state is not None
                    and (found.consent_at is None or ev.utc(found.consent_at) <= at)
                ):
                    contact.consent_state = found.consent_state
                    contact.consent_source = found.consent_source
                    contact.consent_at = found.consent_at
                    self.copied["consent"] += 1

    def _real_contacts(self, contacts: list[Contact]) -> dict[tuple[str, str | None], Contact]:
        ids = [c.customer_id for c in contacts if c.customer_id]
        emails = [c.email for c in contacts if c.email]
        with self.real_sessions() as session:
            rows = session.scalars(
                select(Contact).where(
                    Contact.shop_id == self.real.id,
                    or_(Contact.customer_id.in_(ids), Contact.email.in_(emails)),
                )
            ).all()
            session.expunge_all()
        found: dict[tuple[str, str | None], Contact] = {}
        for row in rows:
            if row.customer_id:
                found[("id", row.customer_id)] = row
            if row.email:
                found[("email", row.email)] = row
        return found

    def _real_contact_id(self, session: Session, scratch_contact_id: int) -> int | None:
        contact = session.get(Contact, scratch_contact_id)
        if contact is None:
            return None
        known = self._real_contacts([contact])
        found = known.get(("id", contact.customer_id)) or known.get(("email", contact.email))
        return found.id if found is not None else None

    # --- the counts --------------------------------------------------------------------

    def result(self, session: Session, start: datetime, until: datetime, proposed: bool) -> DryRun:
        shop = session.get_one(Shop, self.scratch_id)
        mine = Message.shop_id == self.scratch_id

        def steps(state: MessageState) -> list[StepCount]:
            rows = session.execute(
                select(Message.flow, Message.step, func.count())
                .where(mine, Message.state == state)
                .group_by(Message.flow, Message.step)
                .order_by(Message.flow, Message.step)
            )
            return [StepCount(flow, step, count) for flow, step, count in rows]

        deferred: Counter[str] = Counter()
        deferred_by_flow: dict[str, dict[str, int]] = {}
        for flow, reason, count in session.execute(
            select(Decision.flow, Decision.reason, func.count(func.distinct(Decision.message_id)))
            .where(
                Decision.shop_id == self.scratch_id,
                Decision.outcome == "deferred",
                Decision.reason.is_not(None),
            )
            .group_by(Decision.flow, Decision.reason)
            .order_by(Decision.flow, Decision.reason)
        ):
            deferred[str(reason)] += int(count)
            deferred_by_flow.setdefault(flow, {})[str(reason)] = int(count)
        not_sent: dict[str, dict[str, int]] = {}
        not_sent_by_flow: dict[str, dict[str, dict[str, int]]] = {}
        for flow, state, reason, count in session.execute(
            select(Message.flow, Message.state, Message.reason, func.count())
            .where(
                mine,
                Message.state.not_in(
                    [MessageState.SENT, MessageState.PLANNED, MessageState.SENDING]
                ),
            )
            .group_by(Message.flow, Message.state, Message.reason)
            .order_by(Message.flow, Message.state, Message.reason)
        ):
            by_state = not_sent.setdefault(state, {})
            by_state[reason or state] = by_state.get(reason or state, 0) + count
            not_sent_by_flow.setdefault(flow, {}).setdefault(state, {})[reason or state] = count
        per_contact = session.execute(
            select(Message.contact_id, func.count().label("n"))
            .where(mine, Message.state == MessageState.SENT, Message.contact_id.is_not(None))
            .group_by(Message.contact_id)
            .order_by(func.count().desc(), Message.contact_id)
        ).all()
        busiest = per_contact[0] if per_contact else None
        return DryRun(
            shop=shop.key,
            start=start,
            until=until,
            proposed=proposed,
            events_before=self.events_before,
            events_in_window=self.events_in_window,
            left_out={str(reason): n for reason, n in sorted(self.left_out.items())},
            sent=steps(MessageState.SENT),
            after=steps(MessageState.PLANNED),
            deferred=dict(sorted(deferred.items())),
            not_sent={state: dict(sorted(reasons.items())) for state, reasons in not_sent.items()},
            contacts_reached=len(per_contact),
            most_to_one_contact=int(busiest.n) if busiest else 0,
            busiest_contact_id=(
                self._real_contact_id(session, busiest.contact_id) if busiest else None
            ),
            copied=dict(sorted(self.copied.items())),
            deferred_by_flow=deferred_by_flow,
            not_sent_by_flow=not_sent_by_flow,
        )


def _chunks(items: list[Contact], size: int) -> Iterator[list[Contact]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
