"""No module outside a platform's own folders names a platform.

What differs between platforms is declared by each platform (``Platform``,
``PlatformServer``, ``ConnectorPlatform``) and asked through the registries;
a name in generic code is a branch a new platform would have to find. Only
code counts: identifiers and string literals, not comments or docstrings.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("adapters", "connector", "emails", "jobs")
PLATFORM_NAMES = ("shopify", "woocommerce")
NAMED = re.compile("|".join(PLATFORM_NAMES), re.IGNORECASE)

#: a platform's own folders, per layer
OWN = (
    "adapters/shopify/",
    "adapters/woocommerce/",
    "jobs/platforms/shopify.py",
    "jobs/platforms/shopify_catchup.py",  # its catch-up and history source, beside it
    "jobs/platforms/shopify_history.py",
    "jobs/platforms/woocommerce.py",
    "connector/platforms/shopify.py",
    "connector/platforms/woocommerce.py",
)
#: one import and one entry per platform, nothing else
REGISTRIES = (
    "adapters/registry.py",
    "jobs/platforms/registry.py",
    "connector/platforms/registry.py",
)
REGISTRY_LINE = re.compile(
    r"^\s*(from [\w.]+ import \w+ as (?P<alias>\w+)|\"(?P<key>\w+)\": (?P<value>\w+),)\s*$"
)
#: the environment's names (TRIGGERPOST_SHOPIFY_API_KEY, ...) are the operator's
#: interface, read once into the settings object; and the index of every RQ job
#: lists a platform's own jobs under it (one thin call each into its module), so
#: an operator reads every job in one place
EXEMPT = ("jobs/settings.py", "jobs/tasks.py")


def _documentation(source: str) -> set[tuple[int, int]]:
    """Where string statements (docstrings, attribute docs) start: prose, not code."""
    return {
        (node.lineno, node.col_offset)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def platform_names_in(source: str, *, registry: bool = False) -> list[str]:
    """``line: token`` for every identifier or string literal naming a platform."""
    prose = _documentation(source)
    lines = source.splitlines()
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.STRING) or token.start in prose:
            continue
        if not NAMED.search(token.string):
            continue
        if registry and _registry_line(lines[token.start[0] - 1]):
            continue
        found.append(f"{token.start[0]}: {token.string}")
    return found


def _registry_line(line: str) -> bool:
    match = REGISTRY_LINE.match(line)
    if match is None:
        return False
    if match["alias"] is not None:
        return match["alias"] in PLATFORM_NAMES
    return match["key"] == match["value"] and match["key"] in PLATFORM_NAMES


def _generic_modules() -> list[str]:
    paths = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if "/migrations/" in relative or relative.startswith(OWN) or relative in EXEMPT:
                continue
            paths.append(relative)
    return paths


@pytest.mark.parametrize("module", _generic_modules())
def test_no_module_outside_a_platforms_folders_names_a_platform(module: str) -> None:
    source = (REPO / module).read_text(encoding="utf-8")
    assert platform_names_in(source, registry=module in REGISTRIES) == []


def test_a_branch_on_a_platform_name_is_found() -> None:
    source = 'def f(shop):\n    if shop.platform == "shopify":\n        return 1\n'
    assert platform_names_in(source) == ['2: "shopify"']


def test_comments_and_docstrings_may_name_a_platform_as_an_example() -> None:
    source = '"""Like Shopify."""\n\n# WooCommerce too\nX = 1  #: Shopify\n'
    assert platform_names_in(source) == []


def test_a_registry_may_name_a_platform_only_in_its_import_and_its_entry() -> None:
    source = (
        "from adapters.shopify import PLATFORM as shopify\n"
        "TABLE = {\n"
        '    "shopify": shopify,\n'
        "}\n"
        'DEFAULT = "shopify"\n'
    )
    assert platform_names_in(source, registry=True) == ['5: "shopify"']
