"""The birthday greeting and the anniversary email: a fact the day before, the email
on the day at the contact's own morning, once a year, and never belated.

The shop is in Stockholm; its daily scan runs a little after its midnight and
tells of a birthday the shop-local day before it (the scans' contract).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from adapters import events as ev
from emails.outgoing import OutgoingEmail
from jobs.flows.model import (
    Flow,
    Hours,
    MessageKind,
    Option,
    Send,
    SubjectKind,
    Switch,
    Trigger,
    WaitUntil,
)
from jobs.reports.decisions import explain, format_timeline
from jobs.runtime import Runtime
from jobs.store.models import Contact, Enrollment, Message, MessageState
from tests.jobs.engine_support import Harness, customer, extra_flow
from tests.jobs.test_flow_extensions import Rendering

STOCKHOLM = "Europe/Stockholm"
TEHRAN = "Asia/Tehran"
LOS_ANGELES = "America/Los_Angeles"
BIRTHDAY = date(2026, 3, 10)
#: the scan of 9 March, 00:30 in Stockholm (CET): the day before the birthday
SCAN = datetime(2026, 3, 8, 23, 30, tzinfo=UTC)


def local(day: date, hour: int, zone: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def person(name: str, zone: str | None = None, *, subscribed: bool = True) -> ev.Customer:
    return customer(f"{name}@example.se", customer_id=name, timezone=zone, subscribed=subscribed)


def birthday_came(name: str, on: date, at: datetime) -> ev.BirthdayCame:
    return ev.BirthdayCame(occurred_at=at, contact=ev.ContactRef(name, None), on=on)


def anniversary_came(name: str, on: date, at: datetime, years: int) -> ev.OrderAnniversaryCame:
    first = datetime.combine(on.replace(year=on.year - years), time(12), UTC)
    return ev.OrderAnniversaryCame(
        occurred_at=at, contact=ev.ContactRef(name, None), years=years, first_order_at=first, on=on
    )


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    shop = Rendering(runtime)
    shop.settings(flows={"welcome": {"enabled": False}})  # only the dated flows here
    # the facts are played as the daily scans make them (the scans: tests/jobs/test_scans.py)
    shop.sim.scans = False
    return shop


def joined(shop: Harness, *people: ev.Customer) -> None:
    for who in people:
        shop.at(SCAN - timedelta(days=30), ev.CustomerCreated(SCAN - timedelta(days=30), who))


def emails_of(shop: Rendering, flow: str) -> list[OutgoingEmail]:
    """The emails ``flow`` sent, in the order they were sent."""
    sent = {m.message_id_header: m.flow for m in shop.messages()}
    return [e for e in shop.emails() if sent.get(e.message_id) == flow]


def why(shop: Harness, email: str) -> list[dict[str, Any]]:
    with shop.runtime.sessions() as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.email == email))
        assert contact_id is not None
        return explain(session, shop.shop_id, contact_id)


def not_started(shop: Harness, email: str, flow: str) -> list[str]:
    return [
        row["says"]
        for row in why(shop, email)
        if row["outcome"] == "not_started" and row["flow"] == flow
    ]


# --- the engine: a wait until an hour on a date the trigger kept ------------------------


def _on(event: ev.Event) -> dict[str, str | int]:
    assert isinstance(event, ev.BirthdayCame)
    return {"on": event.on.isoformat()}


def _dated(wait: WaitUntil, *options: Option) -> Flow:
    return Flow(
        name="test_dated",
        title="On a date (test)",
        category="birthday",
        kind=MessageKind.MARKETING,
        priority=1,
        trigger=Trigger(
            events=(ev.BirthdayCame,),
            subject=lambda e: (
                f"dated:{e.on.isoformat()}" if isinstance(e, ev.BirthdayCame) else None
            ),
            values=_on,
        ),
        steps=(wait, Send("greeting", "birthday")),
        subject_kind=SubjectKind.CONTACT,
        options=options,
    )


def _due(shop: Harness, flow: str) -> dict[str, datetime]:
    with shop.runtime.sessions() as session:
        rows = session.execute(
            select(Contact.customer_id, Message.due_at)
            .join(Contact, Contact.id == Message.contact_id)
            .where(Message.flow == flow)
        ).all()
    return dict(rows)


def test_a_wait_until_an_hour_on_the_trigger_s_date_lands_on_that_date_in_each_contact_s_zone(
    runtime: Runtime,
) -> None:
    shop = Harness(runtime)  # a Stockholm shop
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"enabled": False}})
    people = (person("sthlm", STOCKHOLM), person("tehran", TEHRAN), person("la", LOS_ANGELES))
    joined(shop, *people)
    with extra_flow(_dated(WaitUntil(time(9), day="on"))):
        for who in people:
            shop.at(SCAN, birthday_came(str(who.customer_id), BIRTHDAY, SCAN))
        due = _due(shop, "test_dated")
    assert due == {
        "sthlm": datetime(2026, 3, 10, 8, 0, tzinfo=UTC),  # CET
        "tehran": datetime(2026, 3, 10, 5, 30, tzinfo=UTC),  # +03:30
        "la": datetime(2026, 3, 10, 16, 0, tzinfo=UTC),  # PDT since 8 March
    }


def test_a_date_already_behind_the_cursor_or_no_date_at_all_waits_as_without_a_day(
    runtime: Runtime,
) -> None:
    shop = Harness(runtime)
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"enabled": False}})
    joined(shop, person("late", STOCKHOLM))
    late = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # 12:00 on the day: 09:00 has passed
    with extra_flow(_dated(WaitUntil(time(9), day="on"))):
        shop.at(late, birthday_came("late", BIRTHDAY, late))
        assert _due(shop, "test_dated") == {"late": local(date(2026, 3, 11), 9, STOCKHOLM)}
    # without a day, as before: the next 09:00 after the fact
    with extra_flow(_dated(WaitUntil(time(9)))):
        shop.at(SCAN, birthday_came("late", date(2027, 3, 10), SCAN))
    assert _due(shop, "test_dated") == {"late": local(date(2026, 3, 9), 9, STOCKHOLM)}


def test_a_wait_until_reads_its_hour_from_an_hours_option_only() -> None:
    wait = WaitUntil(day="on", option="send_hour")
    assert wait.time_of_day({"send_hour": 7}) == time(7)
    assert wait.date_of({"on": "2026-03-10"}) == BIRTHDAY
    assert wait.date_of({"on": "10 March"}) is None
    assert wait.date_of({}) is None
    with pytest.raises(ValueError, match="not declared"):
        _dated(wait)
    hour = Option("send_hour", Hours(9, max=23), label="Hour", help="Hour.")
    _dated(wait, hour)  # accepted
    with pytest.raises(ValueError, match="not Hours"):
        _dated(wait, Option("send_hour", Switch(True), label="Hour", help="Hour."))


# --- the birthday greeting --------------------------------------------------------------


def test_a_birthday_greeting_comes_at_nine_on_the_day_where_each_contact_lives(
    shop: Rendering,
) -> None:
    people = (person("sthlm", STOCKHOLM), person("tehran", TEHRAN), person("la", LOS_ANGELES))
    joined(shop, *people)
    for who in people:
        shop.at(SCAN, birthday_came(str(who.customer_id), BIRTHDAY, SCAN))
    shop.run(SCAN + timedelta(days=3))
    sent = {e.to: e for e in emails_of(shop, "birthday")}
    assert {to: e.date for to, e in sent.items()} == {
        "sthlm@example.se": local(BIRTHDAY, 9, STOCKHOLM),
        "tehran@example.se": local(BIRTHDAY, 9, TEHRAN),
        "la@example.se": local(BIRTHDAY, 9, LOS_ANGELES),
    }
    email = sent["sthlm@example.se"]
    assert email.subject == "Happy birthday from engine-test.myshopify.com!"
    assert "Hi Anna," in email.text
    assert "unsubscribe" in email.text.lower()
    assert shop.discounts.issued == {}  # no code unless the shop turns it on


def test_a_birthday_is_greeted_once_a_year_and_again_the_next_year(shop: Rendering) -> None:
    joined(shop, person("anna", STOCKHOLM))
    shop.at(SCAN, birthday_came("anna", BIRTHDAY, SCAN))
    shop.at(SCAN + timedelta(hours=2), birthday_came("anna", BIRTHDAY, SCAN + timedelta(hours=2)))
    shop.run(SCAN + timedelta(days=3))
    assert len(emails_of(shop, "birthday")) == 1
    assert not_started(shop, "anna@example.se", "birthday") == [
        (
            "not started: she had started it before (it starts once for the same subject) "
            "(on BirthdayCame)"
        )
    ]
    next_scan = SCAN + timedelta(days=365)
    shop.at(next_scan, birthday_came("anna", date(2027, 3, 10), next_scan))
    shop.run(next_scan + timedelta(days=3))
    dates = [e.date for e in emails_of(shop, "birthday")]
    assert dates == [local(BIRTHDAY, 9, STOCKHOLM), local(date(2027, 3, 10), 9, STOCKHOLM)]
    with shop.runtime.sessions() as session:
        subjects = session.scalars(
            select(Enrollment.subject).where(Enrollment.flow == "birthday").order_by(Enrollment.id)
        ).all()
    assert subjects == ["birthday:2026", "birthday:2027"]


def test_a_29_february_birthday_is_greeted_on_28_february_in_a_common_year(
    shop: Rendering,
) -> None:
    joined(shop, person("leap", STOCKHOLM))
    on = date(2027, 2, 28)  # born 29 February; 2027 has none
    scan = datetime(2027, 2, 26, 23, 30, tzinfo=UTC)  # 00:30 on 27 February in Stockholm
    shop.at(scan, birthday_came("leap", on, scan))
    shop.run(scan + timedelta(days=3))
    (email,) = emails_of(shop, "birthday")
    assert email.date == local(on, 9, STOCKHOLM)


def test_a_birthday_fact_on_the_day_itself_still_greets_that_day_at_once(
    shop: Rendering,
) -> None:
    joined(shop, person("anna", STOCKHOLM))
    catch_up = local(BIRTHDAY, 14, STOCKHOLM)  # after downtime: the scan of the day itself
    shop.at(catch_up, birthday_came("anna", BIRTHDAY, catch_up))
    shop.run(catch_up + timedelta(days=2))
    (email,) = emails_of(shop, "birthday")
    assert email.date == catch_up  # the same afternoon, not the next morning


def test_a_birthday_fact_that_comes_after_the_day_greets_nobody_and_says_why(
    shop: Rendering,
) -> None:
    joined(shop, person("anna", STOCKHOLM))
    late = local(BIRTHDAY + timedelta(days=2), 1, STOCKHOLM)  # two days late
    shop.at(late, birthday_came("anna", BIRTHDAY, late))
    shop.run(late + timedelta(days=2))
    assert emails_of(shop, "birthday") == []
    (says,) = not_started(shop, "anna@example.se", "birthday")
    assert says == (
        "not started: it was already over (her day had passed where she lives) (on BirthdayCame)"
    )


def test_a_greeting_held_back_past_her_birthday_ends_instead_of_arriving_belated(
    shop: Rendering,
) -> None:
    joined(shop, person("anna", STOCKHOLM))
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"expires_hours": 48}})
    shop.at(SCAN, birthday_came("anna", BIRTHDAY, SCAN))
    # held back past midnight where she lives (as caps or quiet hours may hold it)
    with shop.runtime.sessions.begin() as session:
        (message,) = session.scalars(select(Message).where(Message.flow == "birthday")).all()
        message.due_at = local(BIRTHDAY + timedelta(days=1), 9, STOCKHOLM)  # held back a day
    shop.run(SCAN + timedelta(days=4))
    assert emails_of(shop, "birthday") == []
    (message,) = [m for m in shop.messages() if m.flow == "birthday"]
    assert (message.state, message.reason) == (MessageState.EXITED, "birthday_passed")
    timeline = format_timeline(why(shop, "anna@example.se"))
    assert "her day had passed where she lives" in timeline


def test_a_birthday_code_the_shop_switched_on_is_15_percent_for_7_days(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"discount": True}})
    joined(shop, person("anna", STOCKHOLM))
    shop.at(SCAN, birthday_came("anna", BIRTHDAY, SCAN))
    shop.run(SCAN + timedelta(days=3))
    (email,) = emails_of(shop, "birthday")
    (code,) = [m.discount_code for m in shop.messages() if m.flow == "birthday"]
    assert code is not None
    assert code in email.text
    request = shop.discounts.issued[code]
    assert request.percent == Decimal(15)
    assert request.expires_at == email.date + timedelta(days=7)


def test_a_birthday_greeting_without_a_name_greets_her_all_the_same(shop: Rendering) -> None:
    who = ev.Customer(
        customer_id="nameless",
        email="nameless@example.se",
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "test", SCAN - timedelta(days=30)),
        updated_at=SCAN - timedelta(days=30),
    )
    joined(shop, who)
    shop.at(SCAN, birthday_came("nameless", BIRTHDAY, SCAN))
    shop.run(SCAN + timedelta(days=3))
    (email,) = emails_of(shop, "birthday")
    assert "Hi there," in email.text


# --- the anniversary of the first order ----------------------------------------------------


def test_the_anniversary_email_is_off_until_the_shop_turns_it_on(shop: Rendering) -> None:
    joined(shop, person("anna", STOCKHOLM))
    shop.at(SCAN, anniversary_came("anna", BIRTHDAY, SCAN, 2))
    shop.run(SCAN + timedelta(days=3))
    assert emails_of(shop, "anniversary") == []
    assert not_started(shop, "anna@example.se", "anniversary") == [
        "not started: the flow was off (on OrderAnniversaryCame)"
    ]


def test_a_shop_that_turns_it_on_sends_the_years_on_the_day(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, "anniversary": {"enabled": True}})
    joined(shop, person("anna", TEHRAN), person("bo", STOCKHOLM))
    shop.at(SCAN, anniversary_came("anna", BIRTHDAY, SCAN, 2))
    shop.at(SCAN, anniversary_came("bo", BIRTHDAY, SCAN, 1))
    shop.at(SCAN, anniversary_came("anna", BIRTHDAY, SCAN, 2))  # the scan ran twice
    shop.run(SCAN + timedelta(days=3))
    sent = {e.to: e for e in emails_of(shop, "anniversary")}
    assert set(sent) == {"anna@example.se", "bo@example.se"}
    anna, bo = sent["anna@example.se"], sent["bo@example.se"]
    assert anna.date == local(BIRTHDAY, 9, TEHRAN)
    assert anna.subject == "2 years with engine-test.myshopify.com"
    assert "It's 2 years today since your first order" in anna.text
    assert bo.subject == "1 year with engine-test.myshopify.com"
    assert shop.discounts.issued == {}


def test_an_anniversary_fact_without_its_date_goes_at_the_next_send_hour(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, "anniversary": {"enabled": True}})
    joined(shop, person("anna", STOCKHOLM))
    fact = ev.OrderAnniversaryCame(
        occurred_at=SCAN,
        contact=ev.ContactRef("anna", None),
        years=3,
        first_order_at=datetime(2023, 3, 9, 12, tzinfo=UTC),
    )
    shop.at(SCAN, fact)
    shop.run(SCAN + timedelta(days=3))
    (email,) = emails_of(shop, "anniversary")
    assert email.date == local(date(2026, 3, 9), 9, STOCKHOLM)  # the scan's own day
    assert email.subject == "3 years with engine-test.myshopify.com"


def test_a_shop_may_move_the_birthday_hour(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"send_hour": 11}})
    joined(shop, person("anna", TEHRAN))
    shop.at(SCAN, birthday_came("anna", BIRTHDAY, SCAN))
    shop.run(SCAN + timedelta(days=3))
    (email,) = emails_of(shop, "birthday")
    assert email.date == local(BIRTHDAY, 11, TEHRAN)
