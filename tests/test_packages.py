"""`adapters` and `emails` are also names of unrelated PyPI packages: ours must win."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["adapters", "emails", "jobs", "connector"])
def test_package_resolves_inside_this_repo(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


def test_event_model_imports_no_infrastructure() -> None:
    source = (REPO / "adapters" / "events.py").read_text()
    for forbidden in ("flask", "rq", "redis", "sqlalchemy"):
        assert f"import {forbidden}" not in source
        assert f"from {forbidden}" not in source
