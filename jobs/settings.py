"""Settings: read once from the environment, then passed explicitly.

Every variable has the prefix ``TRIGGERPOST_``. Unset database and Redis URLs
mean the embedded defaults inside the data directory (a SQLite file and the
redis-server that ``triggerpost run`` starts on a unix socket there).
Production (``TRIGGERPOST_ENV=production``) refuses those dev defaults.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

PREFIX = "TRIGGERPOST_"


class SettingsError(ValueError):
    """The configuration cannot be used; the message says what to set."""


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str
    #: True when redis_url is the embedded server ``triggerpost run`` owns
    embedded_redis: bool
    base_url: str
    secret_key: str
    email_url: str
    mode: Mode = Mode.DEVELOPMENT
    #: the address emails are sent from (the shop's name is the display name);
    #: its domain must be one the delivery provider is allowed to send for
    email_from: str = "shop@triggerpost.localhost"
    shopify_api_key: str | None = None
    shopify_api_secret: str | None = None
    #: the secret being rotated out: Shopify may sign with it for up to an hour
    shopify_api_secret_previous: str | None = None
    #: asked for at install; checkouts and orders need read_orders, codes write_discounts
    shopify_scopes: str = (
        "read_orders,read_customers,read_products,read_fulfillments,write_discounts"
    )
    #: the Admin API version for calls and webhook subscriptions (quarterly, YYYY-MM)
    shopify_api_version: str = "2026-07"
    #: webhook bodies larger than this are refused with 413 (Shopify orders with
    #: hundreds of lines stay well below 1 MiB)
    max_webhook_bytes: int = 5 * 1024 * 1024
    #: how often the sweeper re-enqueues stored work that Redis lost
    sweep_interval: float = 60.0
    log_level: str = "INFO"
    #: let outbound calls reach loopback and private networks (a store on the
    #: developer's machine); off, a store address resolving there is refused
    allow_private_hosts: bool = False

    @property
    def production(self) -> bool:
        return self.mode is Mode.PRODUCTION

    @property
    def redis_socket(self) -> Path:
        """Where the embedded redis-server listens (only meaningful when embedded)."""
        return self.data_dir / "redis.sock"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name, "").strip()
            return value or None

        try:
            mode = Mode(get("ENV") or Mode.DEVELOPMENT)
        except ValueError as exc:
            raise SettingsError(
                f"{PREFIX}ENV must be one of {', '.join(Mode)}, not {get('ENV')!r}"
            ) from exc
        data_dir = Path(get("DATA_DIR") or "./var").resolve()
        database_url = get("DATABASE_URL")
        redis_url = get("REDIS_URL")
        email_url = get("EMAIL_URL")
        secret_key = get("SECRET_KEY")
        base_url = get("BASE_URL")

        if mode is Mode.PRODUCTION:
            missing = [
                PREFIX + name
                for name, value in (
                    ("SECRET_KEY", secret_key),
                    ("DATABASE_URL", database_url),
                    ("REDIS_URL", redis_url),
                    ("EMAIL_URL", email_url),
                    ("BASE_URL", base_url),
                    ("EMAIL_FROM", get("EMAIL_FROM")),
                )
                if not value
            ]
            if missing:
                raise SettingsError(
                    "production mode needs explicit settings, not the embedded dev defaults; "
                    f"set {', '.join(missing)}"
                )
            if len(secret_key or "") < 32:
                raise SettingsError(f"{PREFIX}SECRET_KEY must be at least 32 characters")
            if (email_url or "").startswith("file:"):
                raise SettingsError(f"{PREFIX}EMAIL_URL file:// is the dev outbox, not delivery")
            if not (base_url or "").startswith("https://"):
                raise SettingsError(f"{PREFIX}BASE_URL must be https:// in production")
        secret_key = secret_key or _dev_secret(data_dir)

        return cls(
            data_dir=data_dir,
            database_url=database_url or f"sqlite:///{data_dir / 'triggerpost.db'}",
            redis_url=redis_url or f"unix://{data_dir / 'redis.sock'}",
            embedded_redis=redis_url is None,
            base_url=(base_url or "http://127.0.0.1:8000").rstrip("/"),
            secret_key=secret_key,
            email_url=email_url or f"file://{data_dir / 'outbox'}",
            mode=mode,
            email_from=get("EMAIL_FROM") or "shop@triggerpost.localhost",
            shopify_api_key=get("SHOPIFY_API_KEY"),
            shopify_api_secret=get("SHOPIFY_API_SECRET"),
            shopify_api_secret_previous=get("SHOPIFY_API_SECRET_PREVIOUS"),
            shopify_scopes=get("SHOPIFY_SCOPES") or cls.shopify_scopes,
            shopify_api_version=_api_version(get("SHOPIFY_API_VERSION")),
            max_webhook_bytes=_int(get("MAX_WEBHOOK_BYTES"), "MAX_WEBHOOK_BYTES", 5 * 1024 * 1024),
            sweep_interval=float(_int(get("SWEEP_INTERVAL"), "SWEEP_INTERVAL", 60)),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            allow_private_hosts=_flag(get("ALLOW_PRIVATE_HOSTS"), "ALLOW_PRIVATE_HOSTS"),
        )


def _api_version(value: str | None) -> str:
    if value is None:
        return Settings.shopify_api_version
    if not re.fullmatch(r"\d{4}-(01|04|07|10)|unstable", value):
        raise SettingsError(f"{PREFIX}SHOPIFY_API_VERSION must look like 2026-07, not {value!r}")
    return value


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name} must be true or false, not {value!r}")


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name} must be a whole number, not {value!r}") from exc
    if number <= 0:
        raise SettingsError(f"{PREFIX}{name} must be positive")
    return number


def _dev_secret(data_dir: Path) -> str:
    """The local development secret, created once and kept under the data dir."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two commands starting at once agree on one key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
