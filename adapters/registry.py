"""Every platform, by name: one import and one entry per platform.

The first entry is the default wherever one is needed without a shop to ask
(the simulator's scenarios).
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.platform import Platform
from adapters.shopify import PLATFORM as shopify
from adapters.woocommerce import PLATFORM as woocommerce

PLATFORMS: Mapping[str, Platform] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
}

for _name, _platform in PLATFORMS.items():
    if _platform.name != _name:  # pragma: no cover (a typo in the table above)
        raise RuntimeError(f"platform {_platform.name!r} is registered as {_name!r}")


class UnknownPlatformError(KeyError):
    """No platform has this name."""


def platform(name: str) -> Platform:
    """The platform called ``name``; UnknownPlatformError with the known names otherwise."""
    found = PLATFORMS.get(name)
    if found is None:
        raise UnknownPlatformError(f"unknown platform {name!r} (known: {', '.join(PLATFORMS)})")
    return found


def default() -> Platform:
    return next(iter(PLATFORMS.values()))
