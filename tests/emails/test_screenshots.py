"""The cart-recovery email in a real headless Chromium, at phone and desktop widths.

Screenshots are written to var/test-artifacts/ (not committed) for a person to
look at; the test checks that nothing is wider than the window.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from dataclasses import replace
from decimal import Decimal
from html import escape
from pathlib import Path

import pytest

from adapters.events import Money
from emails.content import ProductBlock
from emails.render import render
from tests.emails.test_render import full

ARTIFACTS = Path(__file__).parents[2] / "var" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=3000",
]
# The email in a frame exactly as wide as the screen (headless windows have a
# minimum width, frames do not); the harness writes down how wide the email
# really laid out, once it has loaded.
HARNESS = """<!doctype html><html><body style="margin:0">
<iframe id="email" style="width:{width}px;height:2400px;border:0" srcdoc="{srcdoc}"></iframe>
<script>
window.addEventListener('load', function () {{
  var page = document.getElementById('email').contentDocument;
  var doc = page.scrollingElement || page.documentElement;
  // the right edge of anything drawn: clipped overflow counts too
  var right = 0;
  page.querySelectorAll('body *').forEach(function (el) {{
    var box = el.getBoundingClientRect();
    if (box.width > 0 && box.height > 0) right = Math.max(right, box.right);
  }});
  document.body.setAttribute('data-scroll-width', Math.max(doc.scrollWidth, Math.ceil(right)));
  document.body.setAttribute('data-client-width', doc.clientWidth);
}});
</script></body></html>"""


def chromium(args: list[str], profile: Path) -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("width", "language"), [(375, "en"), (600, "en"), (375, "fa")])
def test_cart_recovery_fits_the_screen(width: int, language: str, tmp_path: Path) -> None:
    html = render(full("cart_recovery_3", language)).html
    email = tmp_path / "email.html"
    email.write_text(html, encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"cart_recovery_3-{language}-{width}px.png"
    chromium(
        [f"--window-size={width},2400", f"--screenshot={shot}", email.as_uri()], tmp_path / "p1"
    )
    assert shot.stat().st_size > 10_000  # a real picture, not an empty page

    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS.format(width=width, srcdoc=escape(html, quote=True)), "utf-8")
    dom = chromium(["--window-size=800,2400", "--dump-dom", harness.as_uri()], tmp_path / "p2")
    scroll = re.search(r'data-scroll-width="(\d+)"', dom)
    client = re.search(r'data-client-width="(\d+)"', dom)
    assert scroll, "the email did not report its width"
    assert client
    assert int(client.group(1)) == width
    assert int(scroll.group(1)) <= width


#: a product picture that needs no network: a woollen hat drawn in SVG
HAT_PICTURE = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
        b'<rect width="400" height="400" fill="#e8e2d6"/>'
        b'<path d="M80 300 Q200 40 320 300 Z" fill="#a23b2a"/>'
        b'<rect x="70" y="290" width="260" height="50" rx="12" fill="#7d2a1e"/>'
        b'<circle cx="200" cy="95" r="30" fill="#f3efe6"/></svg>'
    ).decode()
)


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "sv", "nb", "ru", "fa"])
@pytest.mark.parametrize("picture", [True, False], ids=["with-image", "without-image"])
def test_browse_abandonment_fits_a_phone_in_every_language(
    language: str, picture: bool, tmp_path: Path
) -> None:
    """The product she looked at (with its picture, or a shop that has none for it) and
    three that go with it, at a phone's width; right to left in Persian."""
    looked_at = ProductBlock(
        title="Ullmössa Fjäll",
        url="https://nordljus.example/products/ullmossa",
        image_url=HAT_PICTURE if picture else None,
        price=Money(Decimal("299.00"), "SEK"),
    )
    offered = tuple(
        ProductBlock(
            title=f"Halsduk {n}",
            url=f"https://nordljus.example/products/halsduk-{n}",
            image_url=HAT_PICTURE if picture else None,
            price=Money(Decimal("349.00"), "SEK"),
        )
        for n in (1, 2, 3)
    )
    content = replace(
        full("browse_abandonment", language),
        products=(looked_at,),
        recommended=offered,
        discount=None,
        action_url="https://nordljus.example/products/ullmossa",
    )
    rendered = render(content)
    assert "Ullmössa Fjäll" in rendered.html
    assert rendered.direction == ("rtl" if language == "fa" else "ltr")
    email = tmp_path / "email.html"
    email.write_text(rendered.html, encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kind = "image" if picture else "no-image"
    shot = ARTIFACTS / f"browse_abandonment-{language}-{kind}-375px.png"
    chromium(["--window-size=375,2400", f"--screenshot={shot}", email.as_uri()], tmp_path / "p1")
    assert shot.stat().st_size > 10_000
    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS.format(width=375, srcdoc=escape(rendered.html, quote=True)), "utf-8")
    dom = chromium(["--window-size=800,2400", "--dump-dom", harness.as_uri()], tmp_path / "p2")
    scroll = re.search(r'data-scroll-width="(\d+)"', dom)
    assert scroll, "the email did not report its width"
    assert int(scroll.group(1)) <= 375
