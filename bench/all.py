"""All three benchmarks, quickly, on every engine in one run, with one combined table.

Runs bench.ingest, bench.hooks and bench.drain with small settings (a few seconds of load per
engine each; about 3 minutes in all on a 2-core machine), each once on SQLite, once on
PostgreSQL (a fresh database per benchmark, dropped at the end) and, for ingest and hooks, on
PostgreSQL behind two web nodes (two `serve --no-worker` plus one `worker`, the clients
alternating between them). Prints each benchmark's details as it goes, then one table with a
column per engine, then everything as JSON on the last line. Exit status 1 when a column
failed.
Usage: python -m bench.all [--engines sqlite,postgresql] [--one-node]
       [--ingest-args "..."] [--hooks-args "..."] [--drain-args "..."]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from bench import drain, hooks, ingest
from bench.engines import bench_parser, cpu_note, raise_on_sigterm
from bench.report import Results, Row, errors, table, to_json

QUICK = {
    "ingest": ["--seconds", "4", "--rounds", "2", "--batch-seconds", "3"],
    "hooks": ["--rate", "200", "--seconds", "5", "--warmup", "1", "--changes", "30"],
    "drain": ["--risks", "400"],
}
"""Each benchmark's settings here, before what --<name>-args adds (later options win)."""


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("python -m bench.all", __doc__, two_nodes=True)
    for name, quick in QUICK.items():
        parser.add_argument(
            f"--{name}-args",
            default="",
            metavar="ARGS",
            help=f"more options for bench.{name} (quick defaults: {' '.join(quick)})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    raise_on_sigterm()
    args = build_parser().parse_args(argv)
    common = ["--engines", ",".join(args.engines)]
    one_node = ["--one-node"] if args.one_node else []
    parsed = {
        "ingest": ingest.build_parser().parse_args(
            [*common, *one_node, *QUICK["ingest"], *shlex.split(args.ingest_args)]
        ),
        "hooks": hooks.build_parser().parse_args(
            [*common, *one_node, *QUICK["hooks"], *shlex.split(args.hooks_args)]
        ),
        "drain": drain.build_parser().parse_args(
            [*common, *QUICK["drain"], *shlex.split(args.drain_args)]
        ),
    }
    hooks.check_args(hooks.build_parser(), parsed["hooks"])
    started = time.monotonic()
    results: dict[str, Results] = {}
    print("##### ingest #####", flush=True)
    results["ingest"] = ingest.run(parsed["ingest"])
    print("\n##### hooks #####", flush=True)
    results["hooks"] = hooks.run(parsed["hooks"])
    print("\n##### drain #####", flush=True)
    results["drain"] = drain.run(parsed["drain"])
    elapsed = time.monotonic() - started

    columns = list(dict.fromkeys(label for r in results.values() for label in r))
    rows: list[Row] = [
        *(("", m, results["ingest"]) for m in ingest.METRICS),
        *(("", m, results["hooks"]) for m in hooks.METRICS),
        *(("", m, results["drain"]) for m in drain.METRICS),
    ]
    print(f"\n== all benchmarks, side by side ({elapsed:.0f} s) ==")
    print(table(rows, columns))
    print(cpu_note(any(" x" in c for c in columns)))
    failures = [f"{name} {line}" for name, r in results.items() for line in errors(r)]
    for line in failures:
        print(f"FAILED {line}")
    settings = {
        "ingest": ingest.settings(parsed["ingest"]),
        "hooks": hooks.settings(parsed["hooks"]),
        "drain": drain.settings(parsed["drain"]),
        "seconds": round(elapsed, 1),
    }
    print(to_json("all", results, settings))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
