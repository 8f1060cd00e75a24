"""Local time at the edges: a contact's timezone and the quiet-hours window.

The zone is the contact's own, else one for their country, else the shop's,
else UTC. A country with several zones gets its most populous one (a guess
that still keeps mail inside waking hours for nearly everyone there).
Arithmetic is done on aware datetimes through ``zoneinfo``, so DST switch
days (a 23- or 25-hour day, a skipped or repeated hour) come out right.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: the zone for countries that span several (the first in zone.tab is not always it)
MAIN_ZONE = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "RU": "Europe/Moscow",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
    "ID": "Asia/Jakarta",
    "KZ": "Asia/Almaty",
    "CN": "Asia/Shanghai",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "DE": "Europe/Berlin",
    "NZ": "Pacific/Auckland",
    "UA": "Europe/Kyiv",
}


@cache
def _country_zones() -> dict[str, str]:
    """Country code -> its first zone in the IANA ``zone.tab`` (from the tzdata package)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    zones: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        country, _coordinates, zone, *_ = line.split("\t")
        zones.setdefault(country, zone)
    return zones


def zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_for(
    timezone: str | None, country_code: str | None, shop_timezone: str | None
) -> tuple[ZoneInfo, str]:
    """The zone to use and where it came from ("contact", "country", "shop", "default")."""
    found = zone(timezone)
    if found is not None:
        return found, "contact"
    if country_code:
        code = country_code.upper()
        found = zone(MAIN_ZONE.get(code) or _country_zones().get(code))
        if found is not None:
            return found, "country"
    found = zone(shop_timezone)
    if found is not None:
        return found, "shop"
    return ZoneInfo("UTC"), "default"


def next_local_time(after: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first moment at or after ``after`` when the wall clock in ``tz`` shows ``at``.

    A wall time skipped by a DST switch resolves forward (02:30 on a spring-forward
    night becomes 03:30), as ``zoneinfo`` does with ``fold=0``.
    """
    local = after.astimezone(tz)
    candidate = datetime.combine(local.date(), at, tzinfo=tz)
    if candidate.astimezone(UTC) < after.astimezone(UTC):
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return _normalise(candidate).astimezone(UTC)


def on_day(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The moment the wall clock in ``tz`` shows ``at`` on ``day`` (in UTC); a wall time
    skipped by a DST switch resolves forward, as in :func:`next_local_time`."""
    return _normalise(datetime.combine(day, at, tzinfo=tz)).astimezone(UTC)


def _normalise(value: datetime) -> datetime:
    """Round-trip through UTC, so a non-existent wall time becomes a real instant."""
    return value.astimezone(UTC).astimezone(value.tzinfo)


def quiet_until(at: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """None if ``at`` is inside the sending window [start, end) local time, else when it opens."""
    local = at.astimezone(tz).time()
    inside = start <= local < end if start < end else (local >= start or local < end)
    if inside:
        return None
    return next_local_time(at, start, tz)
