"""What each platform's server side declares (one :class:`PlatformServer` per platform).

Generic code (sending, the sweeper, the webhook intake) reaches a platform's
server side only through these members, found in :mod:`jobs.platforms.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.http import ApiSession
from adapters.platform import AdminClient
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import Shop

#: (runtime, shop, http) -> client, None when the shop has none (not installed,
#: no keys); ``http`` None means the client's default policy
AdminClientFactory = Callable[[Runtime, Shop, ApiSession | None], AdminClient | None]


def _no_app_secrets(settings: Settings) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class PlatformServer:
    name: str
    admin_client: AdminClientFactory
    #: the app's secrets that sign webhooks (newest first, the rotated-out one
    #: after it); none for a platform whose shops sign with their own
    app_webhook_secrets: Callable[[Settings], tuple[str, ...]] = _no_app_secrets
    #: enqueue the reconciliation of every shop that is due; the number enqueued
    #: (None: the platform's webhooks need no reconciling)
    reconcile_due: Callable[[Runtime], int] | None = None
