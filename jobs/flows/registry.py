"""Every built-in flow, by name. Adding a flow: one module, its import and one line here."""

from __future__ import annotations

from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from jobs.flows import (
    anniversary,
    birthday,
    browse_abandonment,
    cart_recovery,
    delivered_notice,
    loyalty,
    new_product,
    re_engagement,
    review_request,
    thank_you,
    welcome,
    win_back,
)
from jobs.flows.model import Flow

if TYPE_CHECKING:
    from collections.abc import Mapping

#: the flows that ship with triggerpost (read-only: ``register`` adds to ``flows``)
BUILT_IN: Mapping[str, Flow] = MappingProxyType(
    {
        "cart_recovery": cart_recovery.FLOW,
        "browse_abandonment": browse_abandonment.FLOW,
        "welcome": welcome.FLOW,
        "review_request": review_request.FLOW,
        "thank_you": thank_you.FLOW,
        "loyalty": loyalty.FLOW,
        "new_product": new_product.FLOW,
        "delivered_notice": delivered_notice.FLOW,
        "birthday": birthday.FLOW,
        "anniversary": anniversary.FLOW,
        "win_back": win_back.FLOW,
        "re_engagement": re_engagement.FLOW,
    }
)
for _name, _flow in BUILT_IN.items():
    if _name != _flow.name:
        raise ValueError(f"the registry lists flow {_flow.name!r} as {_name!r}")


def built_in() -> Mapping[str, Flow]:
    return BUILT_IN


@cache
def flows() -> dict[str, Flow]:
    return dict(built_in())


def get(name: str) -> Flow | None:
    return flows().get(name)


def register(flow: Flow) -> None:
    """Add a flow at run time (an extension's own flow, or a test's)."""
    flows()[flow.name] = flow


def unregister(name: str) -> None:
    if name in built_in():
        raise ValueError(f"{name} is built in")
    flows().pop(name, None)
