"""Analytics: each figure per flow and per shop-local day, from the ledger, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from sqlalchemy.orm import Session

from jobs.merchant.shops import add_shop
from jobs.reports import analytics
from jobs.reports.attribution import Lift, Verdict, wilson
from jobs.runtime import Runtime
from jobs.store.models import (
    SCOPE_ALL,
    SCOPE_MARKETING,
    Attribution,
    Contact,
    Engagement,
    EngagementKind,
    Enrollment,
    Message,
    MessageState,
    Order,
    Shop,
    Suppression,
    SuppressionReason,
)

_ids = count(1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Ledger:
    """Rows written straight into the store, as the engine and the links would."""

    def __init__(self, session: Session, shop: Shop) -> None:
        self.session = session
        self.shop = shop

    def contact(self) -> Contact:
        n = next(_ids)
        found = Contact(shop_id=self.shop.id, email=f"c{n}@example.com", customer_id=str(n))
        self.session.add(found)
        self.session.flush()
        return found

    def enrollment(
        self, flow: str, at: datetime, contact: Contact | None = None, holdout: bool = False
    ) -> Enrollment:
        contact = contact or self.contact()
        found = Enrollment(
            shop_id=self.shop.id,
            flow=flow,
            key=f"k{next(_ids)}",
            subject=str(contact.id),
            contact_id=contact.id,
            holdout=holdout,
            anchor_at=at,
            entered_at=at,
        )
        self.session.add(found)
        self.session.flush()
        return found

    def message(
        self, flow: str, sent_at: datetime, state: MessageState = MessageState.SENT
    ) -> Message:
        enrollment = self.enrollment(flow, sent_at - timedelta(hours=1))
        found = Message(
            shop_id=self.shop.id,
            enrollment_id=enrollment.id,
            contact_id=enrollment.contact_id,
            dedupe_key=f"d{next(_ids)}",
            flow=flow,
            step="first",
            template=flow,
            kind="marketing",
            state=state,
            due_at=sent_at,
            planned_at=sent_at,
            expires_at=sent_at + timedelta(days=1),
            sent_at=sent_at if state == MessageState.SENT else None,
        )
        self.session.add(found)
        self.session.flush()
        return found

    def click(self, message: Message, at: datetime) -> None:
        self.session.add(
            Engagement(
                shop_id=self.shop.id,
                message_id=message.id,
                contact_id=message.contact_id,
                kind=EngagementKind.CLICK,
                at=at,
            )
        )

    def open(self, message: Message, at: datetime) -> None:
        self.session.add(
            Engagement(
                shop_id=self.shop.id,
                message_id=message.id,
                contact_id=message.contact_id,
                kind=EngagementKind.OPEN,
                at=at,
            )
        )

    def suppression(self, message: Message, reason: str, scope: str, source: str) -> None:
        self.session.add(
            Suppression(
                shop_id=self.shop.id,
                email=f"s{next(_ids)}@example.com",
                scope=scope,
                reason=reason,
                source=source,
                message_id=message.id,
            )
        )

    def order(
        self,
        placed_at: datetime,
        contact: Contact | None = None,
        total: str = "100.00",
        currency: str = "SEK",
    ) -> Order:
        found = Order(
            shop_id=self.shop.id,
            order_id=f"o{next(_ids)}",
            name="#1001",
            currency=currency,
            total=Decimal(total),
            data={},
            placed_at=placed_at,
            platform_updated_at=placed_at,
            contact_id=(contact or self.contact()).id,
        )
        self.session.add(found)
        self.session.flush()
        return found

    def credit(
        self, message: Message, placed_at: datetime, revenue: str, currency: str = "SEK"
    ) -> None:
        order = self.order(placed_at, total=revenue, currency=currency)
        self.session.add(
            Attribution(
                shop_id=self.shop.id,
                order_row_id=order.id,
                message_id=message.id,
                flow=message.flow,
                revenue=Decimal(revenue),
                currency=currency,
                engagement_at=placed_at - timedelta(hours=1),
                attributed_at=placed_at + timedelta(minutes=1),
            )
        )
        self.session.flush()


def new_shop(session: Session, runtime: Runtime, key: str, timezone: str) -> Shop:
    return add_shop(
        session,
        runtime.secrets,
        "shopify",
        f"{key}.myshopify.com",
        currency="SEK",
        timezone=timezone,
    )


@pytest.fixture
def spring(runtime: Runtime) -> analytics.Report:
    """Nordljus (Stockholm) over the night the clocks go forward (29 March 2026, 01:00 UTC)."""
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "nordljus", "Europe/Stockholm")
        other = new_shop(session, runtime, "elsewhere", "Europe/Stockholm")
        ledger = Ledger(session, shop)
        a = ledger.message("cart_recovery", utc("2026-03-28T22:59:59"))  # 23:59:59 CET, 28th
        b = ledger.message("cart_recovery", utc("2026-03-28T23:00:00"))  # 00:00 CET, 29th
        e = ledger.message("cart_recovery", utc("2026-03-29T00:30:00"))  # 01:30 CET
        f = ledger.message("welcome", utc("2026-03-29T01:30:00"))  # 03:30 CEST
        c = ledger.message("cart_recovery", utc("2026-03-29T21:59:59"))  # 23:59:59 CEST, 29th
        d = ledger.message("welcome", utc("2026-03-29T22:00:00"))  # 00:00 CEST, 30th
        # not sent, so counted nowhere: planned, held out, failed, handed
        for state in (MessageState.PLANNED, MessageState.SKIPPED, MessageState.FAILED):
            ledger.message("cart_recovery", utc("2026-03-29T10:00:00"), state=state)
        ledger.message("cart_recovery", utc("2026-03-27T10:00:00"))  # before the range
        ledger.click(b, utc("2026-03-29T08:00:00"))
        ledger.click(b, utc("2026-03-31T08:00:00"))  # twice, after the range: still one
        ledger.click(d, utc("2026-03-30T08:00:00"))
        ledger.open(a, utc("2026-03-29T08:00:00"))  # an open is not a click
        ledger.suppression(c, SuppressionReason.HARD_BOUNCE, SCOPE_ALL, "postmark:hard_bounce")
        ledger.suppression(e, SuppressionReason.UNSUBSCRIBED, SCOPE_MARKETING, "one_click")
        ledger.suppression(e, SuppressionReason.UNSUBSCRIBED, "reviews", "preferences")
        ledger.suppression(f, SuppressionReason.COMPLAINT, SCOPE_ALL, "postmark:complaint")
        ledger.credit(c, utc("2026-03-29T22:30:00"), "199.50")  # 00:30 on the 30th
        ledger.credit(b, utc("2026-03-29T09:00:00"), "0.10")
        ledger.credit(b, utc("2026-03-29T10:00:00"), "0.20")  # 0.1 + 0.2, exactly
        ledger.credit(a, utc("2026-03-28T12:00:00"), "100.25")
        ledger.credit(d, utc("2026-03-30T12:00:00"), "12.00", currency="EUR")
        ledger.order(utc("2026-03-29T12:00:00"), total="999.00")  # earned by no email
        # another shop's figures on the same days
        theirs = Ledger(session, other)
        theirs.click(
            theirs.message("cart_recovery", utc("2026-03-29T10:00:00")), utc("2026-03-29T11:00:00")
        )
        theirs.credit(
            theirs.message("welcome", utc("2026-03-29T10:00:00")),
            utc("2026-03-29T12:00:00"),
            "5000",
        )
        session.flush()
        return analytics.report(session, shop, date(2026, 3, 28), date(2026, 3, 30))


def test_each_email_counts_on_the_shops_own_day_across_the_spring_clock_change(
    spring: analytics.Report,
) -> None:
    cells = spring.cells
    assert cells[("cart_recovery", date(2026, 3, 28))].sent == 1
    assert cells[("cart_recovery", date(2026, 3, 29))].sent == 3
    assert cells[("welcome", date(2026, 3, 29))].sent == 1
    assert cells[("welcome", date(2026, 3, 30))].sent == 1
    assert spring.total().sent == 6


def test_clicked_bounced_unsubscribed_and_delivered_count_each_email_once(
    spring: analytics.Report,
) -> None:
    day = spring.cells[("cart_recovery", date(2026, 3, 29))]
    assert (day.clicked, day.bounced, day.unsubscribed, day.delivered) == (1, 1, 1, 2)
    assert spring.cells[("welcome", date(2026, 3, 30))].clicked == 1
    # a complaint is neither a bounce nor an unsubscribe; an open is not a click
    assert spring.cells[("welcome", date(2026, 3, 29))] == analytics.Figures(sent=1)
    assert spring.cells[("cart_recovery", date(2026, 3, 28))].clicked == 0


def test_orders_and_revenue_count_on_the_local_day_the_order_was_placed(
    spring: analytics.Report,
) -> None:
    assert spring.currency == "SEK"
    late = spring.cells[("cart_recovery", date(2026, 3, 30))]
    assert (late.orders, late.revenue, late.sent) == (1, Decimal("199.50"), 0)
    small = spring.cells[("cart_recovery", date(2026, 3, 29))]
    assert (small.orders, small.revenue) == (2, Decimal("0.30"))
    assert spring.cells[("cart_recovery", date(2026, 3, 28))].revenue == Decimal("100.25")
    euros = spring.cells[("welcome", date(2026, 3, 30))]
    assert (euros.orders, euros.revenue, dict(euros.other_revenue)) == (
        1,
        Decimal(0),
        {"EUR": Decimal("12.00")},
    )
    assert spring.by_flow()["cart_recovery"].revenue == Decimal("300.05")
    assert spring.total().orders == 5


def test_another_shops_figures_never_show(spring: analytics.Report) -> None:
    assert spring.total().revenue == Decimal("300.05")
    assert spring.total().clicked == 2


def test_every_day_of_the_range_is_listed_even_without_figures(spring: analytics.Report) -> None:
    days = spring.by_day()
    assert [day for day, _ in days] == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    assert [figures.sent for _, figures in days] == [1, 4, 1]


def test_one_flow_only(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "oneflow", "Europe/Stockholm")
        ledger = Ledger(session, shop)
        ledger.message("welcome", utc("2026-05-02T10:00:00"))
        ledger.credit(
            ledger.message("cart_recovery", utc("2026-05-02T10:00:00")),
            utc("2026-05-02T12:00:00"),
            "10",
        )
        found = analytics.report(session, shop, date(2026, 5, 1), date(2026, 5, 3), "welcome")
    assert set(found.by_flow()) == {"welcome"}
    assert found.total() == analytics.Figures(sent=1)


def test_the_autumn_day_of_25_hours_keeps_all_its_hours(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "autumn", "Europe/Stockholm")
        ledger = Ledger(session, shop)
        for at in (
            "2026-10-24T21:59:59",  # 23:59:59 CEST, 24th
            "2026-10-24T22:00:00",  # 00:00 CEST, 25th
            "2026-10-25T00:30:00",  # 02:30 CEST, the first 02:30
            "2026-10-25T01:30:00",  # 02:30 CET, the second
            "2026-10-25T22:59:59",  # 23:59:59 CET, 25th
            "2026-10-25T23:00:00",  # 00:00 CET, 26th
        ):
            ledger.message("welcome", utc(at))
        found = analytics.report(session, shop, date(2026, 10, 24), date(2026, 10, 26))
    assert [f.sent for _, f in found.by_day()] == [1, 4, 1]


def test_a_zone_half_an_hour_off_utc(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "mumbai", "Asia/Kolkata")
        ledger = Ledger(session, shop)
        ledger.message("welcome", utc("2026-06-01T18:29:59"))  # 23:59:59 IST
        ledger.message("welcome", utc("2026-06-01T18:30:00"))  # 00:00 IST, 2 June
        found = analytics.report(session, shop, date(2026, 6, 1), date(2026, 6, 2))
    assert [f.sent for _, f in found.by_day()] == [1, 1]


def test_a_shop_without_a_timezone_counts_utc_days(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "nozone", "")
        shop.timezone = None
        ledger = Ledger(session, shop)
        ledger.message("welcome", utc("2026-06-01T23:59:59"))
        ledger.message("welcome", utc("2026-06-02T00:00:00"))
        found = analytics.report(session, shop, date(2026, 6, 1), date(2026, 6, 2))
    assert found.zone == "UTC"
    assert [f.sent for _, f in found.by_day()] == [1, 1]


def test_sends_outside_the_ledger_are_never_counted(runtime: Runtime) -> None:
    """A "send me a test" is never a message; an email in any state but sent is not sent."""
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "tests", "Europe/Stockholm")
        ledger = Ledger(session, shop)
        for state in MessageState:
            if state != MessageState.SENT:
                ledger.message("welcome", utc("2026-06-01T10:00:00"), state=state)
        found = analytics.report(session, shop, date(2026, 6, 1), date(2026, 6, 1))
    assert found.total() == analytics.Figures()
    assert found.cells == {}


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        (date(2026, 6, 2), date(2026, 6, 1), "ends before it starts"),
        (date(2025, 1, 1), date(2026, 1, 2), "at most 366 days"),
    ],
)
def test_a_range_that_cannot_be_one_is_refused(
    runtime: Runtime, first: date, last: date, says: str
) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "ranges", "Europe/Stockholm")
        with pytest.raises(analytics.RangeError, match=says):
            analytics.report(session, shop, first, last)


def test_a_leap_years_366_days_are_one_range(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "leap", "America/New_York")
        Ledger(session, shop).message("welcome", utc("2028-12-31T12:00:00"))
        found = analytics.report(session, shop, date(2028, 1, 1), date(2028, 12, 31))
    assert len(found.by_day()) == 366
    assert found.by_day()[-1][1].sent == 1


def test_the_offsets_change_exactly_at_the_zones_transitions() -> None:
    zone = analytics.ZoneInfo("Europe/Stockholm")
    start, end = analytics.bounds(date(2026, 1, 1), date(2026, 12, 31), zone)
    assert analytics.offsets(start, end, zone) == [
        (utc("2025-12-31T23:00:00"), 3600),
        (utc("2026-03-29T01:00:00"), 7200),
        (utc("2026-10-25T01:00:00"), 3600),
    ]


# --- the holdout's lift ------------------------------------------------------------


def test_newcombes_interval_on_his_own_example() -> None:
    """Newcombe (1998), table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339."""
    low, high = Lift("welcome", 70, 56, 80, 48).interval() or (0, 0)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))


@pytest.mark.parametrize(
    ("measured", "verdict", "words"),
    [
        (Lift("f", 70, 56, 80, 48), Verdict.MORE_ORDERS, "About 33 % more orders"),
        (Lift("f", 200, 10, 200, 30), Verdict.FEWER_ORDERS, "About 67 % fewer orders"),
        (Lift("f", 100, 40, 100, 38), Verdict.NOT_ENOUGH_DATA, "Not enough data yet"),
        (Lift("f", 10, 9, 10, 0), Verdict.NOT_ENOUGH_DATA, "Not enough data yet"),  # small
        (Lift("f", 50, 0, 0, 0), Verdict.NOT_ENOUGH_DATA, "Not enough data yet"),  # no holdout
        (Lift("f", 100, 30, 100, 0), Verdict.MORE_ORDERS, "More orders than without"),
    ],
)
def test_the_lifts_verdict_in_plain_words(measured: Lift, verdict: Verdict, words: str) -> None:
    assert measured.verdict == verdict
    assert measured.words.startswith(words)


def test_flow_summaries_give_every_flow_its_30_days_and_a_holdouts_lift(
    runtime: Runtime,
) -> None:
    at = utc("2026-06-30T12:00:00")
    with runtime.sessions.begin() as session:
        shop = new_shop(session, runtime, "summary", "Europe/Stockholm")
        ledger = Ledger(session, shop)
        sent = ledger.message("cart_recovery", utc("2026-06-20T10:00:00"))
        ledger.click(sent, utc("2026-06-20T11:00:00"))
        ledger.credit(sent, utc("2026-06-20T12:00:00"), "250.00")
        ledger.message("cart_recovery", utc("2026-05-31T21:59:59"))  # 30 May local: too old
        ledger.message("cart_recovery", utc("2026-05-31T22:00:00"))  # 1 June: the first day
        for n in range(40):  # 20 of 40 mailed ordered, 4 of 40 held out
            for holdout, ordered in ((False, n < 20), (True, n < 4)):
                contact = ledger.contact()
                ledger.enrollment("welcome", utc("2026-06-10T10:00:00"), contact, holdout)
                if ordered:
                    ledger.order(utc("2026-06-11T10:00:00"), contact)
        summaries = analytics.flow_summaries(session, shop, at=at)
    cart = summaries["cart_recovery"]
    assert (cart.figures.sent, cart.figures.clicked, cart.figures.orders) == (2, 1, 1)
    assert cart.figures.revenue == Decimal("250.00")
    assert cart.lift is None
    welcome = summaries["welcome"]
    assert welcome.figures == analytics.Figures()
    assert welcome.lift is not None
    assert (welcome.lift.treated, welcome.lift.treated_converted) == (40, 20)
    assert (welcome.lift.holdout, welcome.lift.holdout_converted) == (40, 4)
    assert welcome.lift.verdict == Verdict.MORE_ORDERS
    assert "birthday" in summaries  # every flow has its line, figures or not


def test_revenue_reads_the_same_on_both_databases(spring: analytics.Report) -> None:
    """At least cents' places (SQLite sums whole millionths, PostgreSQL its NUMERIC)."""
    late = spring.cells[("cart_recovery", date(2026, 3, 30))]
    assert str(late.revenue) == "199.50"
    assert str(spring.cells[("cart_recovery", date(2026, 3, 29))].revenue) == "0.30"
    assert str(spring.by_flow()["cart_recovery"].revenue) == "300.05"
