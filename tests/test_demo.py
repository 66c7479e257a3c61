"""`ado-webhook demo` runs the whole loop end to end and keeps secrets out of its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers

# Once per storage engine (SPEC 6): the demo honours WEBHOOK_DATABASE_URL.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("engine")]

REPO = Path(__file__).resolve().parent.parent


def run_demo(cwd: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    """`ado-webhook demo` in `cwd` with no WEBHOOK_* variable but the database URL, if any."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(REPO)
    if database_url:
        env["WEBHOOK_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_the_whole_loop_without_leaking_secrets(tmp_path: Path) -> None:
    """The demo exits 0, narrates the resolution and the callback, and prints no secret."""
    done = run_demo(tmp_path, servers.DATABASE_URL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"DEMO-1 resolved: state Closed, by Dana Developer", output), output
    assert "below the template's threshold" in output
    assert re.search(r"callback 'risk\.resolution_changed': DEMO-1 is now resolved", output)
    assert "signature verified" in output
    assert "sandbox-pat-" not in output
    assert "whsec_" not in output
    assert "admin token" not in output
    removed = re.search(r"removed (\S+)\.$", done.stdout.strip())
    assert removed and not Path(removed.group(1)).exists()
