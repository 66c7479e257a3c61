"""Which database the benchmarks run on: SQLite, PostgreSQL, PostgreSQL behind two web nodes.

`--engines sqlite,postgresql` (the default: both) picks the engines. For PostgreSQL every
run gets a fresh database `adowh_bench_<random>` on the server named by
WEBHOOK_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres, loopback
only), created with psycopg and dropped again at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from bench.common import REPO

ENGINES = ("sqlite", "postgresql")
SERVER_VARIABLE = "WEBHOOK_TEST_POSTGRES_URL"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


class EngineUnavailable(RuntimeError):
    """The engine cannot be used for this run (bad server URL, server unreachable)."""


@dataclass(frozen=True)
class Variant:
    """One column of a benchmark table: an engine and how many web nodes share it.

    nodes == 1: one `ado-webhook serve` (with its worker, as deployed on one machine);
    nodes == 2: two `serve --no-worker` on different ports plus one `ado-webhook worker`,
    the clients alternating between the two ports.
    """

    engine: str
    nodes: int = 1

    @property
    def label(self) -> str:
        """Column heading: "sqlite", "postgresql" or "postgresql x2"."""
        return self.engine if self.nodes == 1 else f"{self.engine} x{self.nodes}"


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--engines a,b` (default: every engine) to a benchmark's parser."""
    parser.add_argument(
        "--engines",
        type=parse_engines,
        default=list(ENGINES),
        help="comma-separated engines to measure side by side (default: sqlite,postgresql);"
        f" PostgreSQL uses a fresh database on the server named by {SERVER_VARIABLE}"
        f" (default {DEFAULT_SERVER})",
    )


def bench_parser(prog: str, doc: str | None, *, two_nodes: bool) -> argparse.ArgumentParser:
    """A benchmark's parser with `--engines` and, where it measures two web nodes on
    PostgreSQL, `--one-node` to leave that column out."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_engine_argument(parser)
    if two_nodes:
        parser.add_argument(
            "--one-node",
            action="store_true",
            help="leave out the PostgreSQL column with two web nodes",
        )
    return parser


def parse_engines(text: str) -> list[str]:
    """ "sqlite,postgresql" -> ["sqlite", "postgresql"]; raises argparse.ArgumentTypeError
    naming the unknown engine."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown engine {', '.join(unknown) or '(none given)'}:"
            f" choose from {', '.join(ENGINES)}"
        )
    return list(dict.fromkeys(names))


def variants(engines: list[str], two_nodes: bool) -> list[Variant]:
    """The columns to measure: each engine on one node, and with `two_nodes` also PostgreSQL
    behind two web nodes (SQLite is one machine's database, so it gets no second node)."""
    out = [Variant(e) for e in engines]
    if two_nodes and "postgresql" in engines:
        out.append(Variant("postgresql", 2))
    return out


def server_url() -> str:
    """The PostgreSQL server URL (WEBHOOK_TEST_POSTGRES_URL or the default).

    Raises EngineUnavailable when it is not a postgresql:// URL on 127.0.0.1: a benchmark
    creates and drops databases, so it refuses any other host."""
    url = os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise EngineUnavailable(f"{SERVER_VARIABLE} must be a postgresql:// URL, got {url!r}")
    if parts.hostname != "127.0.0.1":
        raise EngineUnavailable(
            f"{SERVER_VARIABLE} names host {parts.hostname!r}: the benchmarks create and drop"
            " databases, so they only use a server on 127.0.0.1"
        )
    return url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create `adowh_bench_<random>` on the server, yield its URL, drop it afterwards (also on
    errors and Ctrl-C; WITH (FORCE) ends connections a killed process left behind).

    Raises EngineUnavailable when the server cannot be reached or refuses CREATE DATABASE."""
    import psycopg

    url = server_url()
    name = f"adowh_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineUnavailable(f"PostgreSQL at {_safe(url)}: {first}") from None
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


@contextmanager
def database(engine: str, work: Path) -> Iterator[dict[str, str]]:
    """The environment additions that point `ado-webhook` at a fresh database of `engine`:
    {"WEBHOOK_DB": <file in work>} for SQLite, {"WEBHOOK_DATABASE_URL": <fresh database>}
    for PostgreSQL (dropped when the block ends). Raises EngineUnavailable."""
    if engine == "sqlite":
        yield {"WEBHOOK_DB": str(work / "var" / "webhook.db")}
    elif engine == "postgresql":
        with fresh_postgres_database() as url:
            yield {"WEBHOOK_DATABASE_URL": url, "WEBHOOK_DB": str(work / "var" / "unused.db")}
    else:
        raise EngineUnavailable(f"unknown engine {engine!r}")


def service_env(db_env: dict[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without any WEBHOOK_* setting (so nothing of the caller's
    own installation leaks in), plus the database and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(db_env)
    env.update(extra)
    return env


def cpu_note(two_nodes: bool = True) -> str:
    """One line on what the machine can show: every process shares its CPUs."""
    note = f"note: {os.cpu_count()} CPUs shared by the service, its database and the load"
    note += " generators"
    if two_nodes:
        note += (
            "; the x2 column shows that two web nodes work on one database and what they cost"
            " here, not how they scale on separate machines"
        )
    return note


def raise_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks stop the spawned processes and
    drop the PostgreSQL database when the benchmark is killed politely."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
