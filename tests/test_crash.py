"""A server killed with SIGKILL mid-burst loses no risk it acknowledged with 202."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import requests

from tests.conftest import risk, signed_headers
from tests.servers import ADMIN_TOKEN, query_database, running_service

# Once per storage engine (SPEC 6): SQLite, and PostgreSQL when a server is reachable.
pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("engine")]


def test_sigkill_during_burst_loses_no_acknowledged_risk(tmp_path) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with running_service(tmp_path, workers=2) as (base, proc):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        secret = requests.post(
            base + "/admin/sources", json={"name": "sast"}, headers=admin, timeout=10
        ).json()["secret"]

        def client(n: int) -> None:
            session = requests.Session()
            i = 0
            while not stop.is_set() and i < 5000:
                key = f"C{n}-{i}"
                batch = {"risks": [risk(f"{key}-{j}") for j in range(5)]}
                body = json.dumps(batch).encode()
                try:
                    resp = session.post(
                        base + "/webhooks/risks/sast",
                        data=body,
                        headers=signed_headers(secret, body),
                        timeout=5,
                    )
                except requests.RequestException:
                    i += 1
                    continue
                if resp.status_code == 202:
                    with lock:
                        acknowledged.extend(r["key"] for r in resp.json()["risks"])
                i += 1
            session.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert len(acknowledged) > 20, "the burst should have been acknowledged in part"
    stored = {k for (k,) in query_database(tmp_path, "SELECT key FROM risks")}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged risks lost"
