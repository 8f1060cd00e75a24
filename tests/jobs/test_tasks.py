"""The index of jobs: every job is enqueued by its path in jobs.tasks, and found there."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import tasks

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("jobs", "connector", "adapters", "emails")
JOB_PATH = re.compile(r"""["']jobs\.tasks\.(\w+)["']""")


def sources() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def enqueued_paths() -> dict[str, list[str]]:
    """Each job named by path anywhere in the code, and where."""
    found: dict[str, list[str]] = {}
    for path in sources():
        for name in JOB_PATH.findall(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def job_functions() -> dict[str, object]:
    return {
        name: function
        for name, function in inspect.getmembers(tasks, inspect.isfunction)
        if function.__module__ == tasks.__name__
    }


def test_every_job_path_named_in_the_code_is_a_function_in_jobs_tasks() -> None:
    named = enqueued_paths()
    assert named, "no job is enqueued by its path"
    for name, where in named.items():
        assert callable(getattr(tasks, name, None)), f"jobs.tasks.{name} (named in {where})"


def test_every_job_in_jobs_tasks_is_enqueued_somewhere_and_listed_in_the_index() -> None:
    named = enqueued_paths()
    index = tasks.__doc__ or ""
    for name in job_functions():
        assert name in named, f"jobs.tasks.{name} is never enqueued"
        assert f"``{name}(" in index, f"jobs.tasks.{name} is missing from the module's index"


@pytest.mark.parametrize("name", sorted(job_functions()))
def test_a_job_path_resolves_as_rq_resolves_it(name: str) -> None:
    module, _, attribute = f"jobs.tasks.{name}".rpartition(".")
    assert getattr(importlib.import_module(module), attribute) is getattr(tasks, name)


def test_nothing_in_the_code_imports_jobs_tasks() -> None:
    importers = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            if any(n == "jobs.tasks" or n.startswith("jobs.tasks.") for n in names):
                importers.append(str(path.relative_to(REPO)))
    assert importers == []


def test_the_engine_imports_neither_sending_nor_platforms() -> None:
    engine = sorted(
        f"jobs.engine.{path.stem}"
        for path in (REPO / "jobs" / "engine").glob("*.py")
        if path.stem != "__init__"
    )
    check = (
        f"import sys\nfor name in {engine!r}:\n    __import__(name)\n"
        "print('\\n'.join(m for m in sys.modules"
        " if m.startswith(('jobs.sending', 'jobs.platforms', 'jobs.tasks'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.split() == []
