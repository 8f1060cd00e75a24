"""Every platform's server side, by name: one import and one entry per platform."""

from __future__ import annotations

from collections.abc import Mapping

from jobs.platforms.server import HistorySource, PlatformServer
from jobs.platforms.shopify import SERVER as shopify
from jobs.platforms.woocommerce import SERVER as woocommerce

SERVERS: Mapping[str, PlatformServer] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
}

for _name, _server in SERVERS.items():
    if _server.name != _name:  # pragma: no cover (a typo in the table above)
        raise RuntimeError(f"platform server {_server.name!r} is registered as {_name!r}")


def history_source(platform: str) -> HistorySource | None:
    """The platform's history source; None when it offers no history import."""
    server = SERVERS.get(platform)
    return server.history if server is not None else None
