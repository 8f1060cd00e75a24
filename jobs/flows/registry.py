"""Every built-in flow, by name. Adding a flow: one module and one line here."""

from __future__ import annotations

from functools import cache

from jobs.flows.model import Flow


@cache
def flows() -> dict[str, Flow]:
    from jobs.flows import cart_recovery

    return {flow.name: flow for flow in (cart_recovery.FLOW,)}


def get(name: str) -> Flow | None:
    return flows().get(name)
