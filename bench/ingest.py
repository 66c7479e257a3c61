"""Ingestion throughput of `ado-webhook serve` against a bare Flask hello-world, same gunicorn.

Prints single-risk req/s next to the hello-world's req/s and their ratio, measured in
alternating rounds (both servers stay up; the one not under load is paused with SIGSTOP so
it takes no CPU), then batch
risks/s. Targets: single-risk at least 0.5x hello-world (median of the rounds); batch at least
10,000 risks/s on a 2-core machine.
Usage: python -m bench.ingest [--seconds 10] [--rounds 5] [--clients 4] [--connections 4]
       [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from bench.common import (
    REPO,
    free_port,
    kill,
    load,
    pause,
    python,
    resume,
    spawn,
    spawn_serve,
    wait_http,
)
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
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per app")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="hello-world and single-risk load alternate in this many rounds (each gets"
        " seconds/rounds), so drift in the machine's speed hits both alike",
    )
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
    rounds = max(1, args.rounds)
    segment = args.seconds / rounds
    per_segment = 6000  # requests per client per segment: more than a client can send

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
        hello_port, port = free_port(), free_port()
        hello = spawn(
            [python(), "-m", "bench.hello_app", f"127.0.0.1:{hello_port}", str(args.workers)],
            env,
            REPO,
        )
        # As deployed: with its worker, which also checkpoints the WAL (see webhook/db.py).
        svc = spawn_serve(env, work, port, args.workers, worker=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"http://127.0.0.1:{hello_port}/healthz")
            wait_http(base + "/healthz")
            secret = requests.post(
                base + "/admin/sources",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=10,
            ).json()["secret"]
            path = "/webhooks/risks/bench"
            hello_body = json.dumps({"risk": risk("hello")}).encode()
            hello_reqs = [
                [("POST", "/", hello_body, {"Content-Type": "application/json"})] * per_segment
                for _ in range(args.clients)
            ]

            def single_reqs(tag: str) -> list[list[tuple[str, str, bytes, dict[str, str]]]]:
                return [
                    [
                        signed(
                            secret,
                            path,
                            json.dumps({"risk": risk(f"{tag}{c}-{i}")}).encode(),
                            f"msg_{tag}{c}_{i}",
                        )
                        for i in range(per_segment)
                    ]
                    for c in range(args.clients)
                ]

            load(hello_port, hello_reqs, 1.0, args.connections)  # warm-up
            load(port, single_reqs("w"), 1.0, args.connections)
            pairs: list[tuple[float, float]] = []
            errors = [0, 0]
            for r in range(rounds):
                reqs = single_reqs(f"s{r}-")  # built before the clock starts
                # The app not under load is stopped, so it takes no CPU (serve's worker polls).
                pause(svc)
                elapsed, ok, err = load(hello_port, hello_reqs, segment, args.connections)
                resume(svc)
                hello_rps = ok / elapsed
                errors[0] += err
                pause(hello)
                elapsed, ok, err = load(port, reqs, segment, args.connections)
                resume(hello)
                errors[1] += err
                pairs.append((hello_rps, ok / elapsed))

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
                    for i in range(max(4, int(segment * 12)))
                ]
                for c in range(args.clients)
            ]
            elapsed, batch_ok, batch_err = load(port, batches, segment * 2, args.connections)
            batch_rps = batch_ok * args.batch / elapsed
        finally:
            kill(svc)
            kill(hello)

    ratios = sorted(single / hello_rps for hello_rps, single in pairs)
    median = statistics.median(ratios)
    print(
        f"workers={args.workers} clients={args.clients} x {args.connections} connections"
        f" rounds={rounds} x {segment:.1f} s per app"
    )
    for r, (hello_rps, single) in enumerate(pairs, start=1):
        print(
            f"round {r}: hello-world {hello_rps:7.0f} req/s   single risk {single:7.0f} req/s"
            f"   ratio {single / hello_rps:.2f}x"
        )
    print(
        f"hello-world      {statistics.median(p[0] for p in pairs):10.0f} req/s   (median,"
        f" errors {errors[0]})"
    )
    print(
        f"single risk      {statistics.median(p[1] for p in pairs):10.0f} req/s   (median,"
        f" errors {errors[1]})   ratio {median:.2f}x hello-world (median of rounds,"
        f" {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.5)"
    )
    print(
        f"batch of {args.batch:<5}  {batch_rps:10.0f} risks/s (errors {batch_err})"
        f"   (target >= 10000 risks/s)"
    )


if __name__ == "__main__":
    main()
