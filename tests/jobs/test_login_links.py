"""Login links in the store: random, kept as a digest, once, for a while, for an installed shop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from jobs.merchant import login_links
from jobs.merchant.shops import add_shop, mark_uninstalled
from jobs.runtime import Runtime
from jobs.store.models import LoginLink, Shop, now

SHOP = "links-test.myshopify.com"


@pytest.fixture
def shop_id(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return add_shop(session, runtime.secrets, "shopify", SHOP).id


def test_a_link_signs_in_once_and_only_its_digest_is_stored(runtime: Runtime, shop_id: int) -> None:
    at = now()
    with runtime.sessions.begin() as session:
        token = login_links.issue(session, shop_id, at)
    with runtime.sessions() as session:
        [row] = session.scalars(select(LoginLink)).all()
        assert token not in row.token_hash
        assert row.expires_at - row.created_at == login_links.LIFETIME
    with runtime.sessions.begin() as session:
        assert login_links.spend(session, token, at + timedelta(minutes=1)) == shop_id
    with runtime.sessions.begin() as session:
        assert login_links.spend(session, token, at + timedelta(minutes=2)) is None


def test_a_link_is_dead_once_it_expires(runtime: Runtime, shop_id: int) -> None:
    at = now()
    with runtime.sessions.begin() as session:
        token = login_links.issue(session, shop_id, at, timedelta(minutes=5))
    with runtime.sessions.begin() as session:
        assert login_links.spend(session, token, at + timedelta(minutes=5)) is None


def test_a_link_is_dead_when_its_shop_is_uninstalled(runtime: Runtime, shop_id: int) -> None:
    at = now()
    with runtime.sessions.begin() as session:
        token = login_links.issue(session, shop_id, at)
    with runtime.sessions.begin() as session:
        mark_uninstalled(session.get_one(Shop, shop_id), at)
    with runtime.sessions.begin() as session:
        assert login_links.spend(session, token, at) is None
        with pytest.raises(login_links.LoginLinkError, match="not installed"):
            login_links.issue(session, shop_id, at)


@pytest.mark.parametrize("token", ["", "x", "a" * 10_000])
def test_an_unknown_token_signs_nobody_in(runtime: Runtime, shop_id: int, token: str) -> None:
    with runtime.sessions.begin() as session:
        login_links.issue(session, shop_id, now())
    with runtime.sessions.begin() as session:
        assert login_links.spend(session, token, now()) is None


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(minutes=-1), timedelta(days=2)])
def test_a_link_lives_between_a_moment_and_a_day(
    runtime: Runtime, shop_id: int, lifetime: timedelta
) -> None:
    with runtime.sessions.begin() as session, pytest.raises(login_links.LoginLinkError):
        login_links.issue(session, shop_id, now(), lifetime)


def test_dead_links_are_purged_when_a_new_one_is_issued(runtime: Runtime, shop_id: int) -> None:
    at = now()
    with runtime.sessions.begin() as session:
        spent = login_links.issue(session, shop_id, at)
        login_links.issue(session, shop_id, at, timedelta(minutes=1))
        login_links.spend(session, spent, at)
    with runtime.sessions.begin() as session:
        login_links.issue(session, shop_id, at + timedelta(minutes=2))
    with runtime.sessions() as session:
        assert len(session.scalars(select(LoginLink)).all()) == 1
