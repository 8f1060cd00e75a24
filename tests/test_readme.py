"""The README's examples work as written, against a started service.

A newcomer copies the README's command blocks into a shell in a fresh clone,
with `make run` in another terminal. Every block marked
``<!-- example: ... -->`` is run here that way: as one bash script, in a
directory holding the clone's Makefile, virtualenv and examples (so that
``var/`` is its own), beside `triggerpost run` started there on a free port.
"""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
import requests

from tests.connector.test_run import free_port, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text("utf-8")
#: a marked block: the marker line, then a fenced sh block (maybe indented in a list)
EXAMPLE = re.compile(r"<!-- example:[^>]*-->\n\s*```sh\n(.*?)\n\s*```", re.S)
EXAMPLES = EXAMPLE.findall(README)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], int]]:
    """A directory as a clone is after `make run`: the service started in it."""
    where = tmp_path_factory.mktemp("clone")
    for name in (".venv", "Makefile", "pyproject.toml", "examples"):
        (where / name).symlink_to(REPO / name)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRIGGERPOST_", "MAKE", "MFLAGS")) and k != "PORT"
    } | {"PORT": str(port)}
    service = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "triggerpost"), "run", "--port", str(port)],
        cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", 60)
        yield where, env, port
    finally:
        service.send_signal(signal.SIGINT)
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        if service.stdout is not None:
            service.stdout.close()


def run_block(block: str, where: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = "\n".join(line.strip() for line in block.splitlines())
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=where, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def test_the_readme_marks_its_examples() -> None:
    assert len(EXAMPLES) >= 3
    assert any("make demo" in block for block in EXAMPLES)
    assert any("triggerpost why" in block for block in EXAMPLES)


def test_every_example_in_the_readme_works_as_written(
    clone: tuple[Path, dict[str, str], int],
) -> None:
    where, env, port = clone
    outputs = []
    for block in EXAMPLES:  # in the README's order: the demo comes first
        done = run_block(block, where, env)
        assert done.returncode == 0, (block, done.stdout, done.stderr)
        outputs.append(done.stdout)
    everything = "\n".join(outputs)

    # the demo: webhooks answered 200 by the intake, emails of several flows sent
    assert re.search(r"POST http://127\.0\.0\.1:\d+/webhooks/\w+ .* 200", everything)
    sent = re.search(r"(\d+) emails sent: (.*)", everything)
    assert sent is not None, everything
    flows = dict(re.findall(r"(\w+) (\d+)", sent.group(2)))
    assert {"welcome", "cart_recovery", "delivered_notice"} <= flows.keys(), flows
    emls = sorted((where / "var" / "outbox").glob("*.eml"))
    assert len(emls) == int(sent.group(1))
    # `why` explains a real customer of a real shop
    assert "cart_recovery/email_1        sent" in everything
    assert "delivered_notice/notice      sent" in everything
    # every link the service made reaches the port it serves on
    links = set()
    for path in emls:
        message: Message = email.message_from_bytes(path.read_bytes())
        for part in message.walk():
            if part.get_content_type() == "text/html":
                html = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                links |= set(re.findall(r'href="(http://127\.0\.0\.1:\d+/[^"]+)"', html))
    assert links, "no link to the service in the emails"
    assert all(link.startswith(f"http://127.0.0.1:{port}/") for link in links), links
    unsubscribe = next(link for link in sorted(links) if "/u/" in link)
    assert requests.get(unsubscribe.replace("&amp;", "&"), timeout=10).status_code == 200
    login = re.findall(rf"http://127\.0\.0\.1:{port}/login/\S+", everything)
    assert login, everything  # the demo's and `shop login-link`'s, to this port
    # the shops added by hand are listed
    assert "my-shop.myshopify.com" in everything
    assert "https://shop.example.com" in everything or "shop.example.com" in everything
    assert re.search(r"\d+ emails? sent, \d+ discount codes? issued", everything)


def test_the_demo_played_again_sends_nothing_twice(
    clone: tuple[Path, dict[str, str], int],
) -> None:
    where, env, _port = clone
    first = run_block("make demo", where, env)
    assert first.returncode == 0, first.stdout + first.stderr
    before = sorted((where / "var" / "outbox").glob("*.eml"))
    again = run_block(".venv/bin/triggerpost demo --wait 5", where, env)
    assert again.returncode == 0, again.stdout + again.stderr
    time.sleep(3)  # anything a second play wrongly planned would be due at once
    assert sorted((where / "var" / "outbox").glob("*.eml")) == before
