"""Delivered notice: the parcel arrived, with the order's items and its status page.

Sent when the store reports the shipment delivered (Shopify with carrier
tracking). Transactional mail: it tells the customer about their own order,
so it needs no marketing consent, and for that reason carries nothing else (no
recommendations, no discount). Off unless the shop turns it on. Not for a
cancelled or refunded order, nor a test order; one per order.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import ORDER_ENDED, FlowContext
from jobs.flows.model import (
    Flow,
    MessageKind,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    common,
)


def _subject(event: ev.Event) -> str | None:
    return event.order_id if isinstance(event, ev.ShipmentDelivered) else None


FLOW = Flow(
    name="delivered_notice",
    title="Delivery notice",
    summary="Tells a customer their parcel was delivered, with the order's items.",
    category="orders",
    kind=MessageKind.TRANSACTIONAL,
    priority=0,  # transactional mail is not held back by marketing caps
    trigger=Trigger(
        events=(ev.ShipmentDelivered,),
        subject=_subject,
        when=FlowContext.order_open,
    ),
    steps=(Send("notice", "delivered_notice"),),
    exits=ORDER_ENDED,
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.ORDER,  # its main link: the order status page
    options=common(enabled=False, expires_hours=24),
)
