"""Ingestion throughput of `ado-webhook serve` per database engine, against a bare Flask
hello-world under the same gunicorn settings.

For every engine (`--engines`, default sqlite,postgresql; PostgreSQL on a fresh database, and
also behind two web nodes: two `serve --no-worker` plus one `worker`, the clients' connections
alternating between the two ports) it measures single-risk req/s next to the hello-world's
req/s and their ratio, in alternating rounds (the servers not under load are paused with
SIGSTOP so they take no CPU; `--rounds 0` skips this), then batch risks/s. Prints one column
per engine side by side, then the figures as JSON on the last line.
Targets: single-risk at least 0.5x hello-world (median of the rounds); batch at least 10,000
risks/s on a 2-core machine (SQLite).
Usage: python -m bench.ingest [--engines sqlite,postgresql] [--seconds 10] [--rounds 5]
       [--batch-seconds 4] [--clients 4] [--connections 4] [--workers N] [--one-node]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from bench.common import (
    REPO,
    Cluster,
    free_port,
    kill,
    load,
    pause,
    python,
    resume,
    spawn,
    wait_http,
)
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


METRICS = [
    Metric("batch_risks_per_s", "ingest batch risks/s"),
    Metric("single_per_s", "ingest single risk req/s"),
    Metric("hello_per_s", "ingest hello-world req/s"),
    Metric("single_ratio", "ingest single / hello-world", 2),
    Metric("errors", "ingest non-2xx or failed requests"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("python -m bench.ingest", __doc__, two_nodes=True)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="single-risk load time per app, per engine"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="hello-world and single-risk load alternate in this many rounds (each gets"
        " seconds/rounds), so drift in the machine's speed hits both alike; 0 skips them",
    )
    parser.add_argument(
        "--batch-seconds", type=float, default=4.0, help="batch load time per engine"
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
        help="gunicorn workers for the hello-world and for each web node (default: what"
        " `serve` uses)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="risks per batch")
    return parser


def measure(
    variant: Variant,
    args: argparse.Namespace,
    work: Path,
    hello: subprocess.Popen[bytes] | None,
    hello_port: int,
) -> Figures:
    """Single-risk rounds against the hello-world, then batch load, on one fresh database."""
    rounds = max(0, args.rounds)
    segment = args.seconds / rounds if rounds else 0.0
    per_segment = 6000  # requests per client per segment: more than a client can send
    with database(variant.engine, work) as db_env:
        env = service_env(
            db_env,
            WEBHOOK_ADMIN_TOKEN=ADMIN,
            WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
            WEBHOOK_LOG_LEVEL="WARNING",
        )
        # As deployed: with a worker (on SQLite it also checkpoints the WAL).
        svc = Cluster(env, work, variant.nodes, args.workers)
        try:
            svc.wait_ready()
            ports = svc.ports
            secret = requests.post(
                svc.base + "/admin/sources",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=30,
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

            pairs: list[tuple[float, float]] = []
            errors = [0, 0]
            if rounds and hello is not None:
                load(hello_port, hello_reqs, 1.0, args.connections)  # warm-up
                load(ports, single_reqs("w"), 1.0, args.connections)
                for r in range(rounds):
                    reqs = single_reqs(f"s{r}-")  # built before the clock starts
                    # The app not under load is stopped, so it takes no CPU (workers poll).
                    svc.pause()
                    elapsed, ok, err = load(hello_port, hello_reqs, segment, args.connections)
                    svc.resume()
                    hello_rps = ok / elapsed
                    errors[0] += err
                    pause(hello)
                    elapsed, ok, err = load(ports, reqs, segment, args.connections)
                    resume(hello)
                    errors[1] += err
                    pairs.append((hello_rps, ok / elapsed))
            else:
                load(ports, single_reqs("w"), 1.0, args.connections)  # warm-up

            if hello is not None:
                pause(hello)
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
                    for i in range(max(4, int(args.batch_seconds * 6)))
                ]
                for c in range(args.clients)
            ]
            elapsed, batch_ok, batch_err = load(
                ports, batches, args.batch_seconds, args.connections
            )
            if hello is not None:
                resume(hello)
            batch_rps = batch_ok * args.batch / elapsed
            svc.check()
        finally:
            svc.stop()

    figures: Figures = {
        "batch_risks_per_s": batch_rps,
        "errors": errors[1] + batch_err,
        "web_nodes": variant.nodes,
    }
    print(f"web nodes {variant.nodes} (ports {', '.join(map(str, ports))})")
    if pairs:
        ratios = sorted(single / hello_rps for hello_rps, single in pairs)
        median = statistics.median(ratios)
        for r, (hello_rps, single) in enumerate(pairs, start=1):
            print(
                f"round {r}: hello-world {hello_rps:7.0f} req/s   single risk {single:7.0f} req/s"
                f"   ratio {single / hello_rps:.2f}x"
            )
        hello_median = statistics.median(p[0] for p in pairs)
        single_median = statistics.median(p[1] for p in pairs)
        print(f"hello-world      {hello_median:10.0f} req/s   (median, errors {errors[0]})")
        print(
            f"single risk      {single_median:10.0f} req/s   (median, errors {errors[1]})"
            f"   ratio {median:.2f}x hello-world (median of rounds,"
            f" {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.5)"
        )
        figures.update(
            single_per_s=single_median,
            hello_per_s=hello_median,
            single_ratio=median,
            single_ratio_range=[ratios[0], ratios[-1]],
        )
    print(
        f"batch of {args.batch:<5}  {batch_rps:10.0f} risks/s (errors {batch_err})"
        f"   (target >= 10000 risks/s)"
    )
    return figures


def run(args: argparse.Namespace) -> Results:
    """Measure every variant in turn; return its figures (or {"error": ...}) by column label."""
    results: Results = {}
    print(
        f"ingest: workers={args.workers} per web node, clients={args.clients} x"
        f" {args.connections} connections, rounds={args.rounds} x"
        f" {args.seconds / max(1, args.rounds):.1f} s per app, batch {args.batch} risks for"
        f" {args.batch_seconds:.1f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hello = None
        hello_port = free_port()
        try:
            if args.rounds > 0:
                hello = spawn(
                    [
                        python(),
                        "-m",
                        "bench.hello_app",
                        f"127.0.0.1:{hello_port}",
                        str(args.workers),
                    ],
                    service_env({}),
                    REPO,
                )
                wait_http(f"http://127.0.0.1:{hello_port}/healthz")
            for n, variant in enumerate(variants(args.engines, not args.one_node)):
                with column(results, f"{variant.label}") as store:
                    store(measure(variant, args, work / f"v{n}", hello, hello_port))
        finally:
            if hello is not None:
                kill(hello)
    return results


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        k: getattr(args, k)
        for k in (
            "workers",
            "clients",
            "connections",
            "rounds",
            "seconds",
            "batch_seconds",
            "batch",
        )
    }


def main(argv: list[str] | None = None) -> int:
    raise_on_sigterm()
    args = build_parser().parse_args(argv)
    results = run(args)
    return print_summary("ingest", METRICS, results, settings(args))


if __name__ == "__main__":
    sys.exit(main())
