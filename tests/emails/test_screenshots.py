"""The cart-recovery email in a real headless Chromium, at phone and desktop widths.

Screenshots are written to var/test-artifacts/ (not committed) for a person to
look at; the test checks that nothing is wider than the window.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

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
