"""Every platform's connector side, by name: one import and one entry per platform."""

from __future__ import annotations

from collections.abc import Mapping

from connector.platforms.common import ConnectorPlatform
from connector.platforms.shopify import CONNECTOR as shopify
from connector.platforms.woocommerce import CONNECTOR as woocommerce

CONNECTORS: Mapping[str, ConnectorPlatform] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
}

for _name, _connector in CONNECTORS.items():
    if _connector.name != _name:  # pragma: no cover (a typo in the table above)
        raise RuntimeError(f"platform connector {_connector.name!r} is registered as {_name!r}")
