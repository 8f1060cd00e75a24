"""The onboarding checklist says what a shop still lacks, per platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from jobs import onboarding, shop_settings
from jobs.merchant.notices import open_notices, raise_notice
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Contact, HistoryImport, HistoryStatus, Shop
from tests.support import SHOPIFY_SHOP, STORE, WOO_SECRET

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def steps(session: Session, shop: Shop) -> dict[str, onboarding.Item]:
    return {item.code: item for item in onboarding.checklist(session, shop)}


def shopify_shop(session: Session, runtime: Runtime) -> Shop:
    return add_shop(session, runtime.secrets, "shopify", SHOPIFY_SHOP, currency="SEK")


def woo_store(session: Session, runtime: Runtime) -> Shop:
    return add_shop(
        session, runtime.secrets, "woocommerce", STORE, webhook_secret=WOO_SECRET, currency="SEK"
    )


def test_a_new_shopify_shop_is_told_what_is_missing(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        found = steps(session, shopify_shop(session, runtime))
    assert list(found) == [
        "sender",
        "postal_address",
        "own_cart_email_off",
        "flow_on",
        "history",
        "connection",
    ]
    assert [code for code, item in found.items() if not item.done] == [
        "sender",
        "postal_address",
        "own_cart_email_off",
        "history",
    ]
    reminder = found["own_cart_email_off"]
    assert reminder.tickable
    assert reminder.text == (
        "Turn off Shopify's own abandoned checkout email, so customers don't get two reminders"
    )
    assert found["sender"].fix == onboarding.SETTINGS_PAGE
    assert "consent_source" not in found  # Shopify has its own consent field


def test_sender_postal_address_and_flows_come_from_the_settings(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = shopify_shop(session, runtime)
        shop_settings.update(session, shop, {"sender": {"name": "Nordljus"}})
        assert not steps(session, shop)["sender"].done  # a name without an address
        shop_settings.update(
            session,
            shop,
            {
                "sender": {"address": "hej@nordljus.se"},
                "branding": {"postal_address": "Storgatan 1, 111 22 Stockholm"},
                "flows": {name: {"enabled": False} for name in shop_settings.registry.flows()},
            },
        )
        found = steps(session, shop)
    assert found["sender"].done
    assert found["postal_address"].done
    assert not found["flow_on"].done
    assert found["flow_on"].fix == onboarding.OVERVIEW_PAGE


def test_the_merchant_ticks_the_platforms_own_email_off_and_can_untick_it(
    runtime: Runtime,
) -> None:
    with runtime.sessions.begin() as session:
        shop = shopify_shop(session, runtime)
        onboarding.tick(session, shop, "own_cart_email_off", True, AT)
        assert steps(session, shop)["own_cart_email_off"].done
        assert open_notices(session, shop.id) == []
        onboarding.tick(session, shop, "own_cart_email_off", True, AT)  # twice: the same
        assert steps(session, shop)["own_cart_email_off"].done
        onboarding.tick(session, shop, "own_cart_email_off", False, AT + timedelta(days=1))
        found = steps(session, shop)
        [notice] = open_notices(session, shop.id)
    assert not found["own_cart_email_off"].done
    assert "Turn off Shopify's own abandoned checkout email" in notice.message
    assert found["connection"].done  # the reminder is not a connection problem


@pytest.mark.parametrize("code", ["sender", "consent_source", "nonsense"])
def test_only_a_tickable_step_of_the_shops_platform_is_ticked(runtime: Runtime, code: str) -> None:
    with runtime.sessions.begin() as session:
        shop = shopify_shop(session, runtime)
        with pytest.raises(onboarding.ChecklistError):
            onboarding.tick(session, shop, code, True, AT)


def test_a_woocommerce_store_is_asked_for_its_consent_checkbox(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = woo_store(session, runtime)
        found = steps(session, shop)
        assert not found["consent_source"].done
        assert "own_cart_email_off" not in found
        with pytest.raises(onboarding.ChecklistError):
            onboarding.tick(session, shop, "own_cart_email_off", True, AT)
        # assumed consent, or our own resubscribe, is no checkbox at work
        for n, source in enumerate(("woocommerce:assumed", "triggerpost:preferences")):
            session.add(
                Contact(
                    shop_id=shop.id,
                    email=f"a{n}@example.com",
                    consent_state="subscribed",
                    consent_source=source,
                )
            )
        session.flush()
        assert not steps(session, shop)["consent_source"].done
        session.add(
            Contact(
                shop_id=shop.id,
                email="b@example.com",
                consent_state="subscribed",
                consent_source="woocommerce:order",
            )
        )
        session.flush()
        assert steps(session, shop)["consent_source"].done


def test_saving_the_consent_settings_counts_as_telling_where_consent_is(
    runtime: Runtime,
) -> None:
    with runtime.sessions.begin() as session:
        shop = woo_store(session, runtime)
        shop_settings.update(session, shop, {"consent": {"meta_key": "newsletter_optin"}})
        assert steps(session, shop)["consent_source"].done


def test_history_and_connection(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = shopify_shop(session, runtime)
        row = HistoryImport(shop_id=shop.id, since=AT - timedelta(days=730))
        session.add(row)
        session.flush()
        assert not steps(session, shop)["history"].done
        row.status = HistoryStatus.DONE
        raise_notice(session, shop.id, "webhook_disabled", "A webhook was disabled", AT)
        found = steps(session, shop)
    assert found["history"].done
    assert not found["connection"].done
    assert found["connection"].text.endswith("(1)")
    assert found["connection"].fix == onboarding.HEALTH_PAGE
