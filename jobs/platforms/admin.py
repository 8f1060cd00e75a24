"""The outbound API client for a shop, by platform (discount codes, live order state).

Each platform's client registers a factory here; a shop whose platform has
none (or that has no credentials) gets None, and what needed the client is
recorded as unavailable instead of pretending.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.http import ApiSession
from adapters.platform import AdminClient
from jobs.runtime import Runtime
from jobs.store.models import Shop

#: (runtime, shop, http) -> client; ``http`` None means the client's default policy
Factory = Callable[[Runtime, Shop, ApiSession | None], AdminClient | None]
FACTORIES: dict[str, Factory] = {}


def register(platform: str, factory: Factory) -> None:
    FACTORIES[platform] = factory


def _load() -> None:
    """Import the modules that register the platforms' clients (once; cheap after)."""
    import jobs.platforms.shopify
    import jobs.platforms.woocommerce  # noqa: F401


def client_for(runtime: Runtime, shop: Shop, http: ApiSession | None = None) -> AdminClient | None:
    _load()
    factory = FACTORIES.get(shop.platform)
    return factory(runtime, shop, http) if factory is not None else None
