"""Copying a whole installation into an empty database (`ado-webhook copy-db --to URL`, SPEC 2).

`copy_database(source, target)` works on two engine databases (`webhook.storage.sql.db`'s
SqlDatabase with `migrate()`: SQLite's `Database`, PostgreSQL's `PgDatabase`), in any direction
(SQLite → PostgreSQL is the point; PostgreSQL → SQLite and SQLite → SQLite let an operator move
back). `copy_between(source, target)` adds what a command needs around it: parsing the target's
URL, refusing a source that does not exist or a target that is the source, and opening both.

How it copies:

- the target is migrated first (its engine's schema), then refused (`TargetNotEmpty`, naming
  the first table that holds data) unless every table is empty; `meta` rows that the engine
  writes for itself (`HOUSEKEEPING_META`: when it was last opened, probes, this host's clock
  offset) do not count, the installation's own (`installation_id`, `tracking_key_enc`, …) do,
  and neither do the engines' records of their schema version (`ENGINE_TABLES`);
- the source is read in one snapshot (`source.read()`), so the copy is consistent even if
  something writes meanwhile; stop the services anyway, or what they write after the
  snapshot is not copied;
- every table of the source, parents before children (foreign keys), every column the two
  schemas share, rows as they are (ids kept; secrets stay Fernet tokens, nothing is decrypted),
  in batches bounded in rows and bytes (a table is never held in memory whole); into
  PostgreSQL with COPY, else with batched INSERTs;
- all of it in one transaction of the target, which also moves PostgreSQL's identity sequences
  past the copied ids and checks each table's row count against the source before it commits:
  any failure (a mismatch included) rolls back and leaves the target as empty as it was.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from webhook.domain.database_url import (
    DatabaseUrlError,
    hide_password,
    parse_database_url,
    redact_url,
)
from webhook.storage.errors import StorageError, StorageUnusable, storage_operational
from webhook.storage.sql.db import Connection

# meta keys the engine writes for itself: not installation data, so neither copied nor counted
# when deciding whether a target is empty. `opened_at` is written by every migrate, the probes
# by /readyz, `clock_offset` describes this host's monotonic clock (a new host records its own).
HOUSEKEEPING_META = frozenset({"opened_at", "ready_probe", "room_probe", "clock_offset"})
# Tables an engine keeps about its own schema (PostgreSQL records its version in a table,
# SQLite in PRAGMA user_version): each target's migrate writes its own; never copied.
ENGINE_TABLES = frozenset({"schema_version"})

# One batch holds at most this many rows and, roughly, this many bytes of text and blobs (a
# risk may carry ~1 MB of evidence, proof and assets; most rows are a few hundred bytes).
BATCH_ROWS = 2000
BATCH_BYTES = 8 * 1024 * 1024
# The first page of a table is small (its rows' weight is not known yet): 64 of the largest
# risks are still well under 100 MB.
FIRST_PAGE_ROWS = 64

Engine = Literal["sqlite", "postgresql"]


class CopyError(StorageError):
    """copy-db cannot go on; the message is one line for people (no password in it)."""


class BadDatabaseUrl(CopyError):
    """The URL names no database this service can use."""


class SourceMissing(CopyError):
    """The source database does not exist or holds no ado-webhook schema."""


class SameDatabase(CopyError):
    """The target is the source itself."""


class TargetUnreachable(CopyError):
    """The target database cannot be opened, reached or migrated."""


class TargetNotEmpty(CopyError):
    """The target already holds data (`table` names the first table found holding rows)."""

    def __init__(self, message: str, table: str) -> None:
        super().__init__(message)
        self.table = table


class CopyMismatch(CopyError):
    """After the copy a table's row count differs from the source's (nothing was committed)."""


class EngineDatabase(Protocol):
    """What the copy needs of an engine database (a subset of SqlDatabase, plus migrate)."""

    @property
    def conn(self) -> Any: ...

    def read(self) -> AbstractContextManager[Any]: ...

    def write(self, *, deadline: float | None = None) -> AbstractContextManager[Any]: ...

    def migrate(self) -> int: ...


# ---- where a database is -------------------------------------------------------------------


redact = redact_url  # the one rule for hiding a URL's password (webhook.domain.database_url)


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a database is: an SQLite file (`path`) or a PostgreSQL server (`url`)."""

    engine: Engine
    path: Path | None = None
    url: str | None = None

    @property
    def label(self) -> str:
        """The location for messages: the file, or the URL with its password hidden."""
        return str(self.path) if self.path is not None else redact(self.url or "")

    @classmethod
    def sqlite(cls, path: Path | str) -> DatabaseLocation:
        """An SQLite file."""
        return cls("sqlite", path=Path(path))

    @classmethod
    def parse(cls, url: str) -> DatabaseLocation:
        """`sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://user:pw@host:port/db`
        (also `postgres://`). Raises BadDatabaseUrl naming what is wrong (never the password).
        """
        try:
            parsed = parse_database_url(url)
        except DatabaseUrlError as exc:
            raise BadDatabaseUrl(f"{redact(url.strip())!r} is not usable: {exc}") from None
        if parsed.path is not None:
            return cls.sqlite(parsed.path)
        return cls("postgresql", url=parsed.url)

    def same_as(self, other: DatabaseLocation) -> bool:
        """Whether both name the same database (same file; same server address, port and
        database name, `localhost` and loopback addresses counting as one)."""
        if self.engine != other.engine:
            return False
        if self.path is not None and other.path is not None:
            try:
                return os.path.samefile(self.path, other.path)
            except OSError:
                return self.path.resolve() == other.path.resolve()
        return _pg_identity(self.url or "") == _pg_identity(other.url or "")


def _pg_identity(url: str) -> tuple[str, int, str]:
    """(host, port, database) of a PostgreSQL URL, hosts on loopback counted as one."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # a URL libpq cannot read names no database we could compare
        return (url, 0, "")
    host = str(info.get("host") or "localhost").lower()
    if host in ("localhost", "127.0.0.1", "::1", "[::1]") or host.startswith("/"):
        host = "localhost"
    port = int(str(info.get("port") or 5432).split(",")[0])
    user = str(info.get("user") or os.environ.get("PGUSER") or "")
    dbname = str(info.get("dbname") or user)
    return (host, port, dbname)


def open_database(location: DatabaseLocation) -> EngineDatabase:
    """The engine database at `location` (nothing is opened or created until first used)."""
    if location.engine == "sqlite":
        from webhook.storage.sqlite.database import Database

        assert location.path is not None
        return Database(location.path)
    from webhook.storage.postgres.database import PgDatabase

    assert location.url is not None
    return PgDatabase(location.url)


def first_table_with_data(location: DatabaseLocation) -> str | None:
    """The first table of ours at `location` that holds installation data (the engine's own
    bookkeeping rows do not count, as for copy-db's target), or None: empty, or no schema yet.

    Raises TargetUnreachable (one line, password hidden) when the database cannot be read.
    """
    if location.url is not None:
        try:  # one direct attempt: a pool would retry in the background, logging each failure
            _reach_postgres(location.url, location.label)
        except SourceMissing as exc:
            raise TargetUnreachable(str(exc)) from None
    db = open_database(location)
    try:
        with db.read() as conn:
            for name in _catalogue(location.engine, conn):
                if _count(conn, name):
                    return name
        return None
    except Exception as exc:
        if isinstance(exc, CopyError):
            raise
        raise TargetUnreachable(
            _scrub(f"cannot read {location.label}: {_one_line(exc)}", location)
        ) from None
    finally:
        close = getattr(db, "close", None)
        if close is not None:
            close()


def engine_of(db: object) -> Engine:
    """The engine of a database object: "sqlite" or "postgresql"."""
    from webhook.storage.sqlite.database import Database

    if isinstance(db, Database):
        return "sqlite"
    name = getattr(getattr(db, "dialect", None), "name", None)
    if name == "sqlite":
        return "sqlite"
    if name == "postgresql":
        return "postgresql"
    raise TypeError(f"{type(db).__name__} is no engine database copy-db knows")


# ---- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableCopy:
    """One table copied: `rows` in the source, the same number verified in the target."""

    name: str
    rows: int


@dataclass(frozen=True)
class CopyReport:
    """What `copy_database` did: tables in the order copied, seconds taken (wall clock), and
    how rows went into the target (`"copy"`: PostgreSQL COPY; `"insert"`: batched INSERTs)."""

    source: str
    target: str
    tables: tuple[TableCopy, ...]
    seconds: float
    method: str

    @property
    def total_rows(self) -> int:
        """Rows copied, every table together."""
        return sum(t.rows for t in self.tables)


# ---- one engine's catalogue ----------------------------------------------------------------


def _q(name: str) -> str:
    """A quoted SQL identifier (both engines)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # columns (or rowid) that order and page the table on this engine
    parents: frozenset[str]  # tables its foreign keys point at


def _catalogue(engine: Engine, conn: Connection) -> dict[str, _Table]:
    """Every table of the schema on `conn` (ENGINE_TABLES left out), by name, in the order the
    schema lists them."""
    found = _tables(engine, conn)
    return {name: table for name, table in found.items() if name not in ENGINE_TABLES}


def _tables(engine: Engine, conn: Connection) -> dict[str, _Table]:
    if engine == "sqlite":
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
            ).fetchall()
        ]
        tables = {}
        for name in names:
            info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (name,)).fetchall()
            parents = {
                str(r[0])
                for r in conn.execute(
                    'SELECT "table" FROM pragma_foreign_key_list(?)', (name,)
                ).fetchall()
            }
            without_rowid = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name=? AND sql LIKE '%WITHOUT ROWID%'",
                (name,),
            ).fetchone()
            pk = tuple(str(r[0]) for r in sorted((r for r in info if r[1]), key=lambda r: r[1]))
            tables[name] = _Table(
                name=name,
                columns=tuple(str(r[0]) for r in info),
                key=pk if without_rowid else ("rowid",),
                parents=frozenset(parents - {name}),
            )
        return tables
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c"
            " WHERE c.relnamespace = CAST(current_schema() AS regnamespace)"
            " AND c.relkind IN ('r', 'p') ORDER BY c.oid"
        ).fetchall()
    ]
    tables = {}
    for name in names:
        qualified = _q(name)
        columns = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(? AS regclass)"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (qualified,),
            ).fetchall()
        )
        key = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(CAST(i.indkey AS int2[]))"
                " WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary"
                " ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)",
                (qualified,),
            ).fetchall()
        )
        parents = {
            str(r[0])
            for r in conn.execute(
                "SELECT p.relname FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid"
                " WHERE c.contype = 'f' AND c.conrelid = CAST(? AS regclass)",
                (qualified,),
            ).fetchall()
        }
        tables[name] = _Table(
            name=name, columns=columns, key=key, parents=frozenset(parents - {name})
        )
    return tables


def _parents_first(tables: dict[str, _Table]) -> list[_Table]:
    """The tables with every table after the tables its foreign keys point at (schema order
    otherwise). Raises CopyError on a cycle of foreign keys."""
    done: list[_Table] = []
    placed: set[str] = set()
    waiting = list(tables.values())
    while waiting:
        ready = [t for t in waiting if not (t.parents & tables.keys()) - placed]
        if not ready:
            names = ", ".join(t.name for t in waiting)
            raise CopyError(f"the foreign keys of tables {names} form a cycle; cannot order them")
        for table in ready:
            done.append(table)
            placed.add(table.name)
        waiting = [t for t in waiting if t.name not in placed]
    return done


def _only_installation_rows(table: str) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its parameters) leaving out the engine's own meta rows."""
    if table != "meta":
        return "", ()
    marks = ", ".join("?" for _ in HOUSEKEEPING_META)
    return f" WHERE key NOT IN ({marks})", tuple(sorted(HOUSEKEEPING_META))


def _count(conn: Connection, table: str) -> int:
    where, params = _only_installation_rows(table)
    return int(conn.execute(f"SELECT count(*) FROM {_q(table)}{where}", params).fetchone()[0])


# ---- values across engines -----------------------------------------------------------------


def _for_sqlite(value: Any) -> Any:
    """A value read from PostgreSQL as SQLite stores it (the schemas keep the same types, so
    this only meets the few Python types psycopg returns that sqlite3 cannot bind)."""
    if value is None or isinstance(value, int | float | str | bytes):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


# ---- the copy ------------------------------------------------------------------------------


class _Sink(Protocol):
    def __call__(self, table: _Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Write `rows` (values of `columns`) into `table` of the target."""


def _page_bytes(page: list[tuple[Any, ...]]) -> int:
    """About how many bytes of text and blobs `page` holds (measured on a sample of ~32 rows:
    a page's rows are alike, and measuring every value costs as much as copying it)."""
    step = max(1, len(page) // 32)
    sample = page[::step]
    measured = sum(len(v) if isinstance(v, str | bytes) else 8 for row in sample for v in row)
    return measured * len(page) // len(sample)


def _pages(
    conn: Connection, table: _Table, columns: Sequence[str]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `table` (values of `columns`), page by page in key order: keyset paging,
    so each page is one indexed range read and no page is held longer than its batch."""
    key = table.key
    if not key:
        raise CopyError(f"table {table.name} has no primary key to read it in order by")
    # Key columns not copied (SQLite's rowid) are read after the copied ones and cut off.
    extra = [k for k in key if k not in columns]
    positions = [columns.index(k) if k in columns else len(columns) + extra.index(k) for k in key]
    width = len(columns)
    names = [*map(_q, columns), *(k if k == "rowid" else _q(k) for k in extra)]
    keys_sql = ", ".join(k if k == "rowid" else _q(k) for k in key)
    where, base_params = _only_installation_rows(table.name)
    limit = min(FIRST_PAGE_ROWS, BATCH_ROWS)
    last: list[Any] | None = None
    while True:
        clauses, params = [], list(base_params)
        if where:
            clauses.append(where.removeprefix(" WHERE "))
        if last is not None:
            marks = ", ".join("?" for _ in key)
            clauses.append(f"({keys_sql}) > ({marks})" if len(key) > 1 else f"{keys_sql} > ?")
            params.extend(last)
        sql = f"SELECT {', '.join(names)} FROM {_q(table.name)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {keys_sql} LIMIT {limit}"
        rows = conn.execute(sql, params).fetchall()
        if not rows:
            return
        final = tuple(rows[-1])
        last = [final[i] for i in positions]
        page = [tuple(row)[:width] for row in rows] if extra else [tuple(row) for row in rows]
        size = _page_bytes(page)
        yield page
        if len(rows) < limit:
            return
        # Large rows: fewer per page next time, so a page stays near BATCH_BYTES.
        average = max(1, size // len(rows))
        limit = max(16, min(BATCH_ROWS, BATCH_BYTES // average))


def _insert_sink(target_conn: Connection, convert: Callable[[Any], Any] | None) -> _Sink:
    def sink(table: _Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_q(table.name)} ({', '.join(map(_q, columns))}) VALUES ({marks})"
        if convert is not None:
            rows = [tuple(convert(v) for v in row) for row in rows]
        target_conn.executemany(sql, rows)

    return sink


def _copy_sink(raw: Any) -> _Sink:
    """PostgreSQL COPY FROM STDIN through psycopg's `Cursor.copy` (text format)."""

    def sink(table: _Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        statement = f"COPY {_q(table.name)} ({', '.join(map(_q, columns))}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    return sink


def _raw_psycopg(conn: Any) -> Any:
    """The psycopg connection under a PostgreSQL engine connection, or None if not found."""
    import psycopg

    for candidate in (conn, getattr(conn, "raw", None), getattr(conn, "_conn", None)):
        if isinstance(candidate, psycopg.Connection):
            return candidate
    return None


def _reset_identities(conn: Connection, tables: Iterable[_Table]) -> None:
    """Move each PostgreSQL sequence owned by a key column past the largest copied value."""
    for table in tables:
        for column in table.key:
            sequence = conn.execute(
                "SELECT pg_get_serial_sequence(?, ?)", (_q(table.name), column)
            ).fetchone()[0]
            if sequence is None:
                continue
            conn.execute(
                f"SELECT setval(CAST(? AS regclass), m) FROM"
                f" (SELECT max({_q(column)}) AS m FROM {_q(table.name)}) AS copied"
                " WHERE m IS NOT NULL",
                (sequence,),
            )


def copy_database(
    source: EngineDatabase,
    target: EngineDatabase,
    *,
    source_label: str = "source",
    target_label: str = "target",
    use_copy: bool = True,
    progress: Callable[[TableCopy], None] | None = None,
) -> CopyReport:
    """Copy every row of `source` into `target` (see the module doc for how).

    `progress` is called after each table is written (before the final checks and commit).
    `use_copy=False` writes PostgreSQL targets with INSERTs instead of COPY (for comparison).
    Raises TargetNotEmpty, TargetUnreachable (the target cannot be migrated), SourceMissing
    (no ado-webhook schema in the source), CopyError (a source table or column the target
    schema lacks holds data; a row the target refuses, naming the table), CopyMismatch;
    after any of them the target holds no copied row.
    """
    started = time.monotonic()
    source_engine, target_engine = engine_of(source), engine_of(target)
    with source.read() as sconn:
        source_tables = _catalogue(source_engine, sconn)
        if "meta" not in source_tables:
            raise SourceMissing(f"source {source_label} holds no ado-webhook database")
        try:
            target.migrate()
        except StorageUnusable as exc:
            raise TargetUnreachable(f"target {target_label}: {exc.problem}") from exc
        except Exception as exc:
            if not _is_operational(exc):
                raise
            raise TargetUnreachable(f"target {target_label}: {_one_line(exc)}") from exc
        with target.write() as tconn:
            target_tables = _catalogue(target_engine, tconn)
            for name in target_tables:
                if _count(tconn, name):
                    raise TargetNotEmpty(
                        f"target {target_label} is not empty: table {name} holds rows; "
                        "copy-db copies only into an empty database",
                        name,
                    )
            plan = _plan(sconn, source_tables, target_tables)
            raw = _raw_psycopg(tconn) if target_engine == "postgresql" and use_copy else None
            convert = (
                _for_sqlite if target_engine == "sqlite" and source_engine != "sqlite" else None
            )
            sink = _copy_sink(raw) if raw is not None else _insert_sink(tconn, convert)
            copied = []
            for table, columns in plan:
                try:
                    for page in _pages(sconn, table, columns):
                        sink(target_tables[table.name], columns, page)
                except StorageError:
                    raise
                except Exception as exc:
                    raise CopyError(
                        f"copying table {table.name} into {target_label} failed: "
                        f"{_one_line(exc)}; nothing was copied"
                    ) from exc
                done = TableCopy(table.name, _count(sconn, table.name))
                copied.append(done)
                if progress is not None:
                    progress(done)
            if target_engine == "postgresql":
                _reset_identities(tconn, (target_tables[t.name] for t, _ in plan))
            for done in copied:
                found = _count(tconn, done.name)
                if found != done.rows:
                    raise CopyMismatch(
                        f"table {done.name}: {done.rows} rows in the source, {found} in the "
                        "target after the copy; nothing was committed"
                    )
    return CopyReport(
        source=source_label,
        target=target_label,
        tables=tuple(copied),
        seconds=time.monotonic() - started,
        method="copy" if raw is not None else "insert",
    )


def _plan(
    sconn: Connection, source: dict[str, _Table], target: dict[str, _Table]
) -> list[tuple[_Table, tuple[str, ...]]]:
    """(source table, columns to copy) for each source table, parents first. A table or column
    the target lacks is left out while it holds no data; with data it raises CopyError."""
    plan = []
    for table in _parents_first(source):
        theirs = target.get(table.name)
        if theirs is None:
            if _count(sconn, table.name):
                raise CopyError(
                    f"the target's schema has no table {table.name}, which holds rows in the "
                    "source; migrate the source with this ado-webhook release first"
                )
            continue
        columns = tuple(c for c in table.columns if c in theirs.columns)
        for column in table.columns:
            if column in theirs.columns:
                continue
            held = sconn.execute(
                f"SELECT 1 FROM {_q(table.name)} WHERE {_q(column)} IS NOT NULL LIMIT 1"
            ).fetchone()
            if held is not None:
                raise CopyError(
                    f"the target's table {table.name} has no column {column}, which holds "
                    "data in the source; migrate the source with this ado-webhook release first"
                )
        plan.append((table, columns))
    return plan


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def copy_between(
    source: DatabaseLocation,
    target: DatabaseLocation,
    *,
    progress: Callable[[TableCopy], None] | None = None,
) -> CopyReport:
    """Open `source` and `target` and `copy_database` between them.

    Raises SourceMissing (no such SQLite file, a file or server or database that cannot be
    read, no ado-webhook schema in it), SameDatabase, TargetUnreachable (cannot connect,
    authenticate, create or migrate), what `copy_database` raises, and CopyError when either
    database fails on the way (busy past its wait, full, connection lost). Every one is a
    CopyError whose message names the databases without their passwords.
    """
    if source.same_as(target):
        raise SameDatabase(
            f"the target {target.label} is the configured database itself; "
            "name another, empty database"
        )
    if source.path is not None and not source.path.is_file():
        what = "is not a file" if source.path.exists() else "does not exist"
        raise SourceMissing(
            f"source database {source.label} {what} "
            "(set WEBHOOK_DB or WEBHOOK_DATABASE_URL to the database to copy)"
        )
    if source.url is not None:
        _reach_postgres(source.url, f"source database {source.label}")
    opened: list[EngineDatabase] = []
    try:
        try:
            source_db = open_database(source)
            opened.append(source_db)
            with source_db.read() as conn:
                conn.execute("SELECT 1").fetchone()
        except Exception as exc:
            if not _is_operational(exc) and not isinstance(exc, _UNREADABLE):
                raise
            problem = _scrub(_one_line(exc), source, target)
            raise SourceMissing(
                f"source database {source.label} cannot be read: {problem}"
            ) from exc
        try:
            target_db = open_database(target)
            opened.append(target_db)
        except ImportError as exc:
            raise TargetUnreachable(f"target {target.label}: {exc}") from exc
        try:
            return copy_database(
                source_db,
                target_db,
                source_label=source.label,
                target_label=target.label,
                progress=progress,
            )
        except CopyError as exc:
            exc.args = (_scrub(str(exc), source, target),)
            raise
        except StorageError as exc:  # busy, full or lost on the way: nothing was committed
            problem = _scrub(_one_line(exc), source, target)
            raise CopyError(
                f"the copy into {target.label} stopped: {problem}; nothing was committed"
            ) from exc
    finally:
        for db in opened:
            close = getattr(db, "close", None)
            if close is not None:
                close()


def _reach_postgres(url: str, what: str) -> None:
    """Connect to `url` once, directly (a pool would retry in the background, logging each
    failure, until its wait runs out); SourceMissing naming `what` and why when it fails."""
    import psycopg

    from webhook.storage.postgres import connect_problem

    try:
        psycopg.connect(url, connect_timeout=5, application_name="ado-webhook copy-db").close()
    except psycopg.Error as exc:
        raise SourceMissing(f"{what} cannot be read: {connect_problem(exc, url)}") from exc


# Errors that say a source cannot be opened as a database (besides operational ones): a file
# that is not SQLite, a storage that refuses to open, a driver missing.
_UNREADABLE = (sqlite3.DatabaseError, StorageUnusable, ImportError)


def _is_operational(exc: BaseException) -> bool:
    """Whether `exc` says a database cannot be reached or used (not a bug of ours)."""
    import psycopg

    return isinstance(exc, psycopg.OperationalError) or storage_operational(exc)


def _scrub(message: str, *locations: DatabaseLocation) -> str:
    """`message` with the passwords of `locations` replaced by `***`."""
    for location in locations:
        if location.url:
            message = hide_password(message, location.url)
    return message
