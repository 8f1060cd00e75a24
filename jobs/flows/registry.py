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


def register(flow: Flow) -> None:
    """Add a flow at run time (an extension's own flow, or a test's)."""
    flows()[flow.name] = flow


def unregister(name: str) -> None:
    if name in {"cart_recovery"}:
        raise ValueError(f"{name} is built in")
    flows().pop(name, None)
