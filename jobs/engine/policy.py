"""The rules a shop may tune: frequency caps, quiet hours, attribution, flow options.

Defaults are defined here; a shop's overrides are data in ``Shop.settings``:
``settings["engine"]`` for the keys of :class:`Policy`, and
``settings["flows"][<flow name>]`` for a flow's options (see ``Flow.defaults``).
Unknown keys are ignored, so an old settings blob never breaks sending.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import time, timedelta
from typing import Any

from jobs.flows.model import Flow
from jobs.store.models import Shop


@dataclass(frozen=True)
class Policy:
    #: at most this many marketing emails per contact in a rolling window ...
    marketing_per_window: int = 3
    window_days: int = 7
    #: ... and never two marketing emails closer than this
    min_gap_hours: int = 16
    #: a flow that sends one email sends it to a contact at most once in this many days
    single_flow_days: int = 7
    #: mail goes out only between these local times of the contact
    quiet_end: time = time(8, 0)
    quiet_start: time = time(21, 0)
    #: an order this long after a click is credited to the clicked message
    attribution_days: int = 5
    #: opens are faked by privacy proxies (Apple Mail), so they do not count by default
    attribute_opens: bool = False

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @property
    def min_gap(self) -> timedelta:
        return timedelta(hours=self.min_gap_hours)

    @property
    def single_flow_window(self) -> timedelta:
        return timedelta(days=self.single_flow_days)

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(days=self.attribution_days)

    @classmethod
    def of(cls, shop: Shop) -> Policy:
        raw = (shop.settings or {}).get("engine") or {}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            if f.name in ("quiet_end", "quiet_start"):
                value = time.fromisoformat(value) if isinstance(value, str) else value
            values[f.name] = value
        return cls(**values)


def flow_options(shop: Shop, flow: Flow) -> dict[str, Any]:
    """The flow's defaults with the shop's overrides on top."""
    overrides = ((shop.settings or {}).get("flows") or {}).get(flow.name) or {}
    return {**flow.defaults, **{k: v for k, v in overrides.items() if k in flow.defaults}}
