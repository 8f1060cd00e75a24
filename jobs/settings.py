"""Settings: read once from the environment, then passed explicitly.

Every variable has the prefix ``TRIGGERPOST_``. Unset database and Redis URLs
mean the embedded defaults inside the data directory (a SQLite file and the
redis-server that ``triggerpost run`` starts on a unix socket there).
Production (``TRIGGERPOST_ENV=production``) refuses those dev defaults, and
whatever else works only on one machine or not at all: SQLite, the ``file://``
and ``null://`` email backends, a base URL without https and a host, a sender
that is not a bare address.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "TRIGGERPOST_"


class SettingsError(ValueError):
    """The configuration cannot be used; the message says what to set."""


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    #: a line a person reads (the default)
    PLAIN = "plain"
    #: one JSON object a line, with the shop, delivery, message and job ids (jobs.logs)
    JSON = "json"


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
    #: True when TRIGGERPOST_BASE_URL was set; else the base URL follows the port
    #: the service serves on (see :meth:`serving_on`)
    base_url_explicit: bool = False
    #: the address emails are sent from (the shop's name is the display name);
    #: its domain must be one the delivery provider is allowed to send for
    email_from: str = "shop@triggerpost.localhost"
    shopify_api_key: str | None = None
    shopify_api_secret: str | None = None
    #: the secret being rotated out: Shopify may sign with it for up to an hour
    shopify_api_secret_previous: str | None = None
    #: asked for at install; checkouts and orders need read_orders, codes write_discounts,
    #: the storefront pixel write_pixels and read_customer_events
    shopify_scopes: str = (
        "read_orders,read_customers,read_products,read_fulfillments,write_discounts,"
        "write_pixels,read_customer_events"
    )
    #: the Admin API version for calls and webhook subscriptions (quarterly, YYYY-MM)
    shopify_api_version: str = "2026-07"
    #: webhook bodies larger than this are refused with 413 (Shopify orders with
    #: hundreds of lines stay well below 1 MiB)
    max_webhook_bytes: int = 5 * 1024 * 1024
    #: how often the sweeper re-enqueues stored work that Redis lost
    sweep_interval: float = 60.0
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.PLAIN
    #: where the processes of one machine keep their metrics (prometheus_client's
    #: multiprocess files); ``triggerpost run`` makes a fresh one inside it per run
    metrics_dir: Path | None = None
    #: ``/metrics`` answers a request with ``Authorization: Bearer <token>``; without
    #: a token only unproxied requests from loopback (see connector.metrics)
    metrics_token: str | None = None
    #: let outbound calls reach loopback and private networks (a store on the
    #: developer's machine); off, a store address resolving there is refused
    allow_private_hosts: bool = False
    #: reverse proxies in front of the web server that append to X-Forwarded-For
    #: (0: clients connect directly, their address is the socket's); the storefront
    #: intake's per-visitor rate limit counts by the address this many hops back
    proxy_hops: int = 0

    @property
    def production(self) -> bool:
        return self.mode is Mode.PRODUCTION

    def serving_on(self, host: str, port: int) -> Settings:
        """These settings for a service listening on ``host:port``.

        Every link the service makes (unsubscribe, clicks, a store's connect
        callback) starts with the base URL: without an explicit one it is this
        port's, so `make run PORT=8123` makes links that reach it.
        """
        if self.base_url_explicit:
            return self
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 (listening everywhere: loopback reaches it)
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return replace(self, base_url=f"http://{host}:{port}")

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
            _refuse_single_machine_choices(
                database_url or "", email_url or "", base_url or "", get("EMAIL_FROM") or ""
            )
        secret_key = secret_key or _dev_secret(data_dir)

        return cls(
            data_dir=data_dir,
            database_url=database_url or f"sqlite:///{data_dir / 'triggerpost.db'}",
            redis_url=redis_url or f"unix://{data_dir / 'redis.sock'}",
            embedded_redis=redis_url is None,
            base_url=(base_url or _served_base_url(data_dir) or DEV_BASE_URL).rstrip("/"),
            base_url_explicit=base_url is not None,
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
            log_format=_log_format(get("LOG_FORMAT")),
            metrics_dir=Path(get("METRICS_DIR") or data_dir / "metrics").resolve(),
            metrics_token=get("METRICS_TOKEN"),
            allow_private_hosts=_flag(get("ALLOW_PRIVATE_HOSTS"), "ALLOW_PRIVATE_HOSTS"),
            proxy_hops=_int(get("PROXY_HOPS"), "PROXY_HOPS", 0, minimum=0),
        )


#: the development base URL when nothing says otherwise (`triggerpost run`'s default port)
DEV_BASE_URL = "http://127.0.0.1:8000"
#: where `triggerpost run` notes the address it serves on, under the data directory:
#: the CLI beside it (a login link, `triggerpost demo`) makes links that reach it
SERVED_AT = "base_url"

#: the delivery backends that deliver nothing (see emails.delivery)
DEV_EMAIL_BACKENDS = {"file": "the dev outbox", "null": "discards every email"}
EMAIL_BACKENDS = "smtp://, smtps://, postmark:// or sendgrid://"
EXAMPLE_BASE_URL = "https://triggerpost.example.com"
EXAMPLE_SENDER = "shops@mail.example.com"


def _refuse_single_machine_choices(
    database_url: str, email_url: str, base_url: str, email_from: str
) -> None:
    """Production refuses what works only on one machine, or not at all.

    URLs may hold passwords: a refusal names their scheme, never the URL.
    """
    scheme = urlsplit(database_url).scheme
    if not (scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")):
        raise SettingsError(
            f"{PREFIX}DATABASE_URL must be PostgreSQL in production, like "
            f"postgresql://user:password@host/triggerpost, not {scheme or 'no scheme'}:// "
            "(SQLite is the single-machine development store)"
        )
    scheme = urlsplit(email_url).scheme
    if scheme in DEV_EMAIL_BACKENDS:
        raise SettingsError(
            f"{PREFIX}EMAIL_URL {scheme}:// is {DEV_EMAIL_BACKENDS[scheme]}, not delivery; "
            f"in production set {EMAIL_BACKENDS}"
        )
    base = urlsplit(base_url)
    if base.scheme != "https":
        raise SettingsError(
            f"{PREFIX}BASE_URL must be https:// in production, like {EXAMPLE_BASE_URL}"
        )
    try:
        addressable = bool(base.hostname) and base.port != 0  # .port raises on a non-number
    except ValueError:
        addressable = False
    if not addressable or "@" in base.netloc or base.query or base.fragment:
        raise SettingsError(
            f"{PREFIX}BASE_URL must be the public address the platforms call, a host with an "
            f"optional port and path, like {EXAMPLE_BASE_URL}"
        )
    if not _sender_address(email_from):
        raise SettingsError(
            f"{PREFIX}EMAIL_FROM must be a bare address at a domain your provider sends for, "
            f"like {EXAMPLE_SENDER} (the shop's name is added as the display name; write an "
            f"international domain in its xn-- form), not {email_from!r}"
        )


#: what RFC 5322 allows unquoted in the part before the @ (besides dots)
_LOCAL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LABEL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-")


def _sender_address(address: str) -> bool:
    """``local@domain.tld`` and nothing else: no display name, no second address."""
    local, _, domain = address.rpartition("@")
    words = local.split(".")
    labels = domain.split(".")
    return (
        len(address) <= 254
        and all(word and set(word) <= _LOCAL_CHARACTERS for word in words)
        and len(labels) >= 2
        and all(
            0 < len(label) <= 63
            and set(label) <= _LABEL_CHARACTERS
            and not label.startswith("-")
            and not label.endswith("-")
            for label in labels
        )
        and not labels[-1].isdigit()
    )


def _api_version(value: str | None) -> str:
    if value is None:
        return Settings.shopify_api_version
    if not re.fullmatch(r"\d{4}-(01|04|07|10)|unstable", value):
        raise SettingsError(f"{PREFIX}SHOPIFY_API_VERSION must look like 2026-07, not {value!r}")
    return value


def _log_format(value: str | None) -> LogFormat:
    try:
        return LogFormat((value or LogFormat.PLAIN).lower())
    except ValueError as exc:
        raise SettingsError(
            f"{PREFIX}LOG_FORMAT must be one of {', '.join(LogFormat)}, not {value!r}"
        ) from exc


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name} must be true or false, not {value!r}")


def _int(value: str | None, name: str, default: int, *, minimum: int = 1) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name} must be a whole number, not {value!r}") from exc
    if number < minimum:
        raise SettingsError(
            f"{PREFIX}{name} must be positive"
            if minimum == 1
            else f"{PREFIX}{name} must be at least {minimum}"
        )
    return number


def _served_base_url(data_dir: Path) -> str | None:
    """The address `triggerpost run` last served this data directory on, if any."""
    try:
        text = (data_dir / SERVED_AT).read_text().strip()
    except OSError:
        return None
    return text if text.startswith(("http://", "https://")) else None


def note_served_base_url(settings: Settings) -> None:
    """`triggerpost run` notes its address for the commands run beside it (unless
    TRIGGERPOST_BASE_URL names one: then every command reads that)."""
    path = settings.data_dir / SERVED_AT
    if settings.base_url_explicit:
        path.unlink(missing_ok=True)
        return
    path.write_text(settings.base_url + "\n")


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
