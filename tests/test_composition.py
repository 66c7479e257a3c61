"""The composition root: services built once per process, dependencies pointing one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import ADMIN_TOKEN, make_settings
from webhook import create_app
from webhook.services import Services
from webhook.settings import SettingsError
from webhook.worker import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def imports_of(module: str) -> set[str]:
    """The project modules a module imports (anywhere in it, functions included)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("webhook")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("webhook.worker", {"webhook.sync", "webhook.callbacks", "webhook.services"}),
        ("webhook.sync", {"webhook.worker", "webhook.services"}),
        ("webhook.callbacks", {"webhook.worker", "webhook.sync"}),
        ("webhook.gateway", {"webhook.worker", "webhook.sync"}),
    ],
)
def test_worker_and_handlers_do_not_import_each_other(module: str, forbidden: set[str]) -> None:
    assert not imports_of(module) & forbidden


def test_admin_requests_share_one_gateway_and_its_clients(tmp_path: Path) -> None:
    app: Flask = create_app(make_settings(tmp_path))
    services: Services = app.extensions["adowh"]
    client = app.test_client()
    connection = services.store.create_connection(
        "org", "https://dev.azure.com/example", {"type": "pat", "token": "p" * 20}
    ).id
    with app.test_request_context():
        first = services.gateway.client(connection)
    assert client.get("/admin/hooks", headers=ADMIN).status_code == 200
    # The same gateway object serves every request and the worker: a client built for this
    # thread is reused, not thrown away with a per-request gateway.
    assert services.gateway.client(connection) is first
    assert services.subscriptions.gateway is services.gateway
    assert services.sync.gateway is services.gateway


@pytest.mark.e2e
def test_importing_metrics_creates_no_metric() -> None:
    code = (
        "from prometheus_client import REGISTRY\n"
        "import webhook.metrics, webhook.worker, webhook.sync\n"
        "names = [m.name for m in REGISTRY.collect() if m.name.startswith('adowh_')]\n"
        "assert names == [], names\n"
        "webhook.metrics.process_metrics()\n"
        "assert any(m.name == 'adowh_jobs_completed' for m in REGISTRY.collect())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_retry_backoff_comes_from_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, WEBHOOK_RETRY_BASE_SECONDS="0.2", WEBHOOK_RETRY_CAP_SECONDS="2"
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(base=0.2, cap=2.0)
    assert RetryPolicy.from_settings(make_settings(tmp_path)) == RetryPolicy(base=2.0, cap=600.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_RETRY_BASE_SECONDS", "soon"),
        ("WEBHOOK_RETRY_CAP_SECONDS", "-1"),
        ("WEB_CONCURRENCY", "0"),
    ],
)
def test_bad_tuning_variables_are_named(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        make_settings(tmp_path, **{name: value})
