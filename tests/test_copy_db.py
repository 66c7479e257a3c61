"""`ado-webhook copy-db --to URL` (SPEC 2): a whole installation into an empty database.

SQLite → SQLite here always; SQLite → PostgreSQL and PostgreSQL → SQLite where a server is
reachable (tests/pg.py, WEBHOOK_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.conftest import hook_record, template_record
from tests.pg import fresh_database_fixture
from webhook.cli import main
from webhook.crypto import SecretBox, hash_password
from webhook.domain.models import Asset, Risk
from webhook.domain.sync_plan import WrittenContent
from webhook.storage import copy as copy_module
from webhook.storage import migrate_storage, open_storage
from webhook.storage.copy import (
    HOUSEKEEPING_META,
    CopyError,
    DatabaseLocation,
    SameDatabase,
    SourceMissing,
    TargetNotEmpty,
    copy_between,
    copy_database,
)
from webhook.storage.interfaces import Storage
from webhook.storage.postgres.database import PgDatabase
from webhook.storage.sqlite.database import Database

ROOT = Path(__file__).resolve().parents[1]
PAT = "pat-in-clear-0123456789-abcdefghij"
CLIENT_SECRET = "sp-client-secret-9876543210-zyx"


# ---- an installation worth copying ----------------------------------------------------------


class Installation:
    """What `populate` recorded, to compare the copy against."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box
        self.source_secrets: dict[str, tuple[str, ...]] = {}
        self.installation_id = ""
        self.tracking_key = b""


def populate(storage: Storage, box: SecretBox, risks: int = 60) -> Installation:
    """Record, through the storage's own verbs, a bit of everything an installation holds."""
    found = Installation(box)
    storage.sources.create_source("sast", None)
    storage.sources.rotate_source_secret(1)  # a previous secret, still valid, also encrypted
    storage.sources.create_source("dast", "https://scanner.example/callback")
    for name in ("sast", "dast"):
        auth = storage.sources.find_source(name, fresh=True)
        assert auth is not None
        found.source_secrets[name] = auth.secrets
    pat = storage.connections.create_connection(
        "org", "https://dev.azure.com/org", {"type": "pat", "token": PAT}
    )
    storage.connections.create_connection(
        "sp",
        "https://dev.azure.com/other",
        {
            "type": "service_principal",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": CLIENT_SECRET,
        },
    )
    # ids with a gap: template 1 is deleted, so 2 is the one left (a copy must keep it 2)
    first = storage.templates.create_template(template_record(pat.id, name="first"))
    template = storage.templates.create_template(template_record(pat.id, project="P"))
    storage.templates.delete_template(first.id)
    source = storage.sources.find_source("sast", fresh=True)
    assert source is not None
    for start in range(0, risks, 20):
        batch = [
            Risk(
                id=None,
                source="sast",
                key=f"R-{n}",
                name=f"risk {n} ünïcode ✓",
                severity=("critical", "high", "low")[n % 3],
                evidence="e" * (n * 100),
                assets=[Asset(group="host", identifier=f"10.0.0.{n}")],
            )
            for n in range(start, min(start + 20, risks))
        ]
        storage.risks.record_risks(source, f"msg_{start}", batch)
    storage.risks.add_history(1, "note", {"by": "test"})
    storage.work_items.link_work_item(
        1,
        connection_id=pat.id,
        template_id=template.id,
        project="P",
        work_item_type="Bug",
        item={"id": 4242, "rev": 3, "fields": {"System.State": "New"}},
        tag="adowh-tag",
        adopted=False,
        state_category="Proposed",
        rendered_severity="high",
        written=WrittenContent("risk 0", "body", None),
    )
    hook = storage.hooks.save_hook(
        **hook_record(pat.id, project="P", username="hookuser", password_hash=hash_password("pw"))
    )
    storage.hooks.record_hook_event(
        hook_id=hook.id,
        connection_id=pat.id,
        event_id="evt-1",
        event_type="workitem.updated",
        work_item_id=4242,
        rev=4,
        change={"state": "Active"},
    )
    storage.operations.heartbeat("worker-1", 1234, "host-a")
    found.installation_id = storage.operations.installation_id()
    found.tracking_key = storage.operations.tracking_key()
    return found


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (housekeeping meta rows left out), ordered by rowid."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out = {}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
            if table == "meta":
                rows = [r for r in rows if r[0] not in HOUSEKEEPING_META]
            out[table] = rows
    conn.close()
    return out


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def box(secret_key: str) -> SecretBox:
    return SecretBox((secret_key,))


@pytest.fixture
def source(tmp_path: Path, box: SecretBox) -> Iterator[tuple[Path, Installation]]:
    """A populated SQLite installation at tmp_path/source.db."""
    path = tmp_path / "source.db"
    migrate_storage(path)
    storage = open_storage(path, box)
    found = populate(storage, box)
    storage.db.close()  # type: ignore[attr-defined]
    yield path, found


def assert_same_installation(storage: Storage, found: Installation, risks: int = 60) -> None:
    """The copy answers as the source did: secrets decrypt, ids and keys are the same."""
    for name, secrets in found.source_secrets.items():
        auth = storage.sources.find_source(name, fresh=True)
        assert auth is not None and auth.secrets == secrets
    assert storage.connections.connection_credentials(1)[1]["token"] == PAT
    assert storage.connections.connection_credentials(2)[1]["client_secret"] == CLIENT_SECRET
    assert [t.id for t in storage.templates.list_templates(1, 100)[0]] == [2]
    assert storage.risks.count_risks() == risks
    detail = storage.risks.get_risk(1)
    assert detail.work_item is not None and detail.work_item.id == 4242
    assert any(h.event == "note" for h in detail.history)
    assert storage.operations.installation_id() == found.installation_id
    assert storage.operations.tracking_key() == found.tracking_key
    assert storage.hooks.hook_credentials("hookuser") is not None
    # new rows get ids past the copied ones
    template = storage.templates.create_template(template_record(1, name="after-copy"))
    assert template.id == 3


def assert_no_secret_in_clear(path: Path, found: Installation) -> None:
    data = b"".join(
        Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    for secret in (PAT, CLIENT_SECRET, *sum(found.source_secrets.values(), ())):
        assert secret.encode() not in data


# ---- SQLite → SQLite through copy_database ---------------------------------------------------


def test_copy_keeps_every_row_id_and_secret(source, tmp_path, box):
    path, found = source
    target = tmp_path / "target.db"
    report = copy_database(Database(path), Database(target))
    before = dump(path)
    assert dump(target) == before  # every table, every column, every id
    counts = {t.name: t.rows for t in report.tables}
    assert counts["risks"] == 60 and counts["connections"] == 2 and counts["templates"] == 1
    assert counts["meta"] == 2  # installation_id and tracking_key_enc, not the housekeeping
    assert all(counts[name] == len(rows) for name, rows in before.items())
    assert report.method == "insert"
    # parents before children
    order = [t.name for t in report.tables]
    assert order.index("connections") < order.index("templates") < order.index("work_items")
    assert order.index("risks") < order.index("jobs")
    assert_no_secret_in_clear(target, found)
    storage = open_storage(target, box)
    assert_same_installation(storage, found)


def test_a_copy_with_another_key_cannot_read_the_secrets(source, tmp_path):
    path, _ = source
    target = tmp_path / "target.db"
    copy_database(Database(path), Database(target))
    stranger = open_storage(target, SecretBox((Fernet.generate_key().decode(),)))
    with pytest.raises(ValueError, match="cannot be decrypted"):
        stranger.connections.connection_credentials(1)


def test_small_batches_copy_the_same_rows(source, tmp_path, monkeypatch):
    path, _ = source
    monkeypatch.setattr(copy_module, "BATCH_ROWS", 7)
    target = tmp_path / "target.db"
    copy_database(Database(path), Database(target))
    assert dump(target) == dump(path)


def test_large_rows_make_smaller_pages(tmp_path):
    """A page holds about BATCH_BYTES whatever the rows weigh: memory stays bounded."""
    db = Database(tmp_path / "big.db")
    with db.write() as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany(
            "INSERT INTO t (id, body) VALUES (?, ?)", [(n, "x" * 100_000) for n in range(300)]
        )
    with db.read() as conn:
        table = copy_module._catalogue("sqlite", conn)["t"]
        pages = list(copy_module._pages(conn, table, ("id", "body")))
    sizes = [len(p) for p in pages]
    assert sum(sizes) == 300 and [r[0] for p in pages for r in p] == list(range(300))
    # the first page is FIRST_PAGE_ROWS; later ones hold ~BATCH_BYTES of text
    assert sizes[0] == copy_module.FIRST_PAGE_ROWS
    assert max(sizes) * 100_000 <= copy_module.BATCH_BYTES * 1.1


def test_a_failure_midway_leaves_the_target_empty(source, tmp_path, monkeypatch):
    path, _ = source
    target = tmp_path / "target.db"
    real = copy_module._pages

    def failing(conn, table, columns):
        if table.name == "jobs":
            raise RuntimeError("disk on fire")
        yield from real(conn, table, columns)

    monkeypatch.setattr(copy_module, "_pages", failing)
    with pytest.raises(CopyError, match=r"copying table jobs .* disk on fire"):
        copy_database(Database(path), Database(target))
    assert all(rows == [] for rows in dump(target).values())
    monkeypatch.setattr(copy_module, "_pages", real)
    copy_database(Database(path), Database(target))  # and the target can still take the copy
    assert dump(target) == dump(path)


def test_a_count_mismatch_is_refused_and_rolled_back(source, tmp_path, monkeypatch):
    path, _ = source
    target = tmp_path / "target.db"
    real = copy_module._count

    def short(conn, table):  # the target seems to have lost a risk
        found = real(conn, table)
        return found - 1 if table == "risks" and found and conn is not source_conn[0] else found

    source_conn: list[Any] = [None]
    source_db = Database(path)
    source_conn[0] = source_db.conn
    monkeypatch.setattr(copy_module, "_count", short)
    with pytest.raises(copy_module.CopyMismatch, match="table risks: 60 rows in the source, 59"):
        copy_database(source_db, Database(target))
    assert all(rows == [] for rows in dump(target).values())


def test_a_target_holding_data_is_refused_and_left_as_it_was(source, tmp_path, box):
    path, _ = source
    target = tmp_path / "target.db"
    migrate_storage(target)
    other = open_storage(target, box)
    other.sources.create_source("theirs", None)
    other.db.close()  # type: ignore[attr-defined]
    before = dump(target)
    with pytest.raises(TargetNotEmpty, match="table sources holds rows") as caught:
        copy_database(Database(path), Database(target))
    assert caught.value.table == "sources"
    assert dump(target) == before


@pytest.mark.parametrize("key", ["installation_id", "tracking_key_enc"])
def test_installation_meta_counts_as_data_but_housekeeping_does_not(source, tmp_path, key):
    path, _ = source
    target = tmp_path / "target.db"
    db = Database(target)
    db.migrate()
    with db.write() as conn:  # what /readyz and start-up leave behind
        conn.execute("INSERT INTO meta(key, value) VALUES ('ready_probe', 'x')")
    copy_database(Database(path), Database(target))  # housekeeping only: still empty

    second = tmp_path / "second.db"
    db = Database(second)
    db.migrate()
    with db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, 'x')", (key,))
    with pytest.raises(TargetNotEmpty, match="table meta holds rows"):
        copy_database(Database(path), Database(second))


def test_a_source_column_the_target_lacks_is_refused_when_it_holds_data(source, tmp_path):
    path, _ = source
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE risks ADD COLUMN future TEXT")
    conn.close()
    target = tmp_path / "target.db"
    copy_database(Database(path), Database(target))  # empty everywhere: left out
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE risks SET future='x' WHERE id=3")
    conn.close()
    with pytest.raises(CopyError, match="table risks has no column future"):
        copy_database(Database(path), Database(tmp_path / "other.db"))


# ---- locations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u:hunter2secret@h/db", "must start with sqlite:/// or postgresql://"),
        ("sqlite://relative.db", "write SQLite as sqlite:///"),
        ("postgresql://u:hunter2secret@h:port/db", "port must be a number"),
        ("postgresql://u:hunter2secret@h:5432", "names no database"),
        ("postgresql://u:hunter2@secret@h:5432/db", "must be percent-encoded"),
        ("postgresql://u@h:99999/db?password=hunter2secret&x=1", "port must be a number"),
        ("var/webhook.db", "must start with sqlite:/// or postgresql://"),
    ],
)
def test_bad_urls_are_named_without_their_password(url, problem):
    with pytest.raises(copy_module.BadDatabaseUrl, match=problem) as caught:
        DatabaseLocation.parse(url)
    assert "hunter2secret" not in str(caught.value)


def test_locations_that_are_the_same_database():
    pg = DatabaseLocation.parse
    assert pg("postgresql://a:x@localhost/db").same_as(pg("postgres://b@127.0.0.1:5432/db"))
    assert not pg("postgresql://a@localhost/db").same_as(pg("postgresql://a@localhost/db2"))
    assert not pg("postgresql://a@localhost/db").same_as(pg("postgresql://a@localhost:5433/db"))
    assert pg("sqlite:///x/y.db").same_as(DatabaseLocation.sqlite("x/../x/y.db"))
    assert pg("sqlite:////tmp/a.db").label == "/tmp/a.db"
    assert pg("postgresql://u:pw@h/db").label == "postgresql://u:***@h/db"


def test_copy_between_refuses_the_source_itself_and_a_missing_source(source, tmp_path):
    path, _ = source
    with pytest.raises(SameDatabase):
        copy_between(DatabaseLocation.sqlite(path), DatabaseLocation.parse(f"sqlite:///{path}"))
    missing = tmp_path / "nope" / "missing.db"
    with pytest.raises(SourceMissing, match="does not exist"):
        copy_between(DatabaseLocation.sqlite(missing), DatabaseLocation.sqlite(tmp_path / "t.db"))
    assert not missing.exists() and not missing.parent.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SourceMissing, match="holds no ado-webhook database"):
        copy_between(DatabaseLocation.sqlite(empty), DatabaseLocation.sqlite(tmp_path / "t.db"))
    assert not (tmp_path / "t.db").exists()  # the target is not touched


# ---- the command ----------------------------------------------------------------------------


@pytest.fixture
def only_the_database(monkeypatch: pytest.MonkeyPatch, source: tuple[Path, Installation]) -> Path:
    """The environment of an operator who set WEBHOOK_DB and nothing else."""
    for name in list(os.environ):
        if name.startswith("WEBHOOK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WEBHOOK_DB", str(source[0]))
    return source[0]


def test_cli_copies_without_admin_token_or_secret_key(only_the_database, tmp_path, box, capsys):
    target = tmp_path / "copy" / "target.db"
    assert main(["copy-db", "--to", f"sqlite:///{target}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"copying {only_the_database} -> {target}"
    assert any(line.split() == ["risks", "60", "rows"] for line in lines)
    assert any(line.split() == ["connections", "2", "rows"] for line in lines)
    assert lines[-1].startswith(f"copied {sum(map(len, dump(target).values()))} rows in ")
    assert lines[-1].endswith("row counts verified")
    assert dump(target) == dump(only_the_database)
    assert PAT not in out


def test_cli_refuses_a_target_with_data_with_exit_2_and_changes_nothing(
    only_the_database, tmp_path, capsys
):
    target = tmp_path / "target.db"
    assert main(["copy-db", "--to", f"sqlite:///{target}"]) == 0
    before = dump(target)
    capsys.readouterr()
    assert main(["copy-db", "--to", f"sqlite:///{target}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ado-webhook: error: target ") and "is not empty" in err[0]
    assert dump(target) == before


@pytest.mark.parametrize(
    ("to", "says"),
    [
        ("mysql://admin:hunter2secret@db/x", "must start with sqlite:/// or postgresql://"),
        ("postgresql://admin:hunter2secret@127.0.0.1:1/x", "target postgresql://admin:***@"),
        ("SAME", "is the configured database itself"),
        ("sqlite:////proc/no-such-dir/x.db", "target /proc/no-such-dir/x.db"),
    ],
)
def test_cli_says_what_is_wrong_in_one_line(only_the_database, to, says, capsys):
    if to == "SAME":
        to = f"sqlite:///{only_the_database}"
    assert main(["copy-db", "--to", to]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith("ado-webhook: error: ") and says in err[0], err[0]
    assert "hunter2secret" not in captured.err + captured.out


def test_cli_says_the_source_is_missing(monkeypatch, tmp_path, capsys):
    for name in list(os.environ):
        if name.startswith("WEBHOOK_"):
            monkeypatch.delenv(name)
    missing = tmp_path / "var" / "webhook.db"
    monkeypatch.setenv("WEBHOOK_DB", str(missing))
    assert main(["copy-db", "--to", f"sqlite:///{tmp_path / 't.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ado-webhook: error: source database {missing} does not exist")
    assert not missing.exists()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("WEBHOOK_DB", "GARBAGE", "cannot be read: file is not a database"),
        ("WEBHOOK_DB", "FOLDER", "is not a file"),
        (
            "WEBHOOK_DATABASE_URL",
            "postgresql://admin:hunter2secret@127.0.0.1:1/x",
            "source database postgresql://admin:***@127.0.0.1:1/x cannot be read: ",
        ),
    ],
)
def test_cli_says_the_source_cannot_be_read(monkeypatch, tmp_path, capsys, variable, value, says):
    for name in list(os.environ):
        if name.startswith("WEBHOOK_"):
            monkeypatch.delenv(name)
    if value == "GARBAGE":
        value = str(tmp_path / "notes.txt")
        Path(value).write_text("not a database, only words " * 20)
    elif value == "FOLDER":
        value = str(tmp_path)
    monkeypatch.setenv(variable, value)
    target = tmp_path / "target.db"
    assert main(["copy-db", "--to", f"sqlite:///{target}"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ado-webhook: error: source database ")
    assert says in err[0], err[0]
    assert "hunter2secret" not in captured.err + captured.out
    assert not target.exists()  # nothing was made of the target


def test_cli_reads_the_source_from_webhook_database_url(monkeypatch, source, tmp_path, capsys):
    for name in list(os.environ):
        if name.startswith("WEBHOOK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WEBHOOK_DB", str(tmp_path / "not-this.db"))
    monkeypatch.setenv("WEBHOOK_DATABASE_URL", f"sqlite:///{source[0]}")
    target = tmp_path / "target.db"
    assert main(["copy-db", "--to", f"sqlite:///{target}"]) == 0
    assert dump(target) == dump(source[0])
    monkeypatch.setenv("WEBHOOK_DATABASE_URL", "oracle://x")
    assert main(["copy-db", "--to", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "WEBHOOK_DATABASE_URL is invalid" in capsys.readouterr().err


def test_console_script_help_and_run(source, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env["WEBHOOK_DB"] = str(source[0])
    helped = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "copy-db", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert helped.returncode == 0
    assert "--to URL" in helped.stdout and "empty" in helped.stdout
    target = tmp_path / "target.db"
    ran = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "copy-db", "--to", f"sqlite:///{target}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "row counts verified" in ran.stdout
    assert dump(target) == dump(source[0])


# ---- PostgreSQL (tests/pg.py: WEBHOOK_TEST_POSTGRES_URL; skipped with one line without it) -----

pg_url = fresh_database_fixture("webhook_copydb")


@pytest.fixture
def pg_empty(pg_url: str) -> Iterator[str]:
    """The module's PostgreSQL database, migrated and emptied for this test."""
    db = PgDatabase(pg_url)
    db.migrate()
    db.truncate_all()
    db.close()
    yield pg_url


def pg_counts(url: str) -> dict[str, int]:
    """Rows per table of the PostgreSQL database (housekeeping meta rows left out)."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        out = {}
        for table in tables:
            if table == "meta":
                query = "SELECT count(*) FROM meta WHERE key <> ALL(%s)"
                row = conn.execute(query, ([*HOUSEKEEPING_META],)).fetchone()
            else:
                row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            assert row is not None
            out[table] = int(row[0])
    return out


def test_sqlite_to_postgres_and_back_keeps_every_row_id_and_secret(source, pg_empty, tmp_path, box):
    path, found = source
    pg = PgDatabase(pg_empty)
    try:
        report = copy_database(Database(path), pg)
        assert report.method == "copy"  # PostgreSQL COPY, not INSERTs
        before = dump(path)
        counts = pg_counts(pg_empty)
        assert {t.name: t.rows for t in report.tables} == {
            name: len(rows) for name, rows in before.items()
        }
        assert all(counts[name] == len(rows) for name, rows in before.items())
        with psycopg.connect(pg_empty) as conn:
            for table in before:  # no secret in clear in any column of any row
                for secret in (PAT, CLIENT_SECRET, *sum(found.source_secrets.values(), ())):
                    hits = conn.execute(
                        f'SELECT count(*) FROM "{table}" AS t WHERE strpos(t::text, %s) > 0',
                        (secret,),
                    ).fetchone()
                    assert hits == (0,), table
            auth = conn.execute("SELECT auth_enc FROM connections WHERE id = 1").fetchone()
            assert PAT in box.decrypt(auth[0])  # the same ciphertext, the same key
            # identities move past the copied ids
            new_id = conn.execute(
                "INSERT INTO templates (name, connection_id, project, work_item_type,"
                " severity_threshold, created_at, updated_at)"
                " VALUES ('new', 1, 'P', 'Bug', 'high', 'now', 'now') RETURNING id"
            ).fetchone()
            assert new_id == (3,)
            conn.rollback()
        back = tmp_path / "back.db"
        returned = copy_database(pg, Database(back))
        assert returned.method == "insert"
    finally:
        pg.close()
    assert dump(back) == before  # every value survives the round trip, ids included
    assert_same_installation(open_storage(back, box), found)


def test_inserts_into_postgres_copy_the_same_rows(source, pg_empty, tmp_path, monkeypatch):
    path, _ = source
    monkeypatch.setattr(copy_module, "BATCH_ROWS", 7)
    pg = PgDatabase(pg_empty)
    try:
        assert copy_database(Database(path), pg, use_copy=False).method == "insert"
        copy_database(pg, Database(tmp_path / "back.db"))
    finally:
        pg.close()
    assert dump(tmp_path / "back.db") == dump(path)


def test_a_failure_midway_leaves_postgres_empty(source, pg_empty, monkeypatch):
    path, _ = source
    real = copy_module._pages

    def failing(conn, table, columns):
        if table.name == "jobs":
            raise RuntimeError("network cut")
        yield from real(conn, table, columns)

    monkeypatch.setattr(copy_module, "_pages", failing)
    pg = PgDatabase(pg_empty)
    try:
        with pytest.raises(CopyError, match="copying table jobs"):
            copy_database(Database(path), pg)
    finally:
        pg.close()
    left = pg_counts(pg_empty)
    assert left.pop("schema_version") == 1  # the engine's own record, written by migrate
    assert set(left.values()) == {0}


def test_cli_to_postgres_then_refused_and_back_from_postgres(
    only_the_database, pg_empty, tmp_path, monkeypatch, capsys
):
    to = pg_empty
    assert main(["copy-db", "--to", to]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith("row counts verified")
    counts = pg_counts(pg_empty)
    assert main(["copy-db", "--to", to]) == 2
    err = capsys.readouterr().err
    assert "is not empty: table meta holds rows" in err and len(err.splitlines()) == 1
    assert pg_counts(pg_empty) == counts
    # and back: PostgreSQL as the configured database, SQLite as the target
    monkeypatch.setenv("WEBHOOK_DATABASE_URL", pg_empty)
    assert main(["copy-db", "--to", to]) == 2
    assert "is the configured database itself" in capsys.readouterr().err
    back = tmp_path / "back.db"
    assert main(["copy-db", "--to", f"sqlite:///{back}"]) == 0
    assert dump(back) == dump(only_the_database)


ADMIN_PAGES = (
    "/admin/risks?per_page=1000",
    "/admin/risks?status=open&severity=critical",
    "/admin/risks/1",
    "/admin/risks/2",
    "/admin/connections",
    "/admin/connections/2",
    "/admin/templates",
    "/admin/templates/2",
    "/admin/sources",
    "/admin/jobs?per_page=1000",
)


def admin_answers(secret_key: str, **database: str) -> dict[str, Any]:
    """The admin API's answers over a database (WEBHOOK_DB=… or WEBHOOK_DATABASE_URL=…)."""
    from tests.conftest import ADMIN_TOKEN
    from webhook import create_app
    from webhook.settings import Settings

    settings = Settings.from_env(
        {"WEBHOOK_ADMIN_TOKEN": ADMIN_TOKEN, "WEBHOOK_SECRET_KEY": secret_key, **database}
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answers = {}
        for page in ADMIN_PAGES:
            response = client.get(page, headers=headers)
            assert response.status_code == 200, (page, response.get_json())
            answers[page] = response.get_json()
        return answers
    finally:
        app.extensions["adowh"].store.db.close()


def test_the_admin_api_answers_the_same_on_the_postgres_copy(source, pg_empty, secret_key):
    path, found = source
    pg = PgDatabase(pg_empty)
    try:
        copy_database(Database(path), pg)
    finally:
        pg.close()
    on_sqlite = admin_answers(secret_key, WEBHOOK_DB=str(path))
    on_postgres = admin_answers(secret_key, WEBHOOK_DATABASE_URL=pg_empty)
    assert on_postgres == on_sqlite
    assert on_postgres["/admin/risks?per_page=1000"]["total"] == 60
    storage = open_storage(pg_empty, SecretBox((secret_key,)))
    try:
        assert_same_installation(storage, found)  # secrets decrypt, new ids follow the copied
    finally:
        storage.db.close()  # type: ignore[attr-defined]
