"""The outbound API client for a shop, by platform (discount codes, live order state).

A shop whose platform has no client (or that has no credentials) gets None,
and what needed the client is recorded as unavailable instead of pretending.
"""

from __future__ import annotations

from adapters.http import ApiSession
from adapters.platform import AdminClient
from jobs.platforms.registry import SERVERS
from jobs.runtime import Runtime
from jobs.store.models import Shop


def client_for(runtime: Runtime, shop: Shop, http: ApiSession | None = None) -> AdminClient | None:
    server = SERVERS.get(shop.platform)
    return server.admin_client(runtime, shop, http) if server is not None else None
