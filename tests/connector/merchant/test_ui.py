"""The merchant UI in Swedish: every string has its translation, with the same placeholders."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from connector.merchant import areas, ui
from jobs.flows import registry

ROOT = Path(__file__).parents[3]
TEMPLATES = ROOT / "connector" / "templates" / "merchant"
MODULES = ROOT / "connector" / "merchant"
#: ``_("text")`` or ``_('text')`` in a template, with any arguments after it
IN_TEMPLATE = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def template_strings() -> set[str]:
    found: set[str] = set()
    for path in TEMPLATES.rglob("*.html"):
        for double, single in IN_TEMPLATE.findall(path.read_text("utf-8")):
            found.add(double or single)
    return found


def module_strings() -> set[str]:
    """Literal first arguments of ``_(...)``, ``translate(...)`` and ``nav_item(.., label)``."""
    found: set[str] = set()
    for path in MODULES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("_", "translate") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
            if name == "nav_item" and len(node.args) >= 2:
                label = node.args[1]
                if isinstance(label, ast.Constant) and isinstance(label.value, str):
                    found.add(label.value)
    return found


def shown_strings() -> set[str]:
    assert areas.AREAS
    flows = registry.flows().values()
    return (
        template_strings()
        | module_strings()
        | {flow.title for flow in flows}
        | {flow.summary for flow in flows}
        | {item.label for item in ui.NAV}
    )


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_string_of_the_merchant_ui_has_a_swedish_translation() -> None:
    swedish = ui.catalog("sv")
    strings = shown_strings()
    assert len(strings) > 30  # the extraction finds the UI's strings at all
    missing = sorted(text for text in strings if text not in swedish)
    assert not missing, "no Swedish for:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders() -> None:
    for english, swedish in ui.catalog("sv").items():
        assert placeholders(swedish) == placeholders(english), english


def test_a_placeholder_the_caller_forgot_shows_the_english_text_not_an_error() -> None:
    assert ui.translate("{flow} is on.") == "{flow} is on."
    assert ui.translate("{flow} is on.", flow="Win-back") == "Win-back is on."
