"""The rules a shop may tune: frequency caps, quiet hours, attribution, flow options.

What each rule means, its range and its default are declared in
:mod:`jobs.shop_settings` (``settings["engine"]``), and a flow's options by the
flow (``Flow.options``); both are read here through
:func:`jobs.shop_settings.load`, so a bad stored value never breaks sending
(it falls back to its last valid value and is reported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import time, timedelta
from functools import lru_cache
from typing import Any

from jobs import shop_settings
from jobs.audience import segments
from jobs.flows.model import Flow
from jobs.store.models import Shop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    #: at most this many marketing emails per contact in a rolling window ...
    marketing_per_window: int
    window_days: int
    #: ... and never two marketing emails closer than this
    min_gap_hours: int
    #: a flow that sends one email sends it to a contact at most once in this many days
    single_flow_days: int
    #: mail goes out only between these local times of the contact
    quiet_end: time
    quiet_start: time
    #: an order this long after a click is credited to the clicked message
    attribution_days: int
    #: opens are faked by privacy proxies (Apple Mail), so they do not count by default
    attribute_opens: bool

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
        return _policy(shop_settings.load(shop).engine)


@lru_cache(maxsize=256)
def _policy(engine: shop_settings.EngineSettings) -> Policy:
    return Policy(
        marketing_per_window=engine.marketing_per_window,
        window_days=engine.window_days,
        min_gap_hours=engine.min_gap_hours,
        single_flow_days=engine.single_flow_days,
        quiet_end=engine.quiet_end,
        quiet_start=engine.quiet_start,
        attribution_days=engine.attribution_days,
        attribute_opens=engine.attribute_opens,
    )


def flow_options(shop: Shop, flow: Flow) -> dict[str, Any]:
    """The flow's options for this shop: its declared defaults, the shop's values on top."""
    return dict(shop_settings.load(shop).flow(flow))


#: nobody: what an audience that names a segment no longer there lets through
NOBODY = segments.Not(segments.All(()))

_audiences: dict[
    tuple[int, str], tuple[shop_settings.ShopSettings, tuple[str, segments.Condition] | None]
] = {}


def flow_audience(shop: Shop, flow: Flow) -> tuple[str, segments.Condition] | None:
    """Who the flow is for in this shop: its ``audience`` option with a saved segment's
    name resolved, and the name a merchant reads (``conditions`` for one written out);
    None: everyone. Parsed once per stored settings.

    A name that names nothing (the settings refuse that, but a built-in may have been
    renamed since) lets nobody through, never everybody.
    """
    settings = shop_settings.load(shop)
    key = (id(settings), flow.name)
    cached = _audiences.get(key)
    if cached is not None and cached[0] is settings:
        return cached[1]
    value = settings.flow(flow).get("audience")
    try:
        found = segments.resolve(value, settings.segments)
    except segments.SegmentError:
        log.warning("shop %s: flow %s names no segment %r: nobody", shop.id, flow.name, value)
        found = (str(value), NOBODY)
    if len(_audiences) > 4096:
        _audiences.clear()
    _audiences[key] = (settings, found)
    return found
