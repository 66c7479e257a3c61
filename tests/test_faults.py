"""Fault suite: SIGKILL of web and worker processes during a burst while Azure DevOps answers
slowly; afterwards every accepted risk exists and has exactly one work item."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import pat_connection, risk, signed_headers
from tests.e2e import tracking_tags, wait_for
from tests.servers import ADMIN_TOKEN, free_port, query_database, running_service, service_env
from webhook.sandbox import Sandbox

# Once per storage engine (SPEC 6): SQLite, and PostgreSQL when a server is reachable.
pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("engine")]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def burst(
    base: str | list[str],
    secret: str,
    prefix: str,
    stop: threading.Event,
    accepted: list[str],
    sent: list[str],
    lock: threading.Lock,
) -> None:
    """Post 3-risk batches until `stop` (to each of several web nodes in turn); record what
    was sent and what was acknowledged (202)."""
    bases = [base] if isinstance(base, str) else base
    session = requests.Session()
    for i in range(400):
        if stop.is_set():
            break
        keys = [f"{prefix}-{i}-{j}" for j in range(3)]
        body = json.dumps({"risks": [risk(k) for k in keys]}).encode()
        with lock:
            sent.extend(keys)
        try:
            resp = session.post(
                bases[i % len(bases)] + "/webhooks/risks/sast",
                data=body,
                headers=signed_headers(secret, body),
                timeout=5,
            )
        except requests.RequestException:
            continue
        if resp.status_code == 202:
            with lock:
                accepted.extend(keys)
    session.close()


def test_sigkill_web_and_worker_during_burst_with_slow_azure_devops(tmp_path) -> None:
    accepted: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    with Sandbox(latency=0.08) as sb:
        port = free_port()
        env = service_env(
            tmp_path,
            WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sb.url).netloc,
            WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        )
        with running_service(tmp_path, env=env, port=port) as (base, proc):
            conn = requests.post(
                base + "/admin/connections",
                headers=ADMIN,
                timeout=30,
                json=pat_connection(sb.org_url, sb.pat, name="sb"),
            ).json()["id"]
            requests.post(
                base + "/admin/templates",
                headers=ADMIN,
                timeout=30,
                json={
                    "name": "bugs",
                    "connection_id": conn,
                    "project": "AppSec",
                    "work_item_type": "Bug",
                    "auto_create": True,
                    "severity_threshold": "low",
                },
            ).raise_for_status()
            secret = requests.post(
                base + "/admin/sources", json={"name": "sast"}, headers=ADMIN, timeout=10
            ).json()["secret"]
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=burst, args=(base, secret, f"a{n}", stop, accepted, sent, lock)
                )
                for n in range(3)
            ]
            for t in threads:
                t.start()
            time.sleep(2.0)
            os.killpg(proc.pid, signal.SIGKILL)  # gunicorn master, web workers and the worker
            proc.wait(timeout=10)
            stop.set()
            for t in threads:
                t.join(timeout=30)
        killed_at = len(accepted)
        with running_service(tmp_path, env=env, port=port) as (base, proc):
            stop = threading.Event()
            t = threading.Thread(target=burst, args=(base, secret, "b", stop, accepted, sent, lock))
            t.start()
            time.sleep(1.0)
            # Kill only the sync worker child this time, mid-drain; serve restarts it.
            children = os.popen(f"pgrep -f 'webhook.cli worker' -g {proc.pid}").read().split()
            for pid in children:
                os.kill(int(pid), signal.SIGKILL)
            t.join(timeout=60)

            def open_jobs() -> dict[str, int]:
                return {
                    state: requests.get(
                        base + "/admin/jobs", headers=ADMIN, timeout=10, params={"state": state}
                    ).json()["total"]
                    for state in ("pending", "running", "failed")
                }

            def drained() -> bool:
                return not any(open_jobs().values())

            try:
                wait_for(drained, timeout=300, interval=0.5)
            except AssertionError:
                failed = requests.get(
                    base + "/admin/jobs", headers=ADMIN, timeout=10, params={"state": "failed"}
                ).json()["items"][:3]
                raise AssertionError(f"not drained: {open_jobs()}, e.g. {failed}") from None
            items = [w for w in sb.work_items() if not w["deleted"]]
    tags = tracking_tags(items)
    stored = {k for (k,) in query_database(tmp_path, "SELECT key FROM risks")}
    linked = query_database(tmp_path, "SELECT count(*) FROM work_items")[0][0]
    figures = {
        "sent": len(sent),
        "accepted": len(accepted),
        "accepted_before_kill": killed_at,
        "stored": len(stored),
        "work_items": len(items),
        "linked": linked,
        "duplicates": sum(n - 1 for n in tags.values()),
    }
    print("fault-suite figures:", json.dumps(figures))
    (tmp_path.parent / "fault-figures.json").write_text(json.dumps(figures))
    assert killed_at > 0
    assert set(accepted) <= stored, "an acknowledged risk was lost"
    assert figures["duplicates"] == 0
    assert len(items) == len(stored) == linked, figures
