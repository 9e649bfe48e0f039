"""The README: the front door stays short, its commands are CI's, its code uses the real API."""

from __future__ import annotations

import re

from .examples import README, ROOT, api_problems, examples


def test_the_readme_is_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_the_quick_start_test_command_is_the_one_ci_runs() -> None:
    demo, tests = (e.code.strip() for e in examples(README, "bash") if e.heading == "Quick start")
    # Issue 19: the two Quick start commands stay exactly as they were.
    assert demo == (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[spark]" '
        "&& spark-manifests demo"
    )
    ci_commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands[0] == tests


def test_every_python_example_is_marked_not_run_and_uses_the_public_api() -> None:
    # The README's examples use S3 and DynamoDB; the docs pages hold the runnable ones.
    python = examples(README, "python")
    assert python
    for example in python:
        assert example.not_run, f"README, under {example.heading!r}: mark it or run it"
        assert api_problems(example.code) == [], example.where


def test_the_readme_links_to_pages_that_exist() -> None:
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", README.read_text())
    assert links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []
