"""Work item creation throughput per database engine: risks above threshold drained against the
Azure DevOps stand-in with 50 ms added latency per call, by one `ado-webhook worker`. Prints
work items/s and the duplicate count, one column per engine (`--engines`, default
sqlite,postgresql; PostgreSQL on a fresh database) side by side, then the figures as JSON on
the last line. Target: at least 40 items/s with no duplicates.
Usage: python -m bench.drain [--engines sqlite,postgresql] [--risks 2000] [--latency 0.05]
       [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

from bench.common import REPO, Cluster, kill, python
from bench.engines import (
    Variant,
    bench_parser,
    database,
    raise_on_sigterm,
    service_env,
    variants,
)
from bench.report import Figures, Metric, Results, column, print_summary
from webhook.domain.signatures import sign

ADMIN = "bench-admin-token-0123456789abcdef"

METRICS = [
    Metric("items_per_s", "drain work items/s", 1),
    Metric("items", "drain work items created"),
    Metric("duplicates", "drain duplicates"),
    Metric("failed_jobs", "drain failed jobs"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("python -m bench.drain", __doc__, two_nodes=False)
    parser.add_argument("--risks", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="stand-in latency, s/call")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many s")
    return parser


def measure(variant: Variant, args: argparse.Namespace, work: Path) -> Figures:
    """Post the risks to a fresh database, then time one worker creating their work items."""
    sandbox = subprocess.Popen(
        [python(), "-m", "webhook.sandbox", "--port", "0", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=service_env({}),
        start_new_session=True,
    )
    try:
        assert sandbox.stdout is not None
        facts = json.loads(sandbox.stdout.readline())
        with database(variant.engine, work) as db_env:
            env = service_env(
                db_env,
                WEBHOOK_ADMIN_TOKEN=ADMIN,
                WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
                WEBHOOK_LOG_LEVEL="WARNING",
                WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(facts["url"]).netloc,
            )
            svc = Cluster(env, work, variant.nodes, 2, worker=False, worker_threads=args.threads)
            try:
                svc.wait_ready()
                base = svc.base
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
                secret = http.post(
                    base + "/admin/sources", json={"name": "bench"}, timeout=10
                ).json()["secret"]
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
                svc.start_worker()
                deadline = started + args.timeout
                finished = False
                while time.monotonic() < deadline:
                    svc.check()
                    totals = [
                        http.get(base + "/admin/jobs", params={"state": state}, timeout=10).json()[
                            "total"
                        ]
                        for state in ("pending", "running")
                    ]
                    if totals == [0, 0]:
                        finished = True
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
                failed = http.get(
                    base + "/admin/jobs", params={"state": "failed"}, timeout=10
                ).json()["total"]
                http.close()
            finally:
                svc.stop()
    finally:
        kill(sandbox)
    duplicates = sum(n - 1 for n in tags.values() if n > 1)
    print(f"risks={args.risks} latency={args.latency * 1000:.0f}ms threads={args.threads}")
    print(
        f"work items created {len(tags)} in {elapsed:.1f}s = {len(tags) / elapsed:.1f} items/s"
        f" (target >= 40), duplicates {duplicates}, failed jobs {failed}"
        + ("" if finished else f"; jobs still pending after the {args.timeout:.0f} s timeout")
    )
    return {
        "items_per_s": len(tags) / elapsed,
        "items": len(tags),
        "seconds": elapsed,
        "duplicates": duplicates,
        "failed_jobs": failed,
        "finished": finished,
    }


def run(args: argparse.Namespace) -> Results:
    """Measure every engine in turn; return its figures (or {"error": ...}) by column label."""
    results: Results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, variant in enumerate(variants(args.engines, two_nodes=False)):
            with column(results, variant.label) as store:
                store(measure(variant, args, Path(tmp) / f"v{n}"))
    return results


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {k: getattr(args, k) for k in ("risks", "latency", "threads", "timeout")}


def main(argv: list[str] | None = None) -> int:
    raise_on_sigterm()
    args = build_parser().parse_args(argv)
    if args.risks < 1 or args.threads < 1 or args.latency < 0:
        build_parser().error("risks and threads must be positive, latency not negative")
    return print_summary("drain", METRICS, run(args), settings(args))


if __name__ == "__main__":
    sys.exit(main())
