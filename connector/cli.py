"""The ``triggerpost`` command. Every sub-command reads the same settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.platforms.registry import CONNECTORS
from jobs import logs
from jobs.settings import Settings, SettingsError
from jobs.store.db import (
    SchemaNotCurrent,
    SchemaUnknown,
    check_schema,
    make_engine,
    make_sessions,
    migrate,
    printable_url,
    schema_revisions,
)
from jobs.store.models import Shop

if TYPE_CHECKING:
    from jobs.dry_run import DryRun


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="triggerpost", prog_name="triggerpost", message="%(prog)s %(version)s"
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also log the libraries' own steps (Alembic's migrations); "
    "so does TRIGGERPOST_LOG_LEVEL=DEBUG.",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """triggerpost: triggered personal emails for Shopify and WooCommerce shops.

    Configured by TRIGGERPOST_* environment variables (see README.md); with none
    set it runs on embedded defaults under ./var. Every command but `migrate`
    and `run` refuses a database whose schema is behind: `triggerpost migrate`
    upgrades it.
    """
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    logs.configure(settings)  # TRIGGERPOST_LOG_FORMAT: plain lines, or JSON
    if not verbose and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # a line per migration context and step, on every command that opens one
        logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = settings


def require_schema(settings: Settings) -> None:
    """Refuse to go on unless the database's schema is current (only `migrate` changes it)."""
    try:
        check_schema(settings.database_url)
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc


def known_shop(session: Session, shop_ref: str) -> Shop:
    """The shop ``shop_ref`` names (id, domain or store URL); a clear error if none."""
    from jobs.reports.decisions import find_shop

    shop = find_shop(session, shop_ref)
    if shop is None:
        raise click.ClickException(f"no shop {shop_ref!r} (see `triggerpost shop list`)")
    return shop


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int, help="RQ worker processes.")
@click.pass_obj
def run(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run everything on one machine: Redis (embedded), web, worker, sweeper.

    Links the service makes use this port unless TRIGGERPOST_BASE_URL is set.
    """
    from connector.supervisor import SupervisorError
    from connector.supervisor import run as supervise

    try:
        sys.exit(supervise(settings.serving_on(host, port), host=host, port=port, workers=workers))
    except SupervisorError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", type=int, default=None, help="gunicorn processes [1 per core].")
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
@click.pass_obj
def web(settings: Settings, host: str, port: int, workers: int | None, access_log: bool) -> None:
    """Serve the web app (webhooks, install flows, settings page) under gunicorn.

    Links the service makes use this port unless TRIGGERPOST_BASE_URL is set.
    """
    from connector.web import DEFAULT_WORKERS, PortInUseError, check_port, serve

    require_schema(settings)
    try:
        check_port(host, port)
    except PortInUseError as exc:
        raise click.ClickException(str(exc)) from exc
    serve(
        settings.serving_on(host, port),
        host=host,
        port=port,
        workers=workers or DEFAULT_WORKERS,
        access_log=access_log,
    )


@main.command()
@click.option(
    "--worker-class",
    type=click.Choice(["simple", "fork"]),
    default="simple",
    show_default=True,
    help="simple: jobs run in the worker process; fork: each job in a child.",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--sweeper/--no-sweeper", default=True, help="Run the sweeper beside the worker.")
@click.option("--name", default=None, help="Worker name (default: generated).")
@click.pass_obj
def worker(
    settings: Settings, worker_class: str, burst: bool, sweeper: bool, name: str | None
) -> None:
    """Run an RQ worker with its scheduler; start as many as you like, anywhere."""
    from jobs.workers.worker import work

    require_schema(settings)
    work(settings, worker_class=worker_class, burst=burst, with_sweeper=sweeper, name=name)


@main.command("sweeper")
@click.pass_obj
def sweeper_command(settings: Settings) -> None:
    """Run only the sweeper (re-enqueues stored work that Redis lost)."""
    from jobs.workers.sweeper import run_forever

    require_schema(settings)
    run_forever(settings)


@main.command("migrate")
@click.pass_obj
def migrate_command(settings: Settings) -> None:
    """Create or upgrade the database schema (the only command that changes it).

    Run it before starting a new version (a release step); `triggerpost run`
    runs it itself. `triggerpost -v migrate` logs each of Alembic's steps.
    """
    where = printable_url(settings.database_url)
    try:
        check_schema(settings.database_url)
    except SchemaUnknown as exc:
        raise click.ClickException(str(exc)) from exc
    except SchemaNotCurrent:
        pass  # what this command is for
    before, _heads = schema_revisions(settings.database_url)
    migrate(settings.database_url)
    after, _heads = schema_revisions(settings.database_url)
    if before == after:
        click.echo(f"database at {where} is up to date (revision {', '.join(after)})")
        return
    was = f"revision {', '.join(before)}" if before else "an empty database"
    click.echo(f"database at {where} upgraded from {was} to revision {', '.join(after)}")


@main.group()
def shop() -> None:
    """Register and list shops without the install flow."""


@shop.group("add")
def shop_add() -> None:
    """Register a shop (or update the one with the same address)."""


for _connector in CONNECTORS.values():
    if _connector.add_command is not None:
        shop_add.add_command(_connector.add_command)


#: the columns of `shop list`, in order (and the keys of each shop in its --json)
SHOP_COLUMNS = ("id", "platform", "shop", "status", "timezone", "installed", "name")


@shop.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array: one object per shop.")
@click.pass_obj
def shop_list(settings: Settings, as_json: bool) -> None:
    """List registered shops: id, platform, address, status, time zone, when it was
    installed (in its own time zone) and name."""
    import json

    from jobs.reports.analytics import shop_zone

    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            shops = session.scalars(select(Shop).order_by(Shop.id)).all()
    finally:
        engine.dispose()
    rows = []
    for s in shops:
        zone = shop_zone(s)
        installed = s.installed_at.astimezone(zone)
        rows.append(
            {
                "id": s.id,
                "platform": s.platform,
                "shop": s.key,
                "status": s.status,
                "timezone": zone.key,
                "installed": installed.isoformat(timespec="seconds")
                if as_json
                else f"{installed:%Y-%m-%d %H:%M %Z}",
                "name": s.name,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no shops yet: add one with `triggerpost shop add`")
        return
    cells = [list(SHOP_COLUMNS), *([str(row[c]) for c in SHOP_COLUMNS] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(SHOP_COLUMNS) - 1)]
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*padded, line[-1]]))


@shop.command("login-link")
@click.argument("shop_ref", metavar="SHOP")
@click.option(
    "--minutes",
    type=click.IntRange(1, 24 * 60),
    default=15,
    show_default=True,
    help="How long the link stays good (it works once).",
)
@click.pass_obj
def shop_login_link(settings: Settings, shop_ref: str, minutes: int) -> None:
    """Print a link that signs its opener in to SHOP's merchant app, once.

    For a WooCommerce store (or development): a Shopify merchant opens
    triggerpost from the Shopify admin instead.
    """
    from datetime import timedelta

    from connector.merchant.auth import link_url
    from jobs.merchant import login_links
    from jobs.store.models import now

    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine).begin() as session:
            shop = known_shop(session, shop_ref)
            try:
                token = login_links.issue(session, shop.id, now(), timedelta(minutes=minutes))
            except login_links.LoginLinkError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    click.echo(link_url(settings.base_url, token))


@shop.command("storefront")
@click.argument("shop_ref", metavar="SHOP")
@click.option(
    "--new-secret", is_flag=True, help="Replace the plugin's secret (the old code stops)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def shop_storefront(settings: Settings, shop_ref: str, new_secret: bool, as_json: bool) -> None:
    """Print where SHOP's storefront events go: its public key, the endpoint, the
    origins allowed to send them and, for a store that runs our plugin, the
    connection code to paste into it (it holds a secret: keep it out of logs)."""
    import json

    from jobs.merchant import storefront
    from jobs.store.secrets import SecretBox

    require_schema(settings)
    box = SecretBox(settings.secret_key)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine).begin() as session:
            found = known_shop(session, shop_ref)
            connector = CONNECTORS.get(found.platform)
            plugin = connector is not None and connector.plugin
            if new_secret and not plugin:
                raise click.ClickException(f"a {found.platform} shop runs no triggerpost plugin")
            if new_secret:
                storefront.rotate_plugin_secret(found, box)
            origins = sorted(storefront.allowed_origins(found))
            facts: dict[str, object] = {
                "shop": found.key,
                "key": found.storefront_key,
                "endpoint": storefront.endpoint(settings.base_url, found),
                "origins": origins,
                "connection_code": (
                    storefront.connection_code(settings.base_url, found, box) if plugin else None
                ),
            }
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    click.echo(f"key       {facts['key']}")
    click.echo(f"endpoint  {facts['endpoint']}")
    click.echo(f"origins   {', '.join(origins)}")
    if facts["connection_code"]:
        click.echo(f"connection code (paste into the plugin):\n{facts['connection_code']}")


@shop.command("settings")
@click.argument("shop_ref", metavar="SHOP")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="PATH=VALUE",
    help="Change one setting, e.g. flows.cart_recovery.delay_1_hours=2 or "
    "engine.quiet_start=08:00 (VALUE is read as JSON when it parses, else as text; "
    "null returns the setting to its default). Repeatable.",
)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Replace the shop's settings with this JSON file (--set applies on top).",
)
@click.option("--json", "as_json", is_flag=True, help="Settings and problems as one JSON object.")
@click.pass_obj
def shop_settings(
    settings: Settings,
    shop_ref: str,
    assignments: tuple[str, ...],
    path: Path | None,
    as_json: bool,
) -> None:
    """Print SHOP's effective settings and any problems, or change them (--set, --file).

    A change is validated as a whole: with any bad field nothing is saved, each
    bad field is printed and the command exits non-zero. SHOP is the shop's
    id, myshopify domain or store URL.
    """
    import json

    from jobs import shop_settings as schema

    patch: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{assignment!r} is not PATH=VALUE", param_hint="--set")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        schema.set_path(patch, key.strip(), value)
    replacement: Any = None
    if path is not None:
        try:
            replacement = json.loads(path.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{path} is not JSON: {exc}") from exc

    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessions(engine)
        with sessions.begin() as session:
            shop = known_shop(session, shop_ref)
            changing = replacement is not None or bool(patch)
            try:
                if replacement is not None:
                    if patch and isinstance(replacement, dict):
                        replacement = schema.merged(replacement, patch)
                    effective = schema.replace(session, shop, replacement)
                elif patch:
                    effective = schema.update(session, shop, patch)
                else:
                    effective = schema.load(shop)
            except schema.SettingsError as exc:
                for refused in exc.problems:
                    click.echo(f"{shop.key}: {refused}", err=True)
                raise click.ClickException(
                    f"nothing saved: {len(exc.problems)} bad setting"
                    f"{'s' * (len(exc.problems) != 1)}"
                ) from exc
            key = shop.key
    finally:
        engine.dispose()
    problems = [str(problem) for problem in effective.problems]
    if as_json:
        click.echo(json.dumps({"settings": effective.as_dict(), "problems": problems}, indent=2))
        return
    if changing:
        click.echo(f"settings of {key} saved")
    click.echo(json.dumps(effective.as_dict(), indent=2))
    if problems:
        click.echo(f"\n{len(problems)} problem{'s' * (len(problems) != 1)} in the stored settings")
        click.echo("(the last valid value, or the default, applies instead):")
        for problem in problems:
            click.echo(f"  {problem}")


@main.command()
@click.argument("shop_ref", metavar="SHOP")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def why(settings: Settings, shop_ref: str, email: str, as_json: bool) -> None:
    """Why did EMAIL get (or not get) each email from SHOP? Prints their timeline:
    every decision, the legal basis each email went on, and the flows that did
    not start for them, with the latest reason. Times are in the shop's time
    zone (--json: UTC).

    SHOP is the shop's id, myshopify domain or store URL.
    """
    import json

    from jobs.reports.analytics import shop_zone
    from jobs.reports.decisions import explain, find_contact, format_timeline

    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            shop = known_shop(session, shop_ref)
            contact = find_contact(session, shop.id, email)
            if contact is None:
                raise click.ClickException(f"{shop.key} has no contact with the address {email}")
            # the JSON stays in UTC (for programs); the lines are for the merchant
            zone = None if as_json else shop_zone(shop)
            rows = explain(session, shop.id, contact.id, zone)
    finally:
        engine.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    assert zone is not None
    consent = contact.consent_state or "unknown"
    click.echo(f"{email} at {shop.key}: consent {consent}, {contact.orders_count} orders")
    click.echo(format_timeline(rows, zone) if rows else "no flow has considered this contact yet")


@main.group()
def segment() -> None:
    """Who a segment is: how many of a shop's contacts, and which (FILE.json holds the
    segment's conditions, or a saved or built-in segment's name as a JSON string)."""


def _segment_asked(
    settings: Settings, shop_ref: str, path: Path, ask: Callable[..., Any]
) -> tuple[Shop, Any]:
    """SHOP and what ``ask(session, shop_id, condition, now)`` answers of FILE.json's segment."""
    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            shop = known_shop(session, shop_ref)
            condition = _segment_of(shop, path)
            return shop, ask(session, shop.id, condition, datetime.now(UTC))
    finally:
        engine.dispose()


def _segment_of(shop: Shop, path: Path) -> Any:
    """FILE.json's segment, resolved with the shop's saved segments; a clear error if bad."""
    import json

    from jobs import shop_settings
    from jobs.audience import segments

    if not path.is_file():
        raise click.ClickException(f"{path}: no such file")
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # nested past the parser's stack, too
        raise click.ClickException(f"{path.name}: not JSON ({exc})") from exc
    try:
        found = segments.resolve(raw, shop_settings.load(shop).segments)
    except segments.SegmentError as exc:
        raise click.ClickException(f"{path.name}: {exc}") from exc
    if found is None:
        raise click.ClickException(f"{path.name}: empty: a segment's conditions or name")
    return found[1]


@segment.command("count")
@click.argument("shop_ref", metavar="SHOP")
@click.argument("path", metavar="FILE.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The count as one JSON object.")
@click.pass_obj
def segment_count(settings: Settings, shop_ref: str, path: Path, as_json: bool) -> None:
    """How many of SHOP's contacts are in the segment of FILE.json (one query).

    SHOP is the shop's id, myshopify domain or store URL.
    """
    import json

    from jobs.audience import segments

    shop, found = _segment_asked(settings, shop_ref, path, segments.count)
    if as_json:
        click.echo(json.dumps({"shop": shop.key, "count": found}))
        return
    click.echo(f"{shop.key}: {found:,} {'contact' if found == 1 else 'contacts'} in the segment")


@segment.command("sample")
@click.argument("shop_ref", metavar="SHOP")
@click.argument("path", metavar="FILE.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="At most this many contacts (the newest first).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per contact, per line.")
@click.pass_obj
def segment_sample(
    settings: Settings, shop_ref: str, path: Path, limit: int, as_json: bool
) -> None:
    """Some of SHOP's contacts in the segment of FILE.json, the newest first.

    SHOP is the shop's id, myshopify domain or store URL.
    """
    import functools
    import json

    from jobs.audience import segments

    ask = functools.partial(segments.sample, limit=limit)
    shop, members = _segment_asked(settings, shop_ref, path, ask)
    for member in members:
        if as_json:
            click.echo(json.dumps(member.as_dict()))
            continue
        name = " ".join(filter(None, (member.first_name, member.last_name)))
        click.echo(
            f"{member.email or '(no address)'}"
            + (f" ({name})" if name else "")
            + f": {member.orders_count} orders, {member.total_spent} spent"
            + (f", {member.country}" if member.country else "")
        )
    if not members and not as_json:
        click.echo(f"{shop.key}: nobody is in the segment")


@main.group()
def contacts() -> None:
    """A shop's contacts: import birthdays and consent from a file."""


@contacts.command("import")
@click.argument("shop_ref", metavar="SHOP")
@click.argument("path", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and count everything; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.pass_obj
def contacts_import(
    settings: Settings, shop_ref: str, path: Path, dry_run: bool, as_json: bool
) -> None:
    """Add or update SHOP's contacts from FILE.csv: birthdays, consent, first names.

    \b
    Columns (a header row names them; comma or semicolon; UTF-8):
      email           required
      birthday        YYYY-MM-DD, or --MM-DD when the year is unknown
      consent         subscribed, unsubscribed, or empty to keep what the shop holds
      consent_source  required with consent: where it was given ("in-store sign-up")
      consent_at      when (YYYY-MM-DD or an ISO time, UTC); empty: now
      first_name

    A bad row is reported with its row number (the header is row 1) and left
    out; the good rows are applied all the same, and the command exits
    non-zero. An address twice in the file is applied from its first row.
    A file that is no contacts file applies nothing. An import starts no
    flow (no welcome emails), never re-creates a contact the shop erased,
    never re-subscribes someone who unsubscribed through the shop's emails.
    SHOP is the shop's id, myshopify domain or store URL.
    """
    import json

    from jobs.intake.contacts_import import ImportFileError
    from jobs.intake.contacts_import import run as import_contacts

    if not path.is_file():
        raise click.ClickException(f"{path}: no such file")
    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessions(engine)
        with sessions() as session:
            shop = known_shop(session, shop_ref)
            session.expunge(shop)
        try:
            report = import_contacts(sessions, shop, lambda: path.open("rb"), dry_run=dry_run)
        except ImportFileError as exc:
            raise click.ClickException(f"{path.name}: {exc}; nothing imported") from exc
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"shop": shop.key, **report.as_dict()}, indent=2))
    else:
        for name in report.ignored_columns:
            click.echo(f"column {name!r} ignored (not one of the columns an import reads)")
        for line in report.error_lines:
            click.echo(line)
        if report.errors > len(report.error_lines):
            more = report.errors - len(report.error_lines)
            click.echo(f"... and {_rows(more)} more with errors")
        for line in report.skip_lines:
            click.echo(line)
        verb = "would be" if dry_run else "were"
        click.echo(
            f"{shop.key}: {_rows(report.rows)} read; contacts {verb} created {report.created}, "
            f"updated {report.updated}, unchanged {report.unchanged}, "
            f"skipped {report.skipped}; {_rows(report.errors)} with errors"
            + (" (left out)" if report.errors else "")
        )
        if report.consent_refused:
            click.echo(
                f"{report.consent_refused} of them kept their unsubscribe (made through "
                "the shop's emails): a file never subscribes them again"
            )
        if dry_run:
            click.echo("dry run: nothing was changed")
    if report.errors:
        sys.exit(1)


@main.group()
def history() -> None:
    """A shop's past customers and orders: import them, see how far it got."""


@history.command("import")
@click.argument("shop_ref", metavar="SHOP")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=730,
    show_default=True,
    help="Import the orders of this many days back (customers: all of them).",
)
@click.option("--json", "as_json", is_flag=True, help="The final state as one JSON object.")
@click.pass_obj
def history_import(settings: Settings, shop_ref: str, days: int, as_json: bool) -> None:
    """Import SHOP's customers and orders from its platform, in the foreground.

    Progress goes to stderr. An import cut short (a crash, a failing store)
    continues where it stopped; a finished one is read again from the start
    (nothing is counted twice). No flow starts and no email is sent for what
    is imported. SHOP is the shop's id, myshopify domain or store URL.
    """
    import json
    import time

    from jobs.intake import history as histories
    from jobs.platforms.registry import history_source
    from jobs.runtime import Runtime

    require_schema(settings)
    runtime = Runtime.create(settings)
    started = time.monotonic()

    def show(state: histories.HistoryState) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        of = f"{state.read:,}" + (f" of {state.total:,}" if state.total else "")
        click.echo(
            f"\r{of} customers and orders read, {state.customers:,} customers and "
            f"{state.orders:,} orders imported ({state.read / elapsed:,.0f}/s)   ",
            err=True,
            nl=False,
        )

    try:
        with runtime.sessions() as session:
            shop = known_shop(session, shop_ref)
            shop_id, key = shop.id, shop.key
        try:
            final = histories.run(
                runtime, shop_id, history_source, days=days, again=True, progress=show
            )
        except histories.HistoryError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            click.echo("", err=True)
            raise click.ClickException(
                f"{key}: the import stopped ({exc}); run it again to continue where it stopped"
            ) from exc
    finally:
        runtime.close()
    click.echo("", err=True)
    if as_json:
        click.echo(json.dumps({"shop": key, **final.as_dict()}, indent=2))
        return
    click.echo(f"{key}: {histories.progress_line(final)}")
    if final.skipped:
        click.echo(f"{final.skipped:,} items could not be read and were left out (see the log)")


@history.command("status")
@click.argument("shop_ref", metavar="SHOP")
@click.option("--json", "as_json", is_flag=True, help="The state as one JSON object.")
@click.pass_obj
def history_status(settings: Settings, shop_ref: str, as_json: bool) -> None:
    """How far SHOP's history import got. SHOP is its id, domain or store URL."""
    import json

    from jobs.intake import history as histories

    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            shop = known_shop(session, shop_ref)
            key = shop.key
            found = histories.state(session, shop.id)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"shop": key, **(found.as_dict() if found else {"status": None})}))
        return
    if found is None:
        click.echo(f"{key}: no history import yet (`triggerpost history import {shop_ref}`)")
        return
    click.echo(f"{key}: {histories.progress_line(found)}")
    if found.skipped:
        click.echo(f"{found.skipped:,} items could not be read and were left out")
    if found.last_error:
        click.echo(f"last error: {found.last_error}")


@main.command()
@click.argument(
    "scenario", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--shop",
    "shop_ref",
    metavar="SHOP",
    default=None,
    help="Instead of a scenario: a dry run on SHOP's own event log (id, domain or store URL).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=None,
    help="With --shop: how many days back to replay [30].",
)
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --shop: proposed settings (JSON), merged onto the shop's as "
    "`shop settings --set` does; nothing is saved.",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="With --shop: the window's end, in UTC [now].",
)
@click.option("--json", "as_json", is_flag=True, help="The timeline and outbox as JSON.")
@click.pass_context
def simulate(
    ctx: click.Context,
    scenario: Path | None,
    shop_ref: str | None,
    days: int | None,
    settings_path: Path | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """Run SCENARIO.json through the real engine on a virtual clock; print the decisions.

    Or, with --shop, a dry run on the shop's own history: its event log of the
    last --days replayed through the real engine with its stored settings or
    the proposed --settings; prints the emails each flow would have sent, the
    deferrals and the emails not sent by reason, and the most any one contact
    would have got (counts only, never an address).

    Nothing is sent and nothing touches the real store: the run uses a scratch
    database. See jobs/simulator.py for the scenario format, jobs/dry_run.py
    for the dry run.
    """
    import json

    from jobs.reports.decisions import format_timeline
    from jobs.simulator import Scenario, ScenarioError
    from jobs.simulator import simulate as run_scenario

    if (scenario is None) == (shop_ref is None):
        raise click.UsageError("give either SCENARIO.json or --shop SHOP, not both or neither")
    if shop_ref is None and (days is not None or settings_path is not None or until is not None):
        raise click.UsageError("--days, --settings and --until go with --shop")
    if shop_ref is not None:
        _dry_run(ctx.obj, shop_ref, days or 30, settings_path, until, as_json)
        return
    assert scenario is not None
    try:
        result = run_scenario(Scenario.load(scenario))
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        payload = {
            "timeline": result.timeline,
            "sent": [
                {"to": c.email_to, "subject": c.subject, "message_id": c.message_id_header}
                for c in result.sent
            ],
            "discount_codes": sorted(result.discounts),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(format_timeline(result.timeline))
    sent, codes = len(result.sent), len(result.discounts)
    click.echo(
        f"\n{sent} email{'s' * (sent != 1)} sent, {codes} discount code{'s' * (codes != 1)} issued"
    )


def _dry_run(
    settings: Settings,
    shop_ref: str,
    days: int,
    settings_path: Path | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """``simulate --shop``: parse, run ``jobs.dry_run.dry_run``, print."""
    import json

    from jobs.dry_run import DryRunError, dry_run
    from jobs.reports.analytics import shop_zone
    from jobs.shop_settings import SettingsError
    from jobs.store.db import make_read_sessions

    proposed: Any = None
    if settings_path is not None:
        try:
            proposed = json.loads(settings_path.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            click.echo(f"Error: {settings_path} is not JSON: {exc}", err=True)
            sys.exit(2)
    require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_read_sessions(engine)
        with sessions() as session:
            shop = known_shop(session, shop_ref)
            shop_id, key, zone = shop.id, shop.key, shop_zone(shop)
        try:
            result = dry_run(
                sessions,
                shop_id,
                days=days,
                settings=proposed,
                until=until.replace(tzinfo=UTC) if until is not None else None,
            )
        except SettingsError as exc:
            for refused in exc.problems:
                click.echo(f"{key}: {refused}", err=True)
            bad = len(exc.problems)
            click.echo(
                f"Error: nothing simulated: {bad} bad setting{'s' * (bad != 1)} in {settings_path}",
                err=True,
            )
            sys.exit(2)
        except DryRunError as exc:
            raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo(_format_dry_run(result, zone))


def _format_dry_run(result: DryRun, zone: ZoneInfo) -> str:
    """The dry run as a merchant reads it: counts, flow names and reasons, no address,
    the window in the shop's zone."""
    from jobs.dry_run import LEFT_OUT_WORDS

    lines = [
        f"dry run of {result.shop}: {result.start.astimezone(zone):%Y-%m-%d %H:%M} to "
        f"{result.until.astimezone(zone):%Y-%m-%d %H:%M %Z}, "
        + ("proposed settings (nothing saved)" if result.proposed else "stored settings"),
        (
            f"replayed {result.events_in_window} events of the window, after "
            f"{result.events_before} before it as the shop's past"
        ),
    ]
    for reason, count in result.left_out.items():
        lines.append(f"  left out: {count} {LEFT_OUT_WORDS.get(reason, reason)}")
    after = {(s.flow, s.step): s.count for s in result.after}
    rows: list[tuple[str, int, int]] = []
    sent_by_flow, after_by_flow = result.sent_by_flow(), result.after_by_flow()
    flows = sorted(set(sent_by_flow) | set(after_by_flow))
    for flow in flows:
        rows.append((flow, sent_by_flow.get(flow, 0), after_by_flow.get(flow, 0)))
        steps = sorted(
            {s.step for s in result.sent if s.flow == flow}
            | {s.step for s in result.after if s.flow == flow}
        )
        sent = {s.step: s.count for s in result.sent if s.flow == flow}
        for step in steps:
            rows.append((f"  {step}", sent.get(step, 0), after.get((flow, step), 0)))
    total_sent = sum(sent_by_flow.values())
    total_after = sum(after_by_flow.values())
    width = max([len("flow / step"), *(len(name) for name, _, _ in rows)])
    lines.append("")
    lines.append(f"{'flow / step':<{width}}  {'would send':>10}  {'after the window':>16}")
    for name, sent_count, after_count in rows:
        lines.append(f"{name:<{width}}  {sent_count:>10}  {after_count:>16}")
    lines.append(f"{'total':<{width}}  {total_sent:>10}  {total_after:>16}")
    lines.append("")
    if result.deferred:
        held = ", ".join(f"{reason} {n}" for reason, n in result.deferred.items())
        lines.append(f"held back at least once (emails): {held}")
    else:
        lines.append("held back: none (no quiet hours or caps met)")
    for state, reasons in result.not_sent.items():
        listed = ", ".join(f"{reason} {n}" for reason, n in reasons.items())
        lines.append(f"not sent, {state}: {listed}")
    lines.append(
        f"contacts who would get an email: {result.contacts_reached}; "
        f"the most any one would get: {result.most_to_one_contact}"
    )
    if result.copied:
        copied = ", ".join(f"{what} {n}" for what, n in result.copied.items())
        lines.append(f"copied from the store (no event carries them): {copied}")
    return "\n".join(lines)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


@main.command()
@click.option(
    "--url",
    default=None,
    help="The running service's address [TRIGGERPOST_BASE_URL, else the address "
    "`triggerpost run` serves this data directory on].",
)
@click.option(
    "--wait",
    type=click.IntRange(0, 600),
    default=120,
    show_default=True,
    help="Seconds to wait for the emails to be sent.",
)
@click.pass_obj
def demo(settings: Settings, url: str | None, wait: int) -> None:
    """Show the product work: a demo shop on the running service, its webhooks, its emails.

    Registers a demo shop in the service's database (with settings under which
    every flow's first email is due at once), plays real-shaped, signed webhooks
    (a new subscriber, an abandoned cart, a paid and delivered order) through the
    service's own webhook intake, waits until the workers have sent the emails,
    and prints where to look at them and how to ask `triggerpost why`.
    Run it beside `make run` (`make demo` does).
    """
    from datetime import timedelta

    from connector.demo import DemoError, next_steps, play
    from connector.merchant.auth import link_url
    from jobs.merchant import login_links
    from jobs.store.models import now

    require_schema(settings)
    base = (url or settings.base_url).rstrip("/")
    try:
        played = play(settings, base, wait=wait, say=click.echo)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine).begin() as session:
            token = login_links.issue(session, played.shop_id, now(), timedelta(minutes=15))
    finally:
        engine.dispose()
    for line in next_steps(played, settings, link_url(base, token)):
        click.echo(line)
    if not played.sent:
        sys.exit(1)


@main.command("email-webhook-url")
@click.argument("provider", type=click.Choice(["postmark", "sendgrid"]))
@click.pass_obj
def email_webhook_url(settings: Settings, provider: str) -> None:
    """Print the URL to give PROVIDER for bounce and spam-complaint webhooks."""
    from connector.email_events import webhook_url

    click.echo(webhook_url(settings, provider))


if __name__ == "__main__":
    main()
