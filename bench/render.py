"""Email rendering benchmark: our path against compiling MJML for every email.

Renders the cart-recovery email (3 products, a discount code, Swedish) N times:

- ours: ``emails.render.render`` (the template compiled once; per email only Jinja);
- naive MRML: per email, fill the MJML with the email's data, compile it with
  MRML (mjml-python) and inline the CSS, as a template-per-send design would;
- Node's mjml (the reference implementation), when ``node`` and the ``mjml``
  npm package are available (``make bench-render`` installs it under
  var/bench-node), compiling the same filled MJML N times in one process.

Prints emails/s for each and the ratios. Figures only: nothing asserts timings.

    .venv/bin/python bench/render.py [--emails 2000] [--node-dir var/bench-node]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from statistics import median

import css_inline
from mjml import mjml2html

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.events import Money
from emails import i18n
from emails.content import Brand, DiscountBlock, EmailContent, MessageKind, ProductBlock
from emails.render import EMAIL, STRUCTURE, render

BRAND = Brand(
    shop_name="Nordljus",
    storefront_url="https://nordljus.example",
    sender_name="Nordljus",
    logo_url="https://cdn.example/logo.png",
    colour="#0b6e4f",
    postal_address="Storgatan 1, 903 26 Umeå",
)


def content(n: int) -> EmailContent:
    return EmailContent(
        template="cart_recovery_3",
        kind=MessageKind.MARKETING,
        brand=BRAND,
        locale="sv-SE",
        first_name=f"Åsa {n}",
        products=tuple(
            ProductBlock(
                title=f"Ullmössa {i}",
                url=f"https://nordljus.example/products/{i}",
                image_url=f"https://cdn.example/{i}.jpg",
                price=Money(Decimal("499.00"), "SEK"),
                quantity=i,
                variant="Grå",
            )
            for i in (1, 2, 3)
        ),
        action_url="https://nordljus.example/cart",
        discount=DiscountBlock("TP-7KQ2M", datetime(2026, 3, 5, tzinfo=UTC), percent=Decimal(10)),
        unsubscribe_url="https://tp.example/u/1/token",
        preferences_url="https://tp.example/p/1/token",
        link=lambda url: "https://tp.example/t/c/1/" + url[-12:],
    )


def filled_mjml(n: int) -> str:
    """The MJML with this email's data already in it (what a naive design compiles)."""
    source = STRUCTURE.get_template("cart_recovery_3.mjml").render(
        rtl=False, align="left", c=lambda cls: cls
    )
    rendered = render(content(n))  # only to reuse the same words and values
    values = {
        "lang": "sv",
        "direction": "ltr",
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "heading": "Här är en kod, bara för dig",
        "greeting": f"Hej Åsa {n}!",
        "body": ["Din varukorg är fortfarande sparad."],
        "button_label": "Använd min kod",
        "action_url": "https://nordljus.example/cart",
        "products": [
            {"title": f"Ullmössa {i}", "url": f"https://nordljus.example/products/{i}",
             "image_url": f"https://cdn.example/{i}.jpg", "price": "499,00 kr", "quantity": i,
             "variant": "Grå"}
            for i in (1, 2, 3)
        ],
        "discount": {"code": "TP-7KQ2M", "label": "10 % rabatt", "expires": "5 mars 2026"},
        "brand": BRAND,
        "labels": {k: i18n.text("sv", k, {"shop_name": "Nordljus"}) for k in
                   ("why_marketing", "unsubscribe", "preferences", "quantity")},
        "link": lambda url: "https://tp.example/t/c/1/" + url[-12:],
        "unsubscribe_url": "https://tp.example/u/1/token",
        "preferences_url": "https://tp.example/p/1/token",
        "open_pixel_url": None,
    }  # fmt: skip
    return EMAIL.from_string(source).render(**values)


def rate(label: str, count: int, seconds: float) -> float:
    per_second = count / seconds
    print(f"  {label:<44} {per_second:>9.0f} emails/s  ({seconds / count * 1000:.3f} ms each)")
    return per_second


def bench_ours(count: int) -> float:
    render(content(0))  # the one compile, before timing
    start = time.perf_counter()
    for n in range(count):
        render(content(n))
    return rate("ours: compiled once, Jinja per email", count, time.perf_counter() - start)


def bench_naive(count: int) -> tuple[float, float]:
    sources = [filled_mjml(n) for n in range(count)]
    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    start = time.perf_counter()
    for source in sources:
        inliner.inline(mjml2html(source))
    full = rate("naive: MRML compile + CSS inline per email", count, time.perf_counter() - start)
    start = time.perf_counter()
    for source in sources:
        mjml2html(source)
    bare = rate("naive: MRML compile alone per email", count, time.perf_counter() - start)
    return full, bare


NODE_SCRIPT = """
const mjml = require(process.argv[2]);
const fs = require('fs');
const source = fs.readFileSync(process.argv[3], 'utf8');
const count = parseInt(process.argv[4], 10);
mjml(source, {validationLevel: 'skip'});
const start = process.hrtime.bigint();
for (let i = 0; i < count; i++) mjml(source, {validationLevel: 'skip'});
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({seconds}));
"""


def bench_node(count: int, node_dir: Path) -> float | None:
    node = shutil.which("node")
    module = node_dir / "node_modules" / "mjml"
    if node is None or not module.exists():
        print(f"  Node mjml: not available (needs node and `npm install --prefix {node_dir} mjml`)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "email.mjml"
        source.write_text(filled_mjml(0), encoding="utf-8")
        script = Path(tmp) / "bench.js"
        script.write_text(NODE_SCRIPT)
        done = subprocess.run(
            [node, str(script), str(module.resolve()), str(source), str(count)],
            capture_output=True,
            text=True,
            check=True,
        )
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return rate("Node mjml (reference), one process", count, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--node-emails", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node-dir", type=Path, default=Path("var/bench-node"))
    args = parser.parse_args()
    print(f"cart-recovery email, 3 products, Swedish; {args.emails} emails a round")
    # Rounds alternate between the contestants, so a slow spell of a shared
    # machine hits all of them; the medians are compared.
    ours, naive, bare, node = [], [], [], []
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}:")
        ours.append(bench_ours(args.emails))
        full, alone = bench_naive(args.emails)
        naive.append(full)
        bare.append(alone)
        measured = bench_node(args.node_emails, args.node_dir)
        if measured:
            node.append(measured)
    ours_m, naive_m, bare_m = median(ours), median(naive), median(bare)
    node_text = f", Node mjml {median(node):.1f}" if node else ""
    print(f"medians of {args.rounds} rounds (emails/s): ours {ours_m:.0f}, naive {naive_m:.0f}, "
          f"MRML alone {bare_m:.0f}{node_text}")  # fmt: skip
    print("ratios:")
    print(f"  ours / naive MRML + inline   {ours_m / naive_m:6.1f}x  (target >= 1.5)")
    print(f"  ours / MRML compile alone    {ours_m / bare_m:6.1f}x")
    if node:
        print(f"  ours / Node mjml             {ours_m / median(node):6.1f}x  (target >= 50)")
        print(f"  MRML alone / Node mjml       {bare_m / median(node):6.1f}x")
    size = len(render(content(0)).html.encode())
    print(f"HTML size: {size / 1024:.1f} KiB (Gmail clips above ~102 KiB)")


if __name__ == "__main__":
    main()
