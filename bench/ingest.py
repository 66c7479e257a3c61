"""Ingestion throughput of `ado-webhook serve` against a bare Flask hello-world, same gunicorn.

Prints single-risk req/s and batch risks/s next to the hello-world's req/s, and the ratio.
Targets: single-risk at least 0.5x hello-world; batch at least 10,000 risks/s on a 2-core machine.
Usage: python -m bench.ingest [--seconds 5] [--clients 4] [--connections 4] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from bench.common import REPO, free_port, kill, load, python, spawn, spawn_serve, wait_http
from webhook.domain.signatures import sign
from webhook.gunicorn_app import default_workers

ADMIN = "bench-admin-token-0123456789abcdef"


def signed(
    secret: str, path: str, body: bytes, msg_id: str
) -> tuple[str, str, bytes, dict[str, str]]:
    ts = int(time.time()) + 30  # still inside the ±5 min window when the request is sent
    return (
        "POST",
        path,
        body,
        {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body),
        },
    )


def risk(key: str) -> dict[str, object]:
    return {
        "key": key,
        "name": f"SQL injection in handler {key}",
        "severity": "medium",
        "url": f"https://scanner.example/findings/{key}",
        "project": "shop",
        "definition": "User input reaches a SQL query without parameters.",
        "assets": [{"group": "repo", "identifier": "shop/api"}],
        "tags": ["sast"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="keep-alive connections (threads) per client process, for both apps",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="gunicorn workers for both apps (default: what `serve` uses)",
    )
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    per_client_cap = 20000

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "WEBHOOK_DB": str(work / "var/webhook.db"),
            "WEBHOOK_ADMIN_TOKEN": ADMIN,
            "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
            "WEBHOOK_LOG_LEVEL": "WARNING",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)

        hello_port = free_port()
        hello = spawn(
            [python(), "-m", "bench.hello_app", f"127.0.0.1:{hello_port}", str(args.workers)],
            env,
            REPO,
        )
        try:
            wait_http(f"http://127.0.0.1:{hello_port}/healthz")
            body = json.dumps({"risk": risk("hello")}).encode()
            reqs = [
                [("POST", "/", body, {"Content-Type": "application/json"})] * per_client_cap
                for _ in range(args.clients)
            ]
            load(hello_port, reqs, 1.0, args.connections)  # warm-up
            elapsed, hello_ok, hello_err = load(hello_port, reqs, args.seconds, args.connections)
            hello_rps = hello_ok / elapsed
        finally:
            kill(hello)

        port = free_port()
        # As deployed: with its worker, which also checkpoints the WAL (see webhook/db.py).
        svc = spawn_serve(env, work, port, args.workers, worker=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz")
            secret = requests.post(
                base + "/admin/sources",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=10,
            ).json()["secret"]
            path = "/webhooks/risks/bench"
            warm = [
                [
                    signed(
                        secret,
                        path,
                        json.dumps({"risk": risk(f"w{c}-{i}")}).encode(),
                        f"msg_w{c}_{i}",
                    )
                    for i in range(2000)
                ]
                for c in range(args.clients)
            ]
            load(port, warm, 1.0, args.connections)
            single = [
                [
                    signed(
                        secret,
                        path,
                        json.dumps({"risk": risk(f"s{c}-{i}")}).encode(),
                        f"msg_s{c}_{i}",
                    )
                    for i in range(per_client_cap)
                ]
                for c in range(args.clients)
            ]
            elapsed, single_ok, single_err = load(port, single, args.seconds, args.connections)
            single_rps = single_ok / elapsed

            batches = [
                [
                    signed(
                        secret,
                        path,
                        json.dumps(
                            {"risks": [risk(f"b{c}-{i}-{j}") for j in range(args.batch)]}
                        ).encode(),
                        f"msg_b{c}_{i}",
                    )
                    for i in range(max(4, int(args.seconds * 6)))
                ]
                for c in range(args.clients)
            ]
            elapsed, batch_ok, batch_err = load(port, batches, args.seconds, args.connections)
            batch_rps = batch_ok * args.batch / elapsed
        finally:
            kill(svc)

    print(
        f"workers={args.workers} clients={args.clients} x {args.connections} connections"
        f" seconds={args.seconds}"
    )
    print(f"hello-world      {hello_rps:10.0f} req/s   (errors {hello_err})")
    print(
        f"single risk      {single_rps:10.0f} req/s   (errors {single_err})"
        f"   ratio {single_rps / hello_rps:.2f}x hello-world (target >= 0.5)"
    )
    print(
        f"batch of {args.batch:<5}  {batch_rps:10.0f} risks/s (errors {batch_err})"
        f"   {batch_rps / hello_rps:.2f}x hello-world req/s (target >= 10000 risks/s)"
    )


if __name__ == "__main__":
    main()
