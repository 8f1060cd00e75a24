"""What the browser tests put in a shop before they open its pages: Shopify session
tokens made the way App Bridge's are, and an order our email earned, through the engine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.store.models import Attribution, Engagement, now
from tests.jobs.engine_support import T0, Harness, checkout, customer, hours, order

#: the app's client id as the live server's settings name it (a session token's audience)
API_KEY = "triggerpost-test-client-id"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def session_token(
    secret: str,
    shop: str,
    *,
    audience: str = API_KEY,
    at: datetime | None = None,
    lasts: timedelta = timedelta(minutes=1),
) -> str:
    """A Shopify session token (HS256 JWT) as App Bridge hands one to the app's page:
    issued by the shop's admin, for the shop, for this app, valid for a minute."""
    issued = int((at or now()).timestamp())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": audience,
        "sub": "74823947",
        "exp": issued + int(lasts.total_seconds()),
        "nbf": issued,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "sid": uuid.uuid4().hex,
    }
    signing = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


#: the order the cart reminder earned: placed two days after the checkout (SEK)
EARNED = Decimal("499.00")


def earned_order(runtime: Runtime) -> Harness:
    """A shop (engine-test.myshopify.com) whose cart reminder was sent, clicked and
    followed by the order: one attribution of 499 SEK to cart_recovery, in March 2026."""
    shop = Harness(runtime)
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    first = shop.messages()[0]  # the first reminder; the later ones wait
    with runtime.sessions.begin() as session:
        session.add(
            Engagement(
                shop_id=shop.shop_id,
                message_id=first.id,
                contact_id=first.contact_id,
                kind="click",
                url="https://engine-test.myshopify.com/cart",
                at=T0 + hours(3),
            )
        )
    placed = T0 + hours(48)
    shop.at(placed, order("1001", placed, anna, "tok-1"))
    with runtime.sessions() as session:
        credited = session.scalars(
            select(Attribution).where(Attribution.shop_id == shop.shop_id)
        ).all()
    assert [(a.flow, a.revenue) for a in credited] == [("cart_recovery", EARNED)]
    return shop
