"""Solbacka Te over a year (examples/shop_year.json), through the simulator: the emails
the calendar and absence bring. The scenario holds no fact: every birthday, lapse,
quiet subscriber and anniversary is found by the shop's daily scans on the virtual clock,
from what the customers' own data says, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters import events as ev
from tests.conftest import DATABASES
from tests.jobs.test_shop_life import Life, lived, sent

EXAMPLE = Path(__file__).parents[2] / "examples" / "shop_year.json"

ASTRID = "astrid.nystrom@example.se"  # Stockholm; born 14 May; two orders, then quiet
DARIUSH = "dariush.karimi@example.com"  # Tehran; born 29 February; subscribed, never buys
INGRID = "ingrid.berg@example.no"  # Oslo; subscribes and orders two days later
TOM = "tom.walker@example.co.uk"  # Leeds; born 2 August; buys twice, never subscribed


@pytest.fixture(scope="module", params=DATABASES)
def year(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Life]:
    """The example's year, once per database, with every email really composed."""
    yield from lived(EXAMPLE, request, tmp_path_factory)


def dated(life: Life, email: str) -> list[tuple[str, str, str]]:
    """Her emails from the date-based flows, at her own local time."""
    flows = ("birthday", "anniversary", "win_back", "re_engagement")
    return sent([m for m in life.inbox(email) if m.flow in flows])


def test_the_scenario_plays_no_fact_the_scans_find_them_all() -> None:
    played = {item["event"]["type"] for item in json.loads(EXAMPLE.read_text())["events"]}
    assert played.isdisjoint(cls.__name__ for cls in ev.FACTS)


def test_astrid_is_asked_back_90_days_on_greeted_on_her_birthday_and_a_year_after_her_first_order(
    year: Life,
) -> None:
    assert dated(year, ASTRID) == [
        ("win_back", "win_back", "Tue 11 May 10:00"),  # 90 days after #2002 (10 February)
        ("birthday", "greeting", "Fri 14 May 09:00"),  # her morning, in Stockholm
        ("anniversary", "anniversary", "Fri 7 Jan 09:00"),  # #2001 was 7 January 2027
    ]
    (greeting,) = [m for m in year.inbox(ASTRID) if m.flow == "birthday"]
    assert greeting.locale == "sv"
    assert "Astrid" in greeting.text
    code = greeting.discount_code
    assert code is not None  # the shop turned the birthday code on
    assert code in greeting.text
    issued = year.result.discounts[code]
    assert issued.percent == 15
    assert issued.expires_at is not None
    assert issued.expires_at - greeting.local <= timedelta(days=7, hours=1)
    (back,) = [m for m in year.inbox(ASTRID) if m.flow == "win_back"]
    assert back.discount_code is None  # the win-back's code is off by default
    assert "Earl Grey Blå" not in back.text  # never what she bought


def test_astrid_s_second_lapse_within_180_days_of_the_win_back_brings_none(year: Life) -> None:
    # she came back on 1 June (#2006, her reward) and lapsed again on 30 August
    assert [m.flow for m in year.inbox(ASTRID)].count("win_back") == 1
    assert [m.flow for m in year.inbox(ASTRID)].count("loyalty") == 1
    again = [
        row
        for row in year.why(ASTRID)
        if row["flow"] == "win_back" and row["outcome"] == "not_started"
    ]
    assert [(row["at"][:10], row["reason"]) for row in again] == [("2027-08-29", "too_soon")]
    assert again[0]["says"].startswith("not started: she had started it lately")


def test_dariush_in_tehran_is_asked_back_30_days_on_and_greeted_on_28_february(
    year: Life,
) -> None:
    assert dated(year, DARIUSH) == [
        ("re_engagement", "re_engagement", "Fri 19 Feb 10:00"),  # 30 days after he subscribed
        ("birthday", "greeting", "Sun 28 Feb 09:00"),  # born 29 February; 2027 has none
    ]
    assert {m.locale for m in year.inbox(DARIUSH)} == {"fa"}
    assert {m.local.utcoffset() for m in year.inbox(DARIUSH)} == {timedelta(hours=3, minutes=30)}


def test_ingrid_who_ordered_during_her_welcome_is_never_asked_back(year: Life) -> None:
    assert dated(year, INGRID) == []
    assert [m.flow for m in year.inbox(INGRID)] == ["welcome", "welcome"]


def test_tom_never_subscribed_gets_no_birthday_nor_win_back_and_why_says_so(year: Life) -> None:
    assert year.inbox(TOM) == []
    assert year.outcomes(TOM, "birthday") == ["enrolled", "skipped:no_consent"]
    assert year.outcomes(TOM, "win_back") == ["enrolled", "skipped:no_consent"]
