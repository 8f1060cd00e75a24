"""A newcomer's service on a port something else holds: told at once, in words."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "connector.cli"]


def environment(data: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")} | {
        "TRIGGERPOST_DATA_DIR": str(data)
    }


@pytest.fixture
def busy_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder, holder.getsockname()[1]
    holder.close()


def test_run_on_a_busy_port_says_so_before_any_banner_and_exits_non_zero(
    tmp_path: Path, busy_port: tuple[socket.socket, int]
) -> None:
    _holder, port = busy_port
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "run", "--port", str(port)],
        env=environment(tmp_path / "var"), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 15  # no half a minute of gunicorn retries
    assert f"port {port} on 127.0.0.1 is not free" in done.stderr
    assert f"--port {port + 1}" in done.stderr
    assert "triggerpost is running" not in done.stdout
    assert "Listening at" not in done.stdout + done.stderr


def test_web_on_a_busy_port_says_so_and_exits_non_zero(
    tmp_path: Path, busy_port: tuple[socket.socket, int]
) -> None:
    _holder, port = busy_port
    env = environment(tmp_path / "var")
    subprocess.run([*CLI, "migrate"], env=env, capture_output=True, check=True)
    done = subprocess.run(
        [*CLI, "web", "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is not free" in done.stderr
    assert "Booting worker" not in done.stderr
