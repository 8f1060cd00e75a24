"""What each platform's connector side declares, and what those declarations share.

One :class:`ConnectorPlatform` per platform, listed in
:mod:`connector.platforms.registry`: the app registers its blueprint and
opens no session on its sessionless paths; the CLI offers its ``shop add``
command.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
from flask import Blueprint

from jobs.merchant.shops import ShopError, add_shop
from jobs.settings import Settings
from jobs.store.db import make_engine, make_sessions, migrate
from jobs.store.secrets import SecretBox


@dataclass(frozen=True)
class ConnectorPlatform:
    name: str
    #: the install or connect pages (and any callback the platform makes)
    blueprint: Blueprint
    #: path prefixes called by the platform, never by a person's browser
    sessionless: tuple[str, ...] = ()
    #: ``triggerpost shop add <name> ...``: register a shop by hand
    add_command: click.Command | None = None


def add_shop_by_hand(
    settings: Settings, platform: str, address: str, **details: str | None
) -> None:
    """What every ``shop add`` command does once its options are checked."""
    migrate(settings.database_url)
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
