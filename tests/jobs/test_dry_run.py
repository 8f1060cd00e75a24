"""A dry run on the shop's own history: the log that real webhooks left, replayed
through the real engine in a scratch store, the real store untouched."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters import events as ev
from connector.cli import main
from jobs.dry_run import DryRun, LeftOut, dry_run
from jobs.intake import apply, contacts_import, deliveries
from jobs.runtime import Runtime
from jobs.shop_settings import SettingsError
from jobs.store.models import (
    Contact,
    Decision,
    Delivery,
    Enrollment,
    Message,
    Order,
    Shop,
    StoredEvent,
    Suppression,
)
from tests.support import (
    FIXTURES,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    count,
    dumps,
    post,
    shopify_headers,
)

#: the window's end: 14:00 in Stockholm, where the fixtures' customers live (UTC+2)
UNTIL = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SUBSCRIBED = {
    "state": "subscribed",
    "opt_in_level": "single_opt_in",
    "consent_updated_at": "2026-01-10T12:00:00+00:00",
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "shopify" / f"{name}.json").read_text())
    return data


class LoggedShop:
    """The Shopify shop of the ``client`` fixture, fed real-shaped webhooks."""

    def __init__(self, client: FlaskClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        self.sent = 0
        with runtime.sessions() as session:
            self.id = session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()

    def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        self.sent += 1
        body = dumps(payload)
        headers = shopify_headers(topic, body, SHOPIFY_SECRET, SHOPIFY_SHOP, f"wh-{self.sent}")
        assert post(self.client, "shopify", body, headers).status_code == 200

    def checkout(
        self, n: int, at: datetime, *, token: str | None = None, guest: bool = False
    ) -> str:
        """Customer ``n`` leaves a checkout (a subscribed customer; or a guest, no consent)."""
        token = token or f"{n:04d}{int(at.timestamp())}"
        payload = fixture("checkouts_create__customer")
        email = f"kund{n}@example.se"
        payload.update(
            token=token,
            cart_token=f"cart-{token}",
            email=email,
            created_at=at.isoformat(),
            updated_at=at.isoformat(),
        )
        if guest:
            payload["customer"] = None
        else:
            payload["customer"].update(
                id=8000 + n,
                email=email,
                updated_at=at.isoformat(),
                email_marketing_consent=SUBSCRIBED,
            )
        self.deliver("checkouts/update", payload)
        return token

    def order(
        self,
        n: int,
        number: int,
        at: datetime,
        *,
        paid: bool = True,
        checkout: str | None = None,
    ) -> None:
        """Customer ``n`` places order ``number`` (paid at once, or not yet)."""
        payload = fixture("orders_paid__customer")
        order_id = 6_000_000 + number
        email = f"kund{n}@example.se"
        payload.update(
            id=order_id,
            admin_graphql_api_id=f"gid://shopify/Order/{order_id}",
            name=f"#{number}",
            order_number=number,
            number=number,
            checkout_token=checkout,
            cart_token=None,
            email=email,
            contact_email=email,
            created_at=at.isoformat(),
            updated_at=at.isoformat(),
            processed_at=at.isoformat(),
            financial_status="paid" if paid else "pending",
        )
        payload["customer"].update(
            id=8000 + n, email=email, updated_at=at.isoformat(), email_marketing_consent=SUBSCRIBED
        )
        self.deliver("orders/paid" if paid else "orders/create", payload)

    def drain(self) -> None:
        """The intake applies what came, as a worker's drain does."""
        deliveries.drain(self.runtime, self.id)
        with self.runtime.sessions() as session:
            failed = session.scalars(select(Delivery.error).where(Delivery.status != "processed"))
            assert list(failed) == []

    def dry_run(self, days: int = 30, **kwargs: Any) -> DryRun:
        return dry_run(self.runtime.reads, self.id, days=days, until=UNTIL, **kwargs)

    def counts(self) -> dict[str, int]:
        with self.runtime.sessions() as session:
            return {
                model.__tablename__: count(session, model)
                for model in (Contact, Decision, Enrollment, Message, Order, StoredEvent, Shop)
            }


@pytest.fixture
def shop(client: FlaskClient, runtime: Runtime) -> LoggedShop:
    return LoggedShop(client, runtime)


@pytest.fixture
def no_http() -> Iterator[responses.RequestsMock]:
    """Any HTTP call (a platform, an email API) would fail here and be seen."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
    assert len(mock.calls) == 0


def sent(result: DryRun) -> dict[tuple[str, str], int]:
    return {(s.flow, s.step): s.count for s in result.sent}


def after(result: DryRun) -> dict[tuple[str, str], int]:
    return {(s.flow, s.step): s.count for s in result.after}


def days_before(days: float, hour: int = 9) -> datetime:
    """``days`` before the window's end, at ``hour`` UTC."""
    return (UNTIL - timedelta(days=days)).replace(hour=hour, minute=0)


# --- what the log implies -------------------------------------------------------------


def test_the_dry_run_projects_the_cart_reminders_the_log_implies(
    shop: LoggedShop, runtime: Runtime, no_http: responses.RequestsMock
) -> None:
    shop.checkout(1, days_before(10))  # she never comes back: three reminders
    bought = shop.checkout(2, days_before(5))
    shop.order(2, 1001, days_before(5) + timedelta(minutes=30), paid=False, checkout=bought)
    shop.checkout(3, UNTIL - timedelta(hours=3))  # the first reminder just in time
    shop.drain()
    before = shop.counts()

    result = shop.dry_run()

    assert sent(result) == {
        ("cart_recovery", "email_1"): 2,
        ("cart_recovery", "email_2"): 1,
        ("cart_recovery", "email_3"): 1,
    }
    # the late checkout's second and third reminders are due after the window
    assert after(result) == {("cart_recovery", "email_2"): 1, ("cart_recovery", "email_3"): 1}
    assert result.sent_by_flow() == {"cart_recovery": 4}
    # the one who bought got nothing: her three reminders ended with the order
    assert result.not_sent == {"exited": {"checkout_completed": 3}}
    assert result.contacts_reached == 2
    assert result.most_to_one_contact == 3
    assert result.busiest_contact_id is not None
    with runtime.sessions() as session:
        busiest = session.get_one(Contact, result.busiest_contact_id)
        assert busiest.email == "kund1@example.se"
    assert result.events_in_window == 4
    assert result.events_before == 0
    assert not result.proposed

    # the real store is as it was, and nothing was sent or asked
    assert shop.counts() == before
    assert not list(runtime.settings.outbox_dir.glob("*"))


def test_proposed_settings_change_the_projection_and_are_not_saved(shop: LoggedShop) -> None:
    shop.checkout(1, days_before(10))
    shop.checkout(3, UNTIL - timedelta(hours=3))
    shop.drain()
    with shop.runtime.sessions() as session:
        stored = session.get_one(Shop, shop.id).settings

    slower = shop.dry_run(
        settings={"flows": {"cart_recovery": {"delay_1_hours": 5, "email_3": False}}}
    )
    assert slower.proposed
    # the late checkout's first reminder now falls after the window; no third reminder
    assert sent(slower) == {("cart_recovery", "email_1"): 1, ("cart_recovery", "email_2"): 1}
    assert after(slower) == {("cart_recovery", "email_1"): 1, ("cart_recovery", "email_2"): 1}

    off = shop.dry_run(settings={"flows": {"cart_recovery": {"enabled": False}}})
    assert off.sent == []
    assert off.after == []
    assert off.contacts_reached == 0
    assert off.most_to_one_contact == 0

    with shop.runtime.sessions() as session:
        assert session.get_one(Shop, shop.id).settings == stored


def test_invalid_proposed_settings_are_refused_in_the_merchant_s_words(shop: LoggedShop) -> None:
    shop.checkout(1, days_before(10))
    shop.drain()
    with pytest.raises(SettingsError) as refused:
        shop.dry_run(settings={"flows": {"cart_recovery": {"delay_1_hours": -4}}})
    assert [p.where for p in refused.value.problems] == ["flows.cart_recovery.delay_1_hours"]


def test_orders_before_the_window_bring_a_loyalty_milestone_into_it(shop: LoggedShop) -> None:
    shop.order(4, 2001, days_before(60))
    shop.order(4, 2002, days_before(45))
    shop.order(4, 2003, days_before(10))  # her third paid order: the first milestone
    shop.order(5, 2004, days_before(10))  # another's first: no milestone
    shop.drain()

    result = shop.dry_run()
    assert result.events_before > 0
    assert result.events_in_window == 2  # her own and another's first order
    assert sent(result).get(("loyalty", "reward")) == 1
    # the thank-you for that order is the reward: the thank-you flow sends none beside it
    assert result.not_sent["exited"] == {"rewarded": 1}
    assert result.not_sent_by_flow == {"thank_you": {"exited": {"rewarded": 1}}}
    assert result.contacts_reached == 2  # the other gets her thank-you


def test_quiet_hours_and_caps_are_counted_as_deferrals(shop: LoggedShop) -> None:
    shop.checkout(5, days_before(8, hour=20))  # 22:00 in Stockholm: the reminder waits
    shop.checkout(6, days_before(6))
    shop.checkout(6, days_before(6) + timedelta(hours=2))  # a second cart, soon after
    shop.drain()

    result = shop.dry_run()
    # each email held back at least once, by the reason; the second cart's reminders
    # met the gap and the weekly cap, and some never found a slot
    assert result.deferred == {"cap:gap": 3, "quiet_hours": 3}
    assert result.not_sent == {"expired": {"cap:gap": 1, "cap:weekly": 2}}
    # the flow editor shows one flow's: here every one is the cart recovery's
    assert result.deferred_by_flow == {"cart_recovery": result.deferred}
    assert result.not_sent_by_flow == {"cart_recovery": result.not_sent}
    assert result.contacts_reached == 2
    assert result.most_to_one_contact == 3


def test_what_no_event_carries_is_copied_from_the_store(shop: LoggedShop, runtime: Runtime) -> None:
    shop.checkout(7, days_before(10), guest=True)  # a guest: the log says nothing of consent
    shop.drain()
    assert shop.dry_run().not_sent["skipped"] == {"no_consent": 3}

    csv = (
        "email,birthday,consent,consent_source,consent_at\n"
        "kund7@example.se,1990-05-17,subscribed,in-store sign-up,2026-08-01\n"
    )
    with runtime.sessions() as session:
        real = session.get_one(Shop, shop.id)
        session.expunge(real)
    contacts_import.run(runtime.sessions, real, lambda: io.BytesIO(csv.encode()), dry_run=False)

    result = shop.dry_run()
    assert result.copied == {"birthday": 1, "consent": 1}
    assert sent(result)[("cart_recovery", "email_1")] == 1


def test_suppressions_are_copied_and_hold(shop: LoggedShop, runtime: Runtime) -> None:
    shop.checkout(1, days_before(10))
    shop.drain()
    with runtime.sessions.begin() as session:
        session.add(
            Suppression(
                shop_id=shop.id,
                email="kund1@example.se",
                scope="marketing",
                reason="unsubscribed",
                source="unsubscribe_link",
            )
        )
    result = shop.dry_run()
    assert result.copied == {"suppressions": 1}
    assert result.sent == []
    assert result.not_sent["skipped"] == {"suppressed:marketing": 3}


def test_an_erased_customer_is_left_out_of_the_replay(shop: LoggedShop) -> None:
    shop.checkout(1, days_before(10))
    shop.checkout(2, days_before(9))
    redact = fixture("customers_redact__customer")
    redact["customer"] = {"id": 8001, "email": "kund1@example.se", "phone": None}
    redact["orders_to_redact"] = []
    shop.deliver("customers/redact", redact)
    shop.drain()

    result = shop.dry_run()
    assert result.left_out[LeftOut.ERASED] >= 1
    assert result.left_out[LeftOut.PRIVACY] == 1
    assert result.contacts_reached == 1
    assert result.sent_by_flow() == {"cart_recovery": 3}


def test_time_based_facts_in_the_log_are_left_to_the_daily_scans(
    shop: LoggedShop, runtime: Runtime
) -> None:
    shop.checkout(1, days_before(10))
    shop.drain()
    with runtime.sessions.begin() as session:
        real = session.get_one(Shop, shop.id)
        came = ev.BirthdayCame(
            occurred_at=days_before(3),
            contact=ev.ContactRef(customer_id="8001", email=None),
            on=days_before(3).date(),
        )
        apply.apply(session, real, came, delivery_id=None, at=days_before(3))
    result = shop.dry_run()
    assert result.left_out == {LeftOut.FACT: 1}
    assert result.events_in_window == 1
    assert result.sent_by_flow() == {"cart_recovery": 3}


# --- the command ----------------------------------------------------------------------


def _env(runtime: Runtime) -> dict[str, str]:
    settings = runtime.settings
    return {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
    }


UNTIL_ARG = ["--until", UNTIL.strftime("%Y-%m-%dT%H:%M:%S")]


def test_simulate_shop_prints_counts_and_never_an_address(
    shop: LoggedShop, runtime: Runtime
) -> None:
    shop.checkout(1, days_before(10))
    shop.checkout(3, UNTIL - timedelta(hours=3))
    shop.drain()
    result = CliRunner().invoke(
        main, ["simulate", "--shop", SHOPIFY_SHOP, "--days", "30", *UNTIL_ARG], env=_env(runtime)
    )
    assert result.exit_code == 0, result.output
    assert "@" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"dry run of {SHOPIFY_SHOP}: 2026-09-01 12:00 to 2026-10-01 12:00")
    assert any(line.split() == ["cart_recovery", "4", "2"] for line in lines), result.output
    assert any(line.split() == ["email_1", "2", "0"] for line in lines)
    assert any(line.split() == ["total", "4", "2"] for line in lines)
    assert "the most any one would get: 3" in result.output

    as_json = CliRunner().invoke(
        main, ["simulate", "--shop", str(shop.id), "--json", *UNTIL_ARG], env=_env(runtime)
    )
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.output)
    assert payload["sent"]["cart_recovery"] == {"email_1": 2, "email_2": 1, "email_3": 1}
    assert payload["would_be_sent_after"] == {"cart_recovery": {"email_2": 1, "email_3": 1}}
    assert payload["most_to_one_contact"] == 3
    assert payload["settings"] == "stored"


def test_simulate_shop_shows_the_window_in_the_shop_s_time_zone(
    shop: LoggedShop, runtime: Runtime
) -> None:
    """--until is given in UTC; the merchant reads the window on the shop's clock."""
    shop.checkout(1, days_before(10))
    shop.drain()
    args = ["simulate", "--shop", SHOPIFY_SHOP, "--days", "30", *UNTIL_ARG]
    in_utc = CliRunner().invoke(main, args, env=_env(runtime))
    assert in_utc.exit_code == 0, in_utc.output
    assert in_utc.output.splitlines()[0].startswith(
        f"dry run of {SHOPIFY_SHOP}: 2026-09-01 12:00 to 2026-10-01 12:00 UTC, "
    )
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop.id).timezone = "Europe/Stockholm"
    local = CliRunner().invoke(main, args, env=_env(runtime))
    assert local.exit_code == 0, local.output
    assert local.output.splitlines()[0].startswith(
        f"dry run of {SHOPIFY_SHOP}: 2026-09-01 14:00 to 2026-10-01 14:00 CEST, "
    )


def test_simulate_shop_with_settings(shop: LoggedShop, runtime: Runtime, tmp_path: Path) -> None:
    shop.checkout(1, days_before(10))
    shop.drain()
    proposed = tmp_path / "proposed.json"
    proposed.write_text(json.dumps({"flows": {"cart_recovery": {"email_2": False}}}))
    result = CliRunner().invoke(
        main,
        ["simulate", "--shop", SHOPIFY_SHOP, "--settings", str(proposed), "--json", *UNTIL_ARG],
        env=_env(runtime),
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["settings"] == "proposed"
    assert payload["sent"] == {"cart_recovery": {"email_1": 1, "email_3": 1}}


def test_simulate_shop_refuses_bad_settings_with_exit_code_2(
    shop: LoggedShop, runtime: Runtime, tmp_path: Path
) -> None:
    shop.drain()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"engine": {"quiet_start": "25:99"}, "flows": {"nope": {}}}))
    result = CliRunner().invoke(
        main, ["simulate", "--shop", SHOPIFY_SHOP, "--settings", str(bad)], env=_env(runtime)
    )
    assert result.exit_code == 2, result.output
    assert f"{SHOPIFY_SHOP}: engine.quiet_start:" in result.output
    assert "nothing simulated: 2 bad settings" in result.output
    assert "Traceback" not in result.output

    not_json = tmp_path / "not.json"
    not_json.write_text("{flows")
    result = CliRunner().invoke(
        main, ["simulate", "--shop", SHOPIFY_SHOP, "--settings", str(not_json)], env=_env(runtime)
    )
    assert result.exit_code == 2
    assert "is not JSON" in result.output


def test_simulate_takes_a_scenario_or_a_shop_not_both_nor_neither(
    shop: LoggedShop, runtime: Runtime
) -> None:
    scenario = str(Path(__file__).parents[2] / "examples" / "cart_recovery.json")
    both = CliRunner().invoke(
        main, ["simulate", scenario, "--shop", SHOPIFY_SHOP], env=_env(runtime)
    )
    assert both.exit_code == 2
    assert "not both or neither" in both.output
    neither = CliRunner().invoke(main, ["simulate"], env=_env(runtime))
    assert neither.exit_code == 2
    stray = CliRunner().invoke(main, ["simulate", scenario, "--days", "7"], env=_env(runtime))
    assert stray.exit_code == 2
    assert "go with --shop" in stray.output
    unknown = CliRunner().invoke(
        main, ["simulate", "--shop", "nope.myshopify.com"], env=_env(runtime)
    )
    assert unknown.exit_code == 1
    assert "no shop" in unknown.output
