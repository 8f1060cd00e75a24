"""Shopify's privacy webhooks really export, erase and delete (through intake and a worker)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.engine import suppressions
from jobs.runtime import Runtime
from jobs.store.models import (
    Base,
    Contact,
    Decision,
    Engagement,
    Enrollment,
    Message,
    PrivacyRequest,
    Shop,
    ShopStatus,
    now,
)
from tests.connector.test_fixture_deliveries import deliver, topic_of
from tests.connector.test_merchant import sign_in
from tests.support import FIXTURES, SHOPIFY_SHOP, dumps, run_worker

ASTRID = "astrid.lindqvist@example.se"
TRACES = (ASTRID, "lindqvist", "+46701234567", "7012345", "Storgatan")
HISTORY = (
    "checkouts_create__customer",
    "checkouts_update__completed",
    "orders_create__customer",
    "orders_paid__customer",
    "orders_fulfilled__shipped",
    "fulfillments_update__delivered",
    "checkouts_update__guest",  # somebody else, who must be left alone
)


def send(client: FlaskClient, runtime: Runtime, *names: str, prefix: str = "d") -> None:
    for n, name in enumerate(names):
        path = FIXTURES / "shopify" / f"{name}.json"
        deliver(client, "shopify", topic_of("shopify", path), path.read_bytes(), f"{prefix}-{n}")
    run_worker(runtime)


def everything(runtime: Runtime) -> str:
    """Every value of every row of every table, as one lower-case text to search."""
    parts: list[str] = []
    with runtime.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    parts.append(str(value))
    return "\n".join(parts).lower()


def what_the_engine_wrote(runtime: Runtime) -> int:
    """A sent reminder with its decision, click and unsubscribe, as the engine records them."""
    at = now()
    with runtime.sessions.begin() as session:
        contact = session.scalars(select(Contact).where(Contact.email == ASTRID)).one()
        enrollment = Enrollment(
            shop_id=contact.shop_id,
            flow="cart_recovery",
            key="cart_recovery:tok",
            subject="tok",
            contact_id=contact.id,
            state="completed",
            holdout=False,
            anchor_at=at,
            entered_at=at,
            step_index=3,
            context={"first_name": "Astrid", "email": ASTRID},
        )
        session.add(enrollment)
        session.flush()
        message = Message(
            shop_id=contact.shop_id,
            enrollment_id=enrollment.id,
            contact_id=contact.id,
            dedupe_key="k1",
            flow="cart_recovery",
            step="email_1",
            template="cart_recovery_1",
            kind="marketing",
            state="sent",
            due_at=at,
            planned_at=at,
            expires_at=at + timedelta(days=1),
            sent_at=at,
            email_to=ASTRID,
            subject_line="Astrid Lindqvist, your cart is waiting",
            data={"first_name": "Astrid", "last_name": "Lindqvist"},
        )
        session.add(message)
        session.flush()
        session.add(
            Decision(
                shop_id=contact.shop_id,
                message_id=message.id,
                contact_id=contact.id,
                flow="cart_recovery",
                step="email_1",
                outcome="sent",
                at=at,
                detail={"to": ASTRID},
            )
        )
        session.add(
            Engagement(
                shop_id=contact.shop_id,
                message_id=message.id,
                contact_id=contact.id,
                kind="click",
                url=f"https://nordljus.se/cart?email={ASTRID}",
                at=at,
            )
        )
        suppressions.suppress(
            session,
            contact.shop_id,
            ASTRID,
            scope="marketing",
            reason="unsubscribed",
            source="one_click",
            at=at,
            message_id=message.id,
        )
        return contact.id


def test_data_request_exports_what_we_hold_to_the_merchant(
    client: FlaskClient, runtime: Runtime
) -> None:
    send(client, runtime, *HISTORY)
    what_the_engine_wrote(runtime)
    send(client, runtime, "customers_data_request__customer", prefix="p")
    with runtime.sessions() as session:
        request = session.scalars(select(PrivacyRequest)).one()
        shop_id = request.shop_id
    assert request.reference == "9912345"
    export: dict[str, Any] = request.export or {}
    [person] = export["contacts"]
    assert person["contact"]["email"] == ASTRID
    assert {o["name"] for o in person["orders"]} == {"#1042"}
    assert "Astrid Lindqvist, your cart is waiting" in {e["subject"] for e in person["emails"]}
    assert person["suppressions"][0]["reason"] == "unsubscribed"

    sign_in(client, shop_id + 1)  # another shop's merchant
    assert client.get(f"/app/privacy/{request.id}.json").status_code == 404
    sign_in(client, shop_id)
    assert "Download the export" in client.get("/app/privacy").get_data(as_text=True)
    download = client.get(f"/app/privacy/{request.id}.json")
    assert download.status_code == 200
    assert download.json == export
    # the export's old address (in mail the merchant sent on) still answers
    assert client.get(f"/settings/privacy/{request.id}.json").json == export

    # uninstalled: the merchant's session ends with the shop's access
    send(client, runtime, "app_uninstalled__shop", prefix="u")
    assert client.get(f"/app/privacy/{request.id}.json").status_code == 401
    assert client.get("/settings").status_code == 401


def test_customer_redact_leaves_no_trace_of_her_anywhere(
    client: FlaskClient, runtime: Runtime
) -> None:
    send(client, runtime, *HISTORY)
    contact_id = what_the_engine_wrote(runtime)
    send(client, runtime, "customers_data_request__customer", prefix="p")
    assert all(trace.lower() in everything(runtime) for trace in TRACES[:3])

    send(client, runtime, "customers_redact__customer", prefix="r")

    stored = everything(runtime)
    for trace in TRACES:
        assert trace.lower() not in stored, trace
    assert "jonas.berg@example.com" in stored  # the other customer is untouched
    with runtime.sessions() as session:
        contact = session.get_one(Contact, contact_id)
        assert contact.redacted_at is not None
        assert contact.consent_state == "redacted"
        # her unsubscribe still holds if the address ever comes back
        assert suppressions.scopes_for(session, contact.shop_id, ASTRID) == {"marketing"}
        redact = session.scalars(
            select(PrivacyRequest).where(PrivacyRequest.kind == "customer_redact")
        ).one()
        assert redact.detail["deliveries"] >= len(HISTORY) - 1
        export = session.scalars(
            select(PrivacyRequest).where(PrivacyRequest.kind == "data_request")
        ).one()
        assert export.export is None
    sign_in(client, contact.shop_id)
    assert client.get(f"/app/privacy/{export.id}.json").status_code == 410


def test_shop_redact_deletes_the_uninstalled_shop_and_nothing_else(
    client: FlaskClient, runtime: Runtime
) -> None:
    send(client, runtime, *HISTORY)
    what_the_engine_wrote(runtime)
    send(client, runtime, "shop_redact__shop", prefix="early")
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        assert shop.status == ShopStatus.ACTIVE  # installed: a stray request erases nothing
        kept = session.scalars(select(PrivacyRequest)).one()
        assert kept.detail == {"kept": "the shop is installed"}

    send(client, runtime, "app_uninstalled__shop", prefix="u")
    send(client, runtime, "shop_redact__shop", prefix="late")
    with runtime.sessions() as session:
        assert session.scalars(select(Shop.key)).all() == ["butik.example.se"]
    stored = everything(runtime)
    assert SHOPIFY_SHOP not in stored
    assert ASTRID not in stored
    assert "jonas.berg" not in stored


def test_deliveries_behind_a_shop_redact_in_one_batch_go_with_the_shop(
    client: FlaskClient, runtime: Runtime
) -> None:
    """The erasure and the deliveries stored after it are drained together: the
    ones behind it are erased with the shop, not applied to a shop that is gone."""
    send(client, runtime, *HISTORY)
    send(
        client,
        runtime,
        "app_uninstalled__shop",
        "shop_redact__shop",
        "checkouts_create__customer",
        prefix="batch",
    )
    with runtime.sessions() as session:
        assert session.scalars(select(Shop.key)).all() == ["butik.example.se"]
    assert ASTRID not in everything(runtime)
    assert runtime.queue("intake").count == 0  # no retry jobs for vanished deliveries
    assert not runtime.queue("intake").scheduled_job_registry.get_job_ids()


def test_a_redact_for_someone_we_never_saw_is_recorded_and_harmless(
    client: FlaskClient, runtime: Runtime
) -> None:
    body = dumps(
        {
            "shop_id": 71234567890,
            "shop_domain": SHOPIFY_SHOP,
            "customer": {"id": 1, "email": "nobody@example.se", "phone": None},
            "orders_to_redact": [],
        }
    )
    deliver(client, "shopify", "customers/redact", body, "x-1")
    run_worker(runtime)
    with runtime.sessions() as session:
        [request] = session.scalars(select(PrivacyRequest)).all()
    assert request.detail["contacts"] == 0
    assert "nobody@example.se" not in everything(runtime)


def test_an_erased_address_keeps_the_hash_it_was_stored_under() -> None:
    """Suppressions of erased customers are kept only as this hash: it must not change
    with the way addresses are normalised, or a bounce would stop holding."""
    stored = "sha256:5afcaa580f393499308ec69512461d002c55cc4844036eea52cd1cdce5478a72"
    assert suppressions.erased_form(" Straße@Bücher.EXAMPLE ") == stored
