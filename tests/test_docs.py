"""docs/architecture.md is the map of the code: every module is on it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAP = (REPO / "docs" / "architecture.md").read_text()
MODULES = sorted(
    path.relative_to(REPO).as_posix()
    for package in ("adapters", "connector", "emails", "jobs")
    for path in (REPO / package).rglob("*.py")
    if path.name != "__init__.py" and "migrations" not in path.parts
)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_on_the_map(module: str) -> None:
    assert Path(module).name in MAP, f"{module} is not in docs/architecture.md's layout"


def test_every_folder_is_on_the_map() -> None:
    folders = {Path(module).parent.name + "/" for module in MODULES if "/" in module}
    missing = [folder for folder in sorted(folders) if folder not in MAP]
    assert missing == []
