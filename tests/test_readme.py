"""The README stays true: set-up commands, endpoints, variables; and the code is ruff clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SPEC_VARIABLES

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_readme_starts_with_two_setup_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert len(blocks) >= 2
    run_cmd, test_cmd = blocks[0].strip(), blocks[1].strip()
    assert "ado-webhook serve" in run_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert f"TEST_COMMAND='{test_cmd}'" in ci


def test_every_route_is_documented(app) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        path = path.replace("<source_id>", "<id>").replace("<risk_id>", "<id>")
        path = re.sub(r"<(connection|template|job|hook)_id>", "<id>", path)
        assert path in README, f"README does not mention {path}"


@pytest.mark.parametrize("name", SPEC_VARIABLES)
def test_every_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in README


def test_every_command_is_documented() -> None:
    from webhook.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"ado-webhook {command}" in README


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean() -> None:
    result = subprocess.run(
        ["ruff", "check", "webhook", "tests", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
