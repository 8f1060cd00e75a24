"""What each platform's connector side declares, and what those declarations share.

One :class:`ConnectorPlatform` per platform, listed in
:mod:`connector.platforms.registry`: the app registers its blueprint and
opens no session on its sessionless paths; the CLI offers its ``shop add``
command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click
from flask import Blueprint

from jobs.merchant.shops import ShopError, add_shop
from jobs.settings import Settings
from jobs.store.db import SchemaNotCurrent, check_schema, make_engine, make_sessions
from jobs.store.secrets import SecretBox


@dataclass(frozen=True)
class EmbeddedAdmin:
    """A platform whose admin shows our pages in its own frame and vouches for the
    merchant with a short-lived session token on every request, instead of a
    cookie (browsers block third-party cookies in frames).

    The token names the shop by its key; connector.merchant.auth signs the
    request in for that shop when it is installed, lets only that shop's admin
    (and the platform's) frame the page, and puts ``head_template`` first in its head.
    """

    #: the shop key a genuine, current token speaks for; a ValueError saying why if none
    token_shop: Callable[[Settings, str], str]
    #: a shop's own admin origin (it may frame that shop's pages)
    shop_origin: Callable[[str], str]
    #: the platform admin's origins (it frames every shop's pages)
    admin_origins: tuple[str, ...]
    #: scripts an embedded page loads from the platform (its CSP allows exactly these)
    scripts: tuple[str, ...]
    #: included first in an embedded page's head, with ``embedded_api_key``
    head_template: str
    #: the app's public key the platform's script is given
    api_key: Callable[[Settings], str]
    #: (the URL to come back to, shop, host) -> the bounce page that gets a fresh token
    bounce: Callable[[str, str | None, str | None], str]

    def frame_ancestors(self, shop_key: str) -> tuple[str, ...]:
        return (self.shop_origin(shop_key), *self.admin_origins)


@dataclass(frozen=True)
class DemoDelivery:
    """One webhook `triggerpost demo` plays: a fixture of ``tests/fixtures/<platform>/``
    under its topic, with text replaced first (another customer, marketing consent
    given) so that the deliveries together start several flows."""

    fixture: str
    topic: str
    replace: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Demo:
    """What `triggerpost demo` needs of a platform: a shop to register, the
    deliveries to play, and the headers the platform sends them with."""

    #: the demo shop's address (its key is what `triggerpost why` takes)
    address: str
    deliveries: tuple[DemoDelivery, ...]
    #: (topic, body, secret, shop key, delivery id) -> the signed request's headers
    headers: Callable[[str, bytes, str, str, str], dict[str, str]]
    #: shown to the reader: who the demo's emails go to
    customers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectorPlatform:
    name: str
    #: the install or connect pages (and any callback the platform makes)
    blueprint: Blueprint
    #: path prefixes called by the platform, never by a person's browser
    sessionless: tuple[str, ...] = ()
    #: ``triggerpost shop add <name> ...``: register a shop by hand
    add_command: click.Command | None = None
    #: the platform's admin embeds our pages (None: it links to them)
    embedded: EmbeddedAdmin | None = None
    #: its shops run our plugin, which signs requests to ``/plugin/<name>/...`` with the
    #: secret of the shop's connection code (connector.plugin; shown in Settings)
    plugin: bool = False
    #: `triggerpost demo`'s shop and webhooks (None: the demo uses another platform)
    demo: Demo | None = None


def add_shop_by_hand(
    settings: Settings, platform: str, address: str, **details: str | None
) -> None:
    """What every ``shop add`` command does once its options are checked (on a
    current schema only: ``triggerpost migrate`` upgrades it)."""
    try:
        check_schema(settings.database_url)
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine).begin() as session:
            shop = add_shop(
                session,
                SecretBox(settings.secret_key),
                platform,
                address,
                dev_mode=not settings.production,
                **details,
            )
            click.echo(f"shop {shop.id}: {platform} {shop.key} ({shop.status})")
    except ShopError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
