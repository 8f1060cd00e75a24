"""``triggerpost why`` and ``triggerpost simulate``: the decision log for people and machines."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from jobs.runtime import Runtime
from tests.jobs.engine_support import SHOP, T0, Harness, checkout, customer, hours, order

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "cart_recovery.json"


def _env(runtime: Runtime) -> dict[str, str]:
    settings = runtime.settings
    return {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
    }


def test_why_prints_a_contacts_timeline(runtime: Runtime) -> None:
    shop = Harness(runtime)
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.at(T0 + hours(3), order("1", T0 + hours(3), anna, "tok-1"))
    shop.run(T0 + hours(100))
    result = CliRunner().invoke(main, ["why", SHOP, "Anna@Example.se"], env=_env(runtime))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Anna@Example.se at engine-test.myshopify.com: consent subscribed")
    assert any(
        "cart_recovery/email_1" in line
        and line.endswith("sent (subscribed via test on 2026-03-02)")
        for line in lines
    )
    assert any(line.endswith("exited:checkout_completed") for line in lines)

    as_json = CliRunner().invoke(
        main, ["why", str(shop.shop_id), "anna@example.se", "--json"], env=_env(runtime)
    )
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["outcome"] for r in rows if r["step"] == "email_1"] == ["planned", "sent"]


def test_why_says_clearly_when_it_knows_nobody(runtime: Runtime) -> None:
    Harness(runtime)
    unknown_shop = CliRunner().invoke(
        main, ["why", "nope.myshopify.com", "a@b.se"], env=_env(runtime)
    )
    assert unknown_shop.exit_code != 0
    assert "no shop" in unknown_shop.output
    unknown = CliRunner().invoke(main, ["why", SHOP, "nobody@example.se"], env=_env(runtime))
    assert unknown.exit_code != 0
    assert "no contact" in unknown.output


def test_simulate_runs_the_example_scenario(tmp_path: Path) -> None:
    env = {"TRIGGERPOST_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["simulate", str(EXAMPLE), "--json"], env=env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    outcomes = [(r["step"], r["outcome"], r["reason"]) for r in payload["timeline"]]
    assert ("email_1", "sent", None) in outcomes
    assert ("email_2", "exited", "checkout_completed") in outcomes
    assert [s["to"] for s in payload["sent"]] == ["anna@example.se"]
    # the real store was never touched
    assert not (tmp_path / "triggerpost.db").exists()


def test_simulate_refuses_a_broken_scenario(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"events": [{"at": "2026-01-01T00:00:00", "event": {"type": "Nope"}}]}')
    result = CliRunner().invoke(
        main, ["simulate", str(broken)], env={"TRIGGERPOST_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code != 0
    assert "scenario" in result.output


def test_the_readme_s_simulate_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    commands = re.findall(
        r"^\s*(?:\.venv/bin/)?triggerpost (simulate [^#\n]*?)\s*(?:#.*)?$", readme, re.M
    )
    assert len(commands) >= 2
    monkeypatch.chdir(REPO)  # the paths are the repository's
    for command in commands:
        args = shlex.split(command)
        result = CliRunner().invoke(main, args, env={"TRIGGERPOST_DATA_DIR": str(tmp_path)})
        assert result.exit_code == 0, (command, result.output)
        assert re.search(r"\d+ emails? sent", result.output), command
