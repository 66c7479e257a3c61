"""Work item creation throughput: 2,000 risks above threshold drained against the Azure DevOps
stand-in with 50 ms added latency per call. Prints work items/s and the duplicate count.
Target: at least 40 items/s with no duplicates.
Usage: python -m bench.drain [--risks 2000] [--latency 0.05] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

from bench.common import REPO, free_port, kill, python, spawn, spawn_serve, wait_http
from webhook.domain.signatures import sign

ADMIN = "bench-admin-token-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--risks", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    sandbox = subprocess.Popen(
        [python(), "-m", "webhook.sandbox", "--port", "0", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    assert sandbox.stdout is not None
    facts = json.loads(sandbox.stdout.readline())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "WEBHOOK_DB": str(work / "var/webhook.db"),
            "WEBHOOK_ADMIN_TOKEN": ADMIN,
            "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
            "WEBHOOK_LOG_LEVEL": "WARNING",
            "WEBHOOK_ALLOWED_ORG_HOSTS": urlsplit(facts["url"]).netloc,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        port = free_port()
        svc = spawn_serve(env, work, port, 2)
        worker = None
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz")
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {ADMIN}"
            conn = http.post(
                base + "/admin/connections",
                json={
                    "name": "sb",
                    "organization_url": facts["org_url"],
                    "auth": {"type": "pat", "token": facts["pat"]},
                },
                timeout=60,
            ).json()["id"]
            http.post(
                base + "/admin/templates",
                json={
                    "name": "bugs",
                    "connection_id": conn,
                    "project": "AppSec",
                    "work_item_type": "Bug",
                    "auto_create": True,
                    "severity_threshold": "medium",
                },
                timeout=60,
            ).raise_for_status()
            secret = http.post(base + "/admin/sources", json={"name": "bench"}, timeout=10).json()[
                "secret"
            ]
            for start in range(0, args.risks, 500):
                risks = [
                    {"key": f"d{i}", "name": f"Finding {i}", "severity": "high"}
                    for i in range(start, min(start + 500, args.risks))
                ]
                body = json.dumps({"risks": risks}).encode()
                ts = int(time.time())
                headers = {
                    "webhook-id": f"msg_{start}",
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sign(secret, f"msg_{start}", ts, body),
                    "Content-Type": "application/json",
                }
                requests.post(
                    base + "/webhooks/risks/bench", data=body, headers=headers, timeout=60
                ).raise_for_status()
            started = time.monotonic()
            worker = spawn(
                [python(), "-m", "webhook.cli", "worker", "--threads", str(args.threads)], env, work
            )
            deadline = started + args.timeout
            pending = args.risks
            while time.monotonic() < deadline:
                pending = http.get(
                    base + "/admin/jobs", params={"state": "pending"}, timeout=10
                ).json()["total"]
                running = http.get(
                    base + "/admin/jobs", params={"state": "running"}, timeout=10
                ).json()["total"]
                if pending == 0 and running == 0:
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            items = requests.get(facts["url"] + "/_sandbox/workitems", timeout=60).json()
            items = items["value"] if isinstance(items, dict) else items
            tags = Counter(
                t.strip()
                for w in items
                for t in (w["fields"].get("System.Tags") or "").split(";")
                if t.strip().startswith("adowh-")
            )
            failed = http.get(base + "/admin/jobs", params={"state": "failed"}, timeout=10).json()[
                "total"
            ]
        finally:
            if worker is not None:
                kill(worker)
            kill(svc)
            kill(sandbox)
    duplicates = sum(n - 1 for n in tags.values() if n > 1)
    print(f"risks={args.risks} latency={args.latency * 1000:.0f}ms threads={args.threads}")
    print(
        f"work items created {len(tags)} in {elapsed:.1f}s = {len(tags) / elapsed:.1f} items/s"
        f" (target >= 40), duplicates {duplicates}, failed jobs {failed}"
    )


if __name__ == "__main__":
    main()
