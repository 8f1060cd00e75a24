"""A merchant's preview and test of a flow's email: the email the courier would send,
with sample data or a real contact of the shop, and nothing written or counted."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters import events as ev
from emails import i18n
from emails.delivery.outbox import NullBackend
from jobs.flows import registry
from jobs.intake import apply
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.sending import courier, previews
from jobs.store.models import Contact, Decision, Engagement, Enrollment, Message, Shop

SHOP = "preview-test.myshopify.com"
OTHER = "other-shop.myshopify.com"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LANGUAGES = ("en", "sv", "nb", "ru", "fa")
#: what a rendering must never show: a placeholder, a raw key, a Python None
LEFTOVERS = re.compile(r"\{\{|\{%|\[\[|\[%|preview-sample:|\bNone\b|\bnull\b")


def sek(amount: str) -> ev.Money:
    return ev.Money(Decimal(amount), "SEK")


def make_shop(runtime: Runtime, key: str = SHOP, **settings: Any) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", key, currency="SEK")
        shop.settings = settings
        return shop.id


def put(runtime: Runtime, shop_id: int, *events: ev.Event) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        for event in events:
            apply.apply(session, shop, event, delivery_id=None, at=event.occurred_at)


def customer(email: str, first_name: str, locale: str | None, **more: Any) -> ev.Customer:
    return ev.Customer(
        customer_id=email.split("@")[0],
        email=email,
        first_name=first_name,
        locale=locale,
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "test", T0),
        updated_at=T0,
        **more,
    )


def product(product_id: str, title: str, price: str = "249.00") -> ev.ProductUpdated:
    return ev.ProductUpdated(
        occurred_at=T0,
        product=ev.Product(
            product_id=product_id,
            title=title,
            updated_at=T0,
            handle=title.lower().replace(" ", "-"),
            url=f"https://{SHOP}/products/{product_id}",
            image_url=f"https://cdn.example.com/{product_id}.jpg",
            price=sek(price),
            status="active",
            available=True,
        ),
    )


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Message, Decision, Enrollment, Engagement)
        }


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attributes.append((name, value))
            if name == "href" and value:
                self.hrefs.append(value)
            if name == "src" and value:
                self.srcs.append(value)


def parsed(html: str) -> Links:
    found = Links()
    found.feed(html)
    return found


def every_step() -> list[tuple[str, str]]:
    return [(flow.name, send.name) for flow in registry.built_in().values() for send in flow.sends]


# --- sample data -------------------------------------------------------------------------


@pytest.mark.parametrize("flow_name", sorted(registry.built_in()))
def test_every_email_of_every_flow_renders_in_every_language_with_sample_data(
    runtime: Runtime, flow_name: str
) -> None:
    """In a shop with nothing in its store yet (neutral samples, its code on where the
    flow gives one) and in one with products of its own (images, handles)."""
    flow = registry.built_in()[flow_name]
    codes = {"discount": True} if "discount" in {o.name for o in flow.all_options} else {}
    bare = make_shop(runtime, flows={flow_name: codes})
    stocked = make_shop(runtime, OTHER, engine={"open_tracking": True})
    put(runtime, stocked, product("p1", "Ullmössa Fjäll"), product("p2", "Vantar", "199.00"))
    for shop_id in (bare, stocked):
        for send in flow.sends:
            for language in LANGUAGES:
                found = previews.preview(runtime, shop_id, flow_name, send.name, language)
                assert_complete(found, send.template, language)


def assert_complete(found: previews.Preview, template: str, language: str) -> None:
    out = found.as_dict()
    assert out["language"] == language
    assert out["direction"] == ("rtl" if language == "fa" else "ltr")
    assert f'dir="{out["direction"]}"' in out["html"]
    assert out["subject"]
    assert out["preheader"]
    for part in ("subject", "preheader", "html", "text"):
        assert not LEFTOVERS.search(out[part]), (found.flow, found.step, language, part)
        assert f"{template}." not in out[part]  # never a raw catalog key
    attributes = parsed(out["html"]).attributes
    assert [(n, v) for n, v in attributes if v in ("None", "")] == []
    assert found.contact is None
    assert found.sample_subject is True


def test_a_sample_names_a_plausible_customer_and_neutral_products_in_the_emails_language(
    runtime: Runtime,
) -> None:
    shop_id = make_shop(runtime)
    sv = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "sv").rendered
    assert "Anna" in sv.html
    assert "Ullhalsduk" in sv.html
    assert "Keramikmugg" in sv.html
    assert "349,00" in sv.html  # the shop's currency, as Swedish writes it
    fa = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "fa").rendered
    assert "سارا" in fa.html
    assert "شال پشمی" in fa.html
    order = previews.preview(runtime, shop_id, "delivered_notice", "notice", "en").rendered
    assert previews.SAMPLE_ORDER in order.subject


def test_a_sample_shows_the_shops_own_products_when_the_store_holds_some(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    put(runtime, shop_id, product("p1", "Ullmössa Fjäll"), product("p2", "Vantar Lapp", "199.00"))
    found = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "en").rendered
    assert "Ullmössa Fjäll" in found.html
    assert "Vantar Lapp" in found.html
    assert "Wool scarf" not in found.html
    assert f"https://{SHOP}/products/p1" in parsed(found.html).hrefs
    assert "https://cdn.example.com/p1.jpg" in parsed(found.html).srcs
    announced = previews.preview(runtime, shop_id, "new_product", "announcement", "en").rendered
    assert "Vantar Lapp" in announced.html or "Ullmössa Fjäll" in announced.html


def test_a_code_shows_only_on_the_email_that_carries_one_and_only_when_the_shop_gives_codes(
    runtime: Runtime,
) -> None:
    shop_id = make_shop(
        runtime, flows={"cart_recovery": {"discount": True, "discount_percent": 15}}
    )
    third = previews.preview(runtime, shop_id, "cart_recovery", "email_3", "en").rendered
    first = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "en").rendered
    assert previews.SAMPLE_CODE in third.html
    assert "15%" in third.html
    assert previews.SAMPLE_CODE not in first.html
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop_id).settings = {"flows": {"cart_recovery": {"discount": False}}}
    without = previews.preview(runtime, shop_id, "cart_recovery", "email_3", "en").rendered
    assert previews.SAMPLE_CODE not in without.html


def test_a_preview_has_the_shops_branding_and_its_own_copy(runtime: Runtime) -> None:
    shop_id = make_shop(
        runtime,
        branding={
            "colour": "#aa3355",
            "postal_address": "Storgatan 1, 111 22 Stockholm",
            "logo_url": "https://cdn.example.com/logo.png",
        },
        copy={"cart_recovery_1": {"sv": {"subject": "Din korg väntar, {{ first_name }}"}}},
    )
    sv = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "sv").rendered
    assert sv.subject == "Din korg väntar, Anna"
    assert "#aa3355" in sv.html
    assert "Storgatan 1, 111 22 Stockholm" in sv.html
    assert "https://cdn.example.com/logo.png" in parsed(sv.html).srcs
    en = previews.preview(runtime, shop_id, "cart_recovery", "email_1", "en").rendered
    assert en.subject != sv.subject  # the override was for Swedish only


def test_the_shops_language_is_the_default_and_an_unknown_one_is_refused(
    runtime: Runtime,
) -> None:
    shop_id = make_shop(runtime, branding={"language": "nb"})
    assert previews.preview(runtime, shop_id, "welcome", "welcome_1").rendered.locale == "nb"
    with pytest.raises(previews.InvalidError) as refused:
        previews.preview(runtime, shop_id, "welcome", "welcome_1", "de")
    assert refused.value.field == "locale"
    assert refused.value.code == "unknown_language"
    assert refused.value.values["name"] == "de"
    assert "en, fa, nb, ru, sv" in refused.value.message


def test_an_unknown_flow_or_step_is_named_in_the_refusal(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    with pytest.raises(previews.UnknownError, match="no flow called 'nope'") as flow:
        previews.preview(runtime, shop_id, "nope", "email_1")
    assert flow.value.field == "flow"
    with pytest.raises(previews.UnknownError, match="email_1, email_2, email_3") as step:
        previews.preview(runtime, shop_id, "cart_recovery", "thanks")
    assert step.value.field == "step"


# --- links ------------------------------------------------------------------------------


def test_a_previews_links_act_for_nobody(runtime: Runtime) -> None:
    """No click redirect (nothing recorded or attributed), no open pixel even when the
    shop tracks opens, and unsubscribe and preferences go to a page that says what they
    would do: no link carries a message, so none can unsubscribe a customer."""
    shop_id = make_shop(runtime, engine={"open_tracking": True})
    put(runtime, shop_id, product("p1", "Ullmössa"))
    base = runtime.settings.base_url
    for flow_name, step in every_step():
        found = previews.preview(runtime, shop_id, flow_name, step, "sv").rendered
        links = parsed(found.html)
        for url in [*links.hrefs, *links.srcs]:
            assert not url.startswith((f"{base}/t/", f"{base}/u/", f"{base}/p/")), url
        marketing = registry.built_in()[flow_name].kind.value == "marketing"
        wanted = {f"{base}/preview-link/unsubscribe?lang=sv"} if marketing else set()
        assert {h for h in links.hrefs if "unsubscribe" in h} == wanted
        assert ".gif" not in found.html


# --- a real contact -------------------------------------------------------------------------


def test_a_real_contacts_preview_has_her_name_language_and_own_cart(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    birgitta = customer("birgitta@example.no", "Birgitta", "nb-NO")
    put(
        runtime,
        shop_id,
        product("p1", "Ullmössa Fjäll"),
        ev.CheckoutUpdated(
            occurred_at=T0,
            checkout=ev.Checkout(
                token="tok-1",
                customer=birgitta,
                email=birgitta.email,
                recovery_url=f"https://{SHOP}/checkouts/tok-1/recover",
                total=sek("249.00"),
                line_items=(ev.LineItem("Ullmössa Fjäll", 1, sek("249.00"), product_id="p1"),),
                updated_at=T0,
            ),
        ),
    )
    found = previews.preview(
        runtime, shop_id, "cart_recovery", "email_1", contact="Birgitta@Example.no"
    )
    out = found.rendered
    assert out.locale == "nb"
    assert "Birgitta" in out.html
    assert "Ullmössa Fjäll" in out.html
    assert f"https://{SHOP}/checkouts/tok-1/recover" in parsed(out.html).hrefs
    assert found.contact == "birgitta@example.no"
    assert found.sample_subject is False
    # another language when the merchant asks for one
    assert (
        previews.preview(
            runtime, shop_id, "cart_recovery", "email_1", "sv", contact=birgitta.email
        ).rendered.locale
        == "sv"
    )
    # a flow about an order she never placed: a sample order, with her name and language
    order = previews.preview(runtime, shop_id, "thank_you", "thanks", contact=birgitta.email)
    assert order.sample_subject is True
    assert order.rendered.locale == "nb"
    assert "Birgitta" in order.rendered.html
    # a flow about her: her own anniversary counts her years
    assert (
        "Birgitta"
        in previews.preview(
            runtime, shop_id, "birthday", "greeting", contact=birgitta.email
        ).rendered.html
    )


def test_a_real_contacts_order_is_her_last_one(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    karin = customer("karin@example.se", "Karin", "sv-SE")
    orders = [
        ev.OrderPlaced(
            occurred_at=T0.replace(day=day),
            order=ev.Order(
                order_id=f"o{day}",
                name=f"#10{day:02d}",
                customer=karin,
                email=karin.email,
                total=sek("249.00"),
                line_items=(ev.LineItem(title, 1, sek("249.00"), product_id=pid),),
                placed_at=T0.replace(day=day),
                updated_at=T0.replace(day=day),
                status_url=f"https://{SHOP}/orders/o{day}",
            ),
        )
        for day, title, pid in ((2, "Ullmössa", "p1"), (3, "Vantar", "p2"))
    ]
    put(runtime, shop_id, *orders)
    found = previews.preview(runtime, shop_id, "delivered_notice", "notice", contact=karin.email)
    assert found.rendered.locale == "sv"
    assert "#1003" in found.rendered.subject
    assert "Vantar" in found.rendered.html
    assert "Ullmössa" not in found.rendered.html
    assert f"https://{SHOP}/orders/o3" in parsed(found.rendered.html).hrefs


def test_a_contact_of_another_shop_or_none_at_all_is_not_found(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    other_id = make_shop(runtime, OTHER)
    put(
        runtime,
        other_id,
        ev.CustomerCreated(occurred_at=T0, customer=customer("eva@example.se", "Eva", "sv")),
    )
    for address in ("eva@example.se", "nobody@example.se"):
        with pytest.raises(previews.UnknownError) as missing:
            previews.preview(runtime, shop_id, "welcome", "welcome_1", contact=address)
        assert missing.value.field == "contact"
    assert (
        "Eva"
        in previews.preview(
            runtime, other_id, "welcome", "welcome_1", contact="eva@example.se"
        ).rendered.html
    )
    with pytest.raises(previews.InvalidError) as malformed:
        previews.preview(runtime, shop_id, "welcome", "welcome_1", contact="not an address")
    assert malformed.value.field == "contact"


def test_an_erased_customer_is_not_found(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    who = customer("ada@example.se", "Ada", "sv")
    put(runtime, shop_id, ev.CustomerCreated(occurred_at=T0, customer=who))
    assert (
        "Ada"
        in previews.preview(
            runtime, shop_id, "welcome", "welcome_1", contact=who.email
        ).rendered.html
    )
    with runtime.sessions.begin() as session:
        found = session.scalars(select(Contact).where(Contact.shop_id == shop_id)).one()
        found.redacted_at = T0
    with pytest.raises(previews.UnknownError):
        previews.preview(runtime, shop_id, "welcome", "welcome_1", contact=who.email)


def test_a_preview_writes_nothing(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    who = customer("anna@example.se", "Anna", "sv")
    put(runtime, shop_id, ev.CustomerCreated(occurred_at=T0, customer=who), product("p1", "Mössa"))
    before = counts(runtime)
    for flow_name, step in every_step():
        previews.preview(runtime, shop_id, flow_name, step, contact=who.email)
        previews.preview(runtime, shop_id, flow_name, step)
    assert counts(runtime) == before


# --- a test, to the merchant -----------------------------------------------------------------


def outbox(runtime: Runtime) -> list[EmailMessage]:
    folder = Path(runtime.settings.email_url.removeprefix("file://"))
    found = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for path in found
    ]


def test_a_test_goes_to_the_merchant_marked_as_a_test_and_is_never_counted(
    runtime: Runtime,
) -> None:
    shop_id = make_shop(
        runtime,
        sender={"name": "Nordljus", "address": "hej@nordljus.se", "reply_to": "svar@nordljus.se"},
    )
    before = counts(runtime)
    sent = previews.send_test(runtime, shop_id, "cart_recovery", "email_1", "sv")
    assert sent.to == "hej@nordljus.se"
    assert sent.language == "sv"
    [mail] = outbox(runtime)
    assert mail["To"] == "hej@nordljus.se"
    assert mail["From"] == "Nordljus <hej@nordljus.se>"
    assert mail["Reply-To"] == "svar@nordljus.se"
    assert mail["X-Triggerpost-Test"] == "1"
    assert "X-Triggerpost-Message" not in mail
    assert str(mail["Subject"]).startswith("[Test] ")
    assert mail["Subject"] == sent.subject
    assert "/preview-link/unsubscribe" in str(mail["List-Unsubscribe"])
    assert counts(runtime) == before
    fa = previews.send_test(runtime, shop_id, "welcome", "welcome_1", "fa", "Me@Example.com")
    assert fa.to == "me@example.com"
    assert fa.subject.startswith("[آزمایشی] ")


def test_a_test_to_an_address_that_is_none_is_refused_and_not_counted(runtime: Runtime) -> None:
    shop_id = make_shop(runtime)
    for bad in (
        "nobody",
        "a@b@c.se",
        "x@example.com\r\nBcc: y@example.com",
        "a@example.com, b@x.se",
    ):
        with pytest.raises(previews.InvalidError) as refused:
            previews.send_test(runtime, shop_id, "welcome", "welcome_1", "en", bad)
        assert refused.value.field == "to"
    with pytest.raises(previews.InvalidError, match="no sender address"):
        previews.send_test(runtime, shop_id, "welcome", "welcome_1", "en")
    assert outbox(runtime) == []
    assert runtime.redis.get(f"triggerpost:test-sends:{shop_id}") is None


def test_a_shop_sends_at_most_its_tests_an_hour_and_another_shop_is_not_held_back(
    runtime: Runtime,
) -> None:
    shop_id = make_shop(runtime)
    other_id = make_shop(runtime, OTHER)
    for _ in range(previews.TESTS_PER_HOUR):
        previews.send_test(runtime, shop_id, "welcome", "welcome_1", "en", "me@example.com")
    with pytest.raises(previews.TestLimitError) as limited:
        previews.send_test(runtime, shop_id, "welcome", "welcome_1", "en", "me@example.com")
    assert 0 < limited.value.retry_after <= previews.WINDOW_SECONDS
    assert "20 test emails in the last hour" in limited.value.message
    assert len(outbox(runtime)) == previews.TESTS_PER_HOUR
    previews.send_test(runtime, other_id, "welcome", "welcome_1", "en", "me@example.com")
    assert len(outbox(runtime)) == previews.TESTS_PER_HOUR + 1


def test_every_language_has_a_test_prefix_and_the_preview_link_pages() -> None:
    for language in LANGUAGES:
        subject = i18n.text(language, "test.subject", {"subject": "S"})
        assert subject.endswith("S")
        assert subject != "S"
        for key in ("page.preview.title", "page.preview.unsubscribe", "page.preview.preferences"):
            assert i18n.catalogs()[language][key]


def test_a_preview_is_the_email_the_courier_sends_but_for_where_its_links_go(
    runtime: Runtime,
) -> None:
    """Not a second renderer: a customer's planned email, composed by the courier, and
    her preview are the same words, products and layout; only the links differ (the
    courier's are tracked and can unsubscribe her, the preview's cannot)."""
    shop_id = make_shop(
        runtime,
        branding={"colour": "#aa3355", "postal_address": "Storgatan 1"},
        copy={"cart_recovery_1": {"nb": {"heading": "Hei igjen, {{ first_name }}"}}},
    )
    birgitta = customer("birgitta@example.no", "Birgitta", "nb-NO")
    put(
        runtime,
        shop_id,
        product("p1", "Ullmössa Fjäll"),
        ev.CheckoutUpdated(
            occurred_at=T0,
            checkout=ev.Checkout(
                token="tok-1",
                customer=birgitta,
                email=birgitta.email,
                recovery_url=f"https://{SHOP}/checkouts/tok-1/recover",
                total=sek("249.00"),
                line_items=(ev.LineItem("Ullmössa Fjäll", 1, sek("249.00"), product_id="p1"),),
                updated_at=T0,
            ),
        ),
    )
    with runtime.sessions() as session:
        message = session.scalars(
            select(Message).where(Message.shop_id == shop_id, Message.step == "email_1")
        ).one()
        shop = session.get_one(Shop, shop_id)
        contact = session.get_one(Contact, message.contact_id)
        composed = courier.EmailCourier(runtime, NullBackend()).compose(
            session, shop, message, contact, T0
        )
    found = previews.preview(
        runtime, shop_id, "cart_recovery", "email_1", contact=birgitta.email, at=T0
    ).rendered
    sent = composed.payload
    assert "Hei igjen, Birgitta" in found.html
    assert "/t/c/" in sent.html  # the courier's links are tracked, the preview's are not
    assert "/t/c/" not in found.html
    href = re.compile(r'(href|src)="[^"]*"')
    url = re.compile(r"https?://\S+")
    assert href.sub("link", found.html) == href.sub("link", sent.html)
    assert url.sub("link", found.text) == url.sub("link", sent.text)
    assert found.subject == sent.subject


def test_a_test_of_every_flows_first_email_leaves_marked_with_or_without_an_unsubscribe(
    runtime: Runtime,
) -> None:
    """Order emails (transactional) carry no unsubscribe, as a real one; marketing ones
    carry the page that changes nothing, in the List-Unsubscribe header too."""
    shop_id = make_shop(runtime)
    flows = list(registry.built_in().values())
    assert len(flows) <= previews.TESTS_PER_HOUR
    for flow in flows:
        previews.send_test(runtime, shop_id, flow.name, flow.sends[0].name, "ru", "me@example.com")
    mails = outbox(runtime)
    assert len(mails) == len(flows)
    transactional = [flow for flow in flows if flow.kind.value == "transactional"]
    assert transactional
    assert sum(mail["List-Unsubscribe"] is None for mail in mails) == len(transactional)
    for mail in mails:
        assert mail["X-Triggerpost-Test"] == "1"
        assert str(mail["Subject"]).startswith("[Тест] ")
        header = mail["List-Unsubscribe"]
        assert header is None or "/preview-link/unsubscribe?lang=ru" in str(header)
