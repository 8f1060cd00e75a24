"""Every built-in flow, by name. Adding a flow: one module and one line here."""

from __future__ import annotations

from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from jobs.flows.model import Flow

if TYPE_CHECKING:
    from collections.abc import Mapping


@cache
def built_in() -> Mapping[str, Flow]:
    """The flows that ship with triggerpost (read-only: ``register`` adds to ``flows``)."""
    from jobs.flows import cart_recovery

    return MappingProxyType({flow.name: flow for flow in (cart_recovery.FLOW,)})


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
