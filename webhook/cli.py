"""ado-webhook serve | worker | init-db | demo | copy-db.

A process entry point of the composition root: the modules that import prometheus_client
(webhook.metrics, webhook.composition, webhook.gunicorn_app) are imported only inside the
commands, after ``PROMETHEUS_MULTIPROC_DIR`` is set, since prometheus_client picks its
(multi-process or in-memory) value class when it is first imported.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from webhook.demo import run_demo
from webhook.logs import configure_logging
from webhook.outbound import set_worker_threads
from webhook.settings import DEFAULT_DB, Settings, SettingsError
from webhook.storage import migrate_storage, prepare_folder
from webhook.storage.copy import CopyError, DatabaseLocation, TableCopy, copy_between
from webhook.storage.errors import StorageUnusable

DEV_SECRETS_FILE = "dev-secrets.env"


def _fail(message: str) -> int:
    print(f"ado-webhook: error: {message}", file=sys.stderr)
    return 2


def _load_settings() -> Settings:
    return Settings.from_env()


def _private_dir(folder: Path) -> None:
    """Create the database's folder owner-only (0700) before anything else puts files in it."""
    prepare_folder(folder)


def _ensure_dev_secrets(var_dir: Path) -> None:
    """--dev: generate missing secrets into var/ (once) and export them to this process."""
    _private_dir(var_dir)
    path = var_dir / DEV_SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                stored[name.strip()] = value.strip()
    generated_token = False
    if not os.environ.get("WEBHOOK_ADMIN_TOKEN") and "WEBHOOK_ADMIN_TOKEN" not in stored:
        stored["WEBHOOK_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
        generated_token = True
    if not os.environ.get("WEBHOOK_SECRET_KEY") and "WEBHOOK_SECRET_KEY" not in stored:
        stored["WEBHOOK_SECRET_KEY"] = Fernet.generate_key().decode()
    if stored:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in stored.items()))
    for name, value in stored.items():
        os.environ.setdefault(name, value)
    if generated_token:
        print(
            "ado-webhook: dev mode: generated admin token (shown once, kept in "
            f"{path}):\n  {stored['WEBHOOK_ADMIN_TOKEN']}",
            file=sys.stderr,
            flush=True,
        )


def _prepare_metrics_dir(settings: Settings) -> None:
    """Multiprocess Prometheus needs a shared folder set before prometheus_client is imported."""
    _private_dir(Path(settings.db_path).parent)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(
            Path(settings.db_path).resolve().parent / "prometheus"
        )
    from webhook.metrics import prepare_multiproc_dir  # after the variable: see module doc

    prepare_multiproc_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def _check_secret_key(settings: Settings) -> None:
    """composition.check_secret_key on a storage opened for it alone (serve's master process
    builds no Services of its own)."""
    from webhook.composition import check_secret_key  # after the metrics variable is set
    from webhook.crypto import SecretBox
    from webhook.storage import open_storage

    store = open_storage(settings.storage_location, SecretBox(settings.secret_keys))
    try:
        check_secret_key(store, settings.storage_label)
    finally:
        close = getattr(getattr(store, "db", None), "close", None)
        if close is not None:
            close()


def cmd_init_db(_: argparse.Namespace) -> int:
    """Create or migrate the database."""
    settings = _load_settings()
    version = migrate_storage(settings.storage_location)
    print(f"database {settings.storage_label} at schema version {version}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the background sync worker until SIGTERM/SIGINT."""
    settings = _load_settings()
    _private_dir(Path(settings.db_path).parent)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Share the web processes' metrics folder so /metrics shows the worker's counters too.
        folder = Path(settings.db_path).resolve().parent / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from webhook.composition import run_worker  # after the variable: see module doc

    configure_logging(settings.log_level)
    set_worker_threads(args.threads)  # each destination's share of the worker's threads
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_worker(settings, stop, threads=args.threads)
    return 0


class _WorkerSupervisor:
    """Keeps one `ado-webhook worker` child alive next to gunicorn's master."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        from webhook.gunicorn_app import FORK_LOCK  # loaded already by cmd_serve

        with FORK_LOCK:  # see FORK_LOCK: gunicorn must not fork while this child starts
            return subprocess.Popen(
                [sys.executable, "-m", "webhook.cli", "worker", "--threads", str(self.threads)],
                env=os.environ.copy(),
            )

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            self.proc = self._spawn()
            started = time.monotonic()
            while self.proc.poll() is None and not self.stopping.is_set():
                self.stopping.wait(0.5)
            if self.stopping.is_set():
                break
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            print(
                f"ado-webhook: worker exited ({self.proc.returncode}); restarting",
                file=sys.stderr,
                flush=True,
            )
            self.stopping.wait(backoff)

    def stop(self) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def cmd_serve(args: argparse.Namespace) -> int:
    """Run gunicorn on the app factory, plus the sync worker unless --no-worker."""
    if args.dev:
        _ensure_dev_secrets(Path(os.environ.get("WEBHOOK_DB", "var/webhook.db")).parent)
    settings = _load_settings()
    _prepare_metrics_dir(settings)
    migrate_storage(settings.storage_location)
    _check_secret_key(settings)
    from webhook.gunicorn_app import GunicornApp  # after the variable: see module doc

    supervisor = None if args.no_worker else _WorkerSupervisor(args.worker_threads)
    app = GunicornApp(
        bind=args.bind,
        workers=args.workers or settings.web_concurrency,
        on_ready=supervisor.start if supervisor else None,
        on_exit=supervisor.stop if supervisor else None,
        loader=_create_app,
    )
    app.run()
    return 0


def _create_app() -> Any:
    """gunicorn's app, built in each web worker after the fork."""
    from webhook.composition import create_app  # after the variable: see module doc

    return create_app()


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole loop on loopback against the Azure DevOps stand-in."""
    return run_demo(keep_running=args.keep_running)


def _configured_database() -> DatabaseLocation:
    """The database copy-db reads: WEBHOOK_DATABASE_URL when set, else the file WEBHOOK_DB
    names. Only these two variables are read (no admin token or secret key is needed: secrets
    are copied as the ciphertext they are)."""
    raw = os.environ.get("WEBHOOK_DATABASE_URL", "").strip()
    if raw:
        try:
            return DatabaseLocation.parse(raw)
        except CopyError as exc:
            raise SettingsError(f"WEBHOOK_DATABASE_URL is invalid: {exc}") from None
    return DatabaseLocation.sqlite(os.environ.get("WEBHOOK_DB", "").strip() or DEFAULT_DB)


def cmd_copy_db(args: argparse.Namespace) -> int:
    """Copy the configured database into the empty database at --to, then verify counts."""
    source = _configured_database()
    target = DatabaseLocation.parse(args.to)
    print(f"copying {source.label} -> {target.label}", flush=True)

    def _table_done(table: TableCopy) -> None:
        rows = "row" if table.rows == 1 else "rows"
        print(f"  {table.name:<22} {table.rows:>10} {rows}", flush=True)

    report = copy_between(source, target, progress=_table_done)
    print(
        f"copied {report.total_rows} rows in {len(report.tables)} tables from "
        f"{report.source} to {report.target} in {report.seconds:.1f} s; row counts verified",
        flush=True,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="ado-webhook", description=(__doc__ or "").splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (gunicorn) and the sync worker")
    serve.add_argument(
        "--bind",
        default=os.environ.get("WEBHOOK_BIND", "127.0.0.1:8080"),
        help="HOST:PORT to listen on (default 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn worker processes (default: WEB_CONCURRENCY or 2*CPU+1)",
    )
    serve.add_argument("--no-worker", action="store_true", help="serve HTTP only")
    serve.add_argument(
        "--worker-threads", type=int, default=8, help="threads in the sync worker (default 8)"
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="generate missing dev secrets under var/ and print the admin token once",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run only the background sync worker")
    worker.add_argument("--threads", type=int, default=8, help="concurrent jobs (default 8)")
    worker.set_defaults(func=cmd_worker)

    init_db = sub.add_parser("init-db", help="create or migrate the database")
    init_db.set_defaults(func=cmd_init_db)

    demo = sub.add_parser("demo", help="the whole loop against the built-in Azure DevOps stand-in")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the service and stand-in running after the demo",
    )
    demo.set_defaults(func=cmd_demo)

    copy_db = sub.add_parser(
        "copy-db",
        help="copy the configured database into an empty one (e.g. SQLite to PostgreSQL)",
        description=(
            "Copy everything in the configured database (WEBHOOK_DATABASE_URL, else WEBHOOK_DB) "
            "into the empty database at --to: every table, ids kept, secrets still encrypted "
            "with the same WEBHOOK_SECRET_KEY (nothing is decrypted). The target is migrated "
            "first, refused when it already holds data, and written in one transaction whose "
            "row counts are checked against the source before it commits. Stop the services "
            "that use the source first: what they write after the copy starts is not copied."
        ),
    )
    copy_db.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the target: postgresql://user:password@host:port/dbname or sqlite:///path.db",
    )
    copy_db.set_defaults(func=cmd_copy_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ado-webhook` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, StorageUnusable, CopyError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
