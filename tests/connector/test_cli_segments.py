"""``triggerpost segment count|sample``: how many and who, for merchants and for tests."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from jobs.runtime import Runtime
from tests.connector.test_cli_engine import _env
from tests.jobs.engine_support import SHOP, T0, Harness, checkout, customer


def _shop(runtime: Runtime) -> Harness:
    shop = Harness(runtime)
    for n, country in enumerate(("SE", "SE", "NO")):
        who = customer(f"p{n}@example.se", customer_id=f"c{n}", country=country)
        shop.at(T0, checkout(f"tok-{n}", T0, who))
    return shop


def test_count_and_sample_answer_how_many_and_who(runtime: Runtime, tmp_path: Path) -> None:
    _shop(runtime)
    swedes = tmp_path / "swedes.json"
    swedes.write_text(json.dumps({"field": "country", "op": "in", "value": ["SE"]}))
    counted = CliRunner().invoke(main, ["segment", "count", SHOP, str(swedes)], env=_env(runtime))
    assert counted.exit_code == 0, counted.output
    assert counted.output == f"{SHOP}: 2 contacts in the segment\n"
    as_json = CliRunner().invoke(
        main, ["segment", "count", SHOP, str(swedes), "--json"], env=_env(runtime)
    )
    assert json.loads(as_json.output) == {"shop": SHOP, "count": 2}

    sampled = CliRunner().invoke(
        main,
        ["segment", "sample", SHOP, str(swedes), "--limit", "1", "--json"],
        env=_env(runtime),
    )
    assert sampled.exit_code == 0, sampled.output
    rows = [json.loads(line) for line in sampled.output.splitlines()]
    assert [(r["email"], r["country"], r["orders_count"]) for r in rows] == [
        ("p1@example.se", "SE", 0)
    ]
    lines = CliRunner().invoke(main, ["segment", "sample", SHOP, str(swedes)], env=_env(runtime))
    assert lines.output.splitlines() == [
        "p1@example.se (Anna): 0 orders, 0 spent, SE",
        "p0@example.se (Anna): 0 orders, 0 spent, SE",
    ]


def test_a_built_in_segment_is_named_as_a_json_string(runtime: Runtime, tmp_path: Path) -> None:
    _shop(runtime)
    named = tmp_path / "named.json"
    named.write_text('"repeat-buyers"')
    counted = CliRunner().invoke(main, ["segment", "count", SHOP, str(named)], env=_env(runtime))
    assert counted.output == f"{SHOP}: 0 contacts in the segment\n"


def test_a_bad_segment_file_is_refused_with_where_and_what(
    runtime: Runtime, tmp_path: Path
) -> None:
    _shop(runtime)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"any": [{"field": "country", "op": "in", "value": ["Sweden"]}]}))
    refused = CliRunner().invoke(main, ["segment", "count", SHOP, str(bad)], env=_env(runtime))
    assert refused.exit_code != 0
    assert "any[0].value[0]: must be a two-letter country code, e.g. SE" in refused.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    refused = CliRunner().invoke(main, ["segment", "sample", SHOP, str(broken)], env=_env(runtime))
    assert refused.exit_code != 0
    assert "broken.json: not JSON" in refused.output
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused = CliRunner().invoke(main, ["segment", "count", SHOP, str(deep)], env=_env(runtime))
    assert refused.exit_code == 1  # said, not a traceback
    assert "deep.json: not JSON" in refused.output
    unknown = CliRunner().invoke(
        main, ["segment", "count", SHOP, str(tmp_path / "none.json")], env=_env(runtime)
    )
    assert unknown.exit_code != 0
    assert "no such file" in unknown.output
