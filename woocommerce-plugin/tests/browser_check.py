"""The storefront script in Debian's Chromium, on pages the plugin rendered.

Run by ``make plugin-test`` after PHPUnit: ``render-pages.php`` prints the
pages through the PHPUnit bootstrap (WordPress core, WooCommerce stand-ins),
this drives them at ``https://shop.example`` (answered from those files, so
cookies and the Origin are real) and reads what ``navigator.sendBeacon`` was
given: every body is checked against the storefront contract (§1-2). It also
leaves screenshots of the settings screen (connected, and not yet with a
bad code's notice) in var/test-artifacts/plugin/. Exits non-zero on the first broken expectation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, sync_playwright

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "triggerpost" / "assets" / "triggerpost.js"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "var/test-artifacts/plugin").resolve()
CHROMIUM = "/usr/bin/chromium"
ENDPOINT = "https://app.triggerpost.example/events/woocommerce/pk_abcdefghijklmnopqrstuvwxyz"

ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
VISITOR = re.compile(r"[A-Za-z0-9_-]{16,64}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
MONEY = re.compile(r"\d+(\.\d+)?")
AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TYPES = {"product_viewed", "product_added_to_cart", "cart_viewed", "checkout_started", "identify"}

# Record what the page gives sendBeacon (the beacon itself goes nowhere).
RECORDER = """
window.__beacons = [];
navigator.sendBeacon = function (url, blob) {
  var entry = {url: String(url), type: blob && blob.type, body: null};
  window.__beacons.push(entry);
  blob.text().then(function (text) { entry.body = text; });
  return true;
};
"""


class CheckError(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def check_product(product: dict[str, Any]) -> None:
    check(isinstance(product.get("id"), str) and product["id"].isdigit(), f"product id {product}")
    for key in ("variant_id", "title", "url", "currency", "image_url"):
        check(key not in product or isinstance(product[key], str), f"product {key} {product}")
    check("price" not in product or bool(MONEY.fullmatch(product["price"])), f"price {product}")


def check_cart(cart: dict[str, Any]) -> None:
    check(bool(TOKEN.fullmatch(cart["token"])), f"cart token {cart}")
    check(bool(MONEY.fullmatch(cart["total"])) and len(cart["currency"]) == 3, f"cart {cart}")
    check(0 < len(cart["items"]) <= 100, "cart items")
    for item in cart["items"]:
        check(
            isinstance(item["product_id"], str) and isinstance(item["title"], str), f"item {item}"
        )
        check(isinstance(item["quantity"], int) and item["quantity"] > 0, f"quantity {item}")
        check(bool(MONEY.fullmatch(item["price"])), f"item price {item}")


def check_event(event: dict[str, Any]) -> None:
    check(set(event) == {"id", "type", "at", "data"}, f"event keys {event}")
    check(bool(ID.fullmatch(event["id"])), f"event id {event['id']}")
    check(event["type"] in TYPES, f"type {event['type']}")
    check(bool(AT.fullmatch(event["at"])), f"at {event['at']}")
    data = event["data"]
    if event["type"] in ("product_viewed", "product_added_to_cart"):
        check_product(data["product"])
    if event["type"] == "product_added_to_cart":
        check(isinstance(data["quantity"], int) and data["quantity"] > 0, "add quantity")
    if event["type"] in ("cart_viewed", "checkout_started") or "cart" in data:
        check_cart(data["cart"])
    if event["type"] == "identify":
        check(
            "@" in data["email"] and data["source"] in ("customer", "checkout", "form"), "identify"
        )


def sent(page: Page) -> list[dict[str, Any]]:
    """Each beacon's JSON, checked against the contract's envelope."""
    page.wait_for_function("window.__beacons.every(function (b) { return b.body !== null; })")
    bodies = []
    for beacon in page.evaluate("window.__beacons"):
        check(beacon["url"] == ENDPOINT, f"beacon to {beacon['url']}")
        check(beacon["type"] == "text/plain;charset=utf-8", f"beacon type {beacon['type']}")
        check(len(beacon["body"].encode()) <= 16 * 1024, "body over 16 KiB")
        body = json.loads(beacon["body"])
        check(set(body) == {"visitor", "events"}, f"body keys {body}")
        check(bool(VISITOR.fullmatch(body["visitor"])), f"visitor {body['visitor']}")
        check(0 < len(body["events"]) <= 20, "events per body")
        for event in body["events"]:
            check_event(event)
        bodies.append(body)
    return bodies


def types(bodies: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for body in bodies for event in body["events"]]


def main() -> int:
    subprocess.run(["php", str(HERE / "render-pages.php"), str(OUT)], check=True)
    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        context.add_init_script(RECORDER)

        state_requests: list[dict[str, str]] = []

        def shop(route: Route) -> None:
            path = route.request.url.split("https://shop.example", 1)[1].split("?")[0]
            if "wc-ajax=triggerpost_state" in route.request.url:
                state_requests.append(route.request.headers)
                route.fulfill(path=OUT / "state.json", content_type="application/json")
            elif path.endswith("/triggerpost.js"):
                route.fulfill(body=SCRIPT.read_text(), content_type="text/javascript")
            else:
                name = path.strip("/") or "index"
                route.fulfill(path=OUT / f"{name}.html", content_type="text/html")

        context.route("https://shop.example/**", shop)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))

        # A product page after an add to cart on the page before.
        page.goto("https://shop.example/product")
        bodies = sent(page)
        check(
            types(bodies) == ["product_added_to_cart", "product_viewed"],
            f"product page: {types(bodies)}",
        )
        add, view = bodies[0]["events"]
        check(add["data"]["product"]["variant_id"] == "21", "the variation added")
        check(add["data"]["cart"]["items"][0]["product_id"] == "20", "the add carries the cart")
        check(view["data"]["product"]["title"] == 'Stoneware mug "Fika" & co\'s', "title as is")
        visitor = bodies[0]["visitor"]

        # An add that loads no page: the script asks the shop and sends what waited.
        page.evaluate("document.body.dispatchEvent(new Event('wc-blocks_added_to_cart'))")
        page.wait_for_function("window.__beacons.length === 2")
        later = sent(page)[1]["events"]
        check(types([sent(page)[1]]) == ["product_added_to_cart"], "the add fetched")
        check(later[0]["data"]["quantity"] == 2, "its quantity")
        check(later[0]["data"]["product"]["id"] == "10", "its product")
        check(len(later[0]["data"]["cart"]["items"]) == 2, "with the cart as it is now")
        check(
            len(state_requests) == 1 and state_requests[0].get("x-triggerpost") == "1",
            f"the state request: {state_requests}",
        )

        # The same visitor on the next page (first-party cookie), the cart page.
        page.goto("https://shop.example/cart")
        bodies = sent(page)
        check(types(bodies) == ["cart_viewed"], f"cart page: {types(bodies)}")
        check(bodies[0]["visitor"] == visitor, "the visitor id is kept")
        cookie = next(c for c in context.cookies() if c["name"] == "triggerpost_vid")
        check(
            cookie["value"] == visitor and cookie["secure"] and cookie["sameSite"] == "Lax",
            f"{cookie}",
        )

        # The classic checkout: at load, then as soon as the email is typed.
        page.goto("https://shop.example/checkout-classic")
        check(types(sent(page)) == ["checkout_started"], "checkout at load")
        check("email" not in sent(page)[0]["events"][0]["data"], "no email yet")
        page.fill("#billing_email", "ann@exa")
        page.wait_for_timeout(1000)
        check(len(sent(page)) == 1, "an incomplete email is not sent")
        page.type("#billing_email", "mple.com")
        page.wait_for_function("window.__beacons.length === 2")
        started = sent(page)[1]["events"][0]
        check(started["type"] == "checkout_started", "checkout again")
        check(started["data"]["email"] == "ann@example.com", "with the email")
        check(
            started["data"]["cart"]["token"] == sent(page)[0]["events"][0]["data"]["cart"]["token"],
            "same cart",
        )
        page.locator("#billing_email").dispatch_event("change")
        page.wait_for_timeout(300)
        check(len(sent(page)) == 2, "the same email is not sent twice")

        # The block checkout's email input.
        page.goto("https://shop.example/checkout-block")
        page.fill("#email", "bo@example.org")
        page.wait_for_function("window.__beacons.length === 2")
        check(
            sent(page)[1]["events"][0]["data"]["email"] == "bo@example.org", "block checkout email"
        )

        # A logged-in customer: identify once per browser session.
        page.goto("https://shop.example/customer")
        identify = sent(page)[0]["events"][0]
        check(identify["type"] == "identify", "identify")
        check(
            identify["data"]
            == {
                "email": "ann@example.com",
                "source": "customer",
                "customer_id": "42",
                "first_name": "Ann",
                "last_name": "Andersson</script><b>x",
            },
            f"identify {identify['data']}",
        )
        page.goto("https://shop.example/customer")
        check(sent(page) == [], "identify once per session")

        # Not connected: nothing is sent.
        page.goto("https://shop.example/not-connected")
        page.wait_for_timeout(300)
        check(sent(page) == [], "nothing sent when not connected")

        # A browser where sending throws: the page carries on.
        broken = context.new_page()
        broken.on("pageerror", lambda error: errors.append(str(error)))
        broken.add_init_script(
            "navigator.sendBeacon = function () { throw new Error('blocked'); };"
            "window.fetch = undefined;"
        )
        broken.goto("https://shop.example/product")
        broken.wait_for_timeout(300)
        broken.close()

        # The settings screen, as the merchant sees it.
        admin = browser.new_page(viewport={"width": 1100, "height": 900})
        for name in ("settings", "settings-unconnected"):
            admin.goto((OUT / f"{name}.html").as_uri())
            admin.screenshot(path=OUT / f"{name}.png", full_page=True)
        browser.close()
    check(errors == [], f"page errors: {errors}")
    print(f"storefront script: all checks passed; screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as failure:
        print(f"storefront script check failed: {failure}", file=sys.stderr)
        sys.exit(1)
