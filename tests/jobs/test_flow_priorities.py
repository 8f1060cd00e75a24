"""The product's order between flows: the built-in flows declare it, and the caps apply it.

That the caps give the slot to the higher priority, deferring the lower one
with ``cap:priority`` or expiring it with that reason, is shown end to end in
``tests/jobs/test_engine_flows.py`` (``test_higher_priority_flow_takes_the_slot``,
``test_deferral_past_expiry_expires_with_the_reason``); the built-in flows competing
for one contact's week, in ``tests/jobs/test_across_flows.py``.
"""

from __future__ import annotations

from jobs.flows import registry
from jobs.flows.model import PRIORITIES


def test_the_built_in_flows_take_their_priority_from_the_product_s_order() -> None:
    for name, flow in registry.built_in().items():
        assert name in PRIORITIES, f"{name}: add it to jobs.flows.model.PRIORITIES"
        assert flow.priority == PRIORITIES[name], name


def test_the_product_s_order_puts_intent_first_and_what_can_wait_last() -> None:
    order_ = sorted(PRIORITIES, key=PRIORITIES.__getitem__, reverse=True)
    assert order_ == [
        "cart_recovery",
        "browse_abandonment",
        "welcome",
        "birthday",
        "review_request",
        "thank_you",
        "anniversary",
        "loyalty",
        "win_back",
        "re_engagement",
        "new_product",
        "delivered_notice",
    ]
    assert len(set(PRIORITIES.values())) == len(PRIORITIES)  # no ties for the caps to break
