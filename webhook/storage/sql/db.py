"""What the SQL repositories (`webhook.storage.sql`) need of an engine's database.

The repositories are written once, in SQL both engines speak, against these Protocols; each
engine (`webhook.storage.sqlite`, `webhook.storage.postgres`) provides a `SqlDatabase` and a
`Dialect` for the few fragments that differ. Parameters are written the SQLite way, `?` or
`:name`; an engine whose driver wants another style translates them (PostgreSQL: `%s`,
`%(name)s`). Python bools bind as 0/1 (flags are INTEGER columns in both schemas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    """One result row: by position (`row[0]`) and by column name (`row["id"]`); `keys()`
    names the columns, so `dict(row)` works."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> Sequence[str]: ...


class Cursor(Protocol):
    """The result of one statement: its rows, and how many rows it changed (`rowcount`)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside a transaction (or, for `SqlDatabase.conn`, in autocommit)."""

    def execute(self, sql: str, params: Params = (), /) -> Cursor: ...

    def executemany(self, sql: str, seq: Sequence[Params], /) -> Cursor: ...


class Dialect(Protocol):
    """SQL fragments that differ between engines."""

    @property
    def name(self) -> str:
        """ "sqlite" or "postgresql"."""
        ...

    def greatest(self, a: str, b: str) -> str:
        """The larger of two SQL expressions (SQLite: scalar max(a, b); PostgreSQL: GREATEST)."""
        ...

    def json_array_length(self, column: str) -> str:
        """The length of the JSON array text in `column`."""
        ...

    def json_array_head(self, column: str, n: int) -> str:
        """The first `n` elements of the JSON array text in `column`, as JSON array text
        (an empty array when it has none)."""
        ...

    def skip_locked(self, alias: str) -> str:
        """The clause ending a job claim's SELECT: rows other transactions hold locked are
        skipped, not waited for (PostgreSQL: FOR UPDATE OF alias SKIP LOCKED; SQLite: nothing,
        its writers are serialized)."""
        ...


class SqlDatabase(Protocol):
    """One engine's database as the repositories use it.

    Errors: StorageBusy (webhook.storage.errors) when a wait for the database outlasts its
    budget, StorageUnusable subclasses when it cannot be written or reached; a statement's
    own errors pass through (`integrity_errors` for constraint violations).
    """

    @property
    def dialect(self) -> Dialect:
        """This engine's spelling of the fragments that differ."""
        ...

    @property
    def integrity_errors(self) -> tuple[type[Exception], ...]:
        """The driver's constraint-violation exceptions (unique, foreign key)."""
        ...

    @property
    def conn(self) -> Connection:
        """A connection for one-statement reads outside any transaction (autocommit). Inside a
        unit of work, the unit's connection."""
        ...

    def read(self) -> AbstractContextManager[Connection]:
        """A consistent read snapshot; inside a unit of work, its transaction."""
        ...

    def write(self, *, deadline: float | None = None) -> AbstractContextManager[Connection]:
        """One write transaction (commit on success, roll back on error); inside a unit of
        work, a savepoint of it. `deadline` (time.monotonic()) bounds the wait to begin."""
        ...

    def unit(self, *, deadline: float | None = None) -> AbstractContextManager[Connection]:
        """One write transaction that this thread's reads and writes join until it ends."""
        ...

    def write_grouped(self, work: Callable[[Connection], T]) -> T:
        """Run `work(conn)` in a write transaction, possibly shared with concurrent callers of
        this process (each in its own savepoint); returns its result or raises its error."""
        ...

    def now(self) -> float:
        """The store's clock, seconds since the epoch: the host's wall clock for SQLite (one
        host), the database server's for PostgreSQL (every node agrees)."""
        ...

    @property
    def server_clock(self) -> bool:
        """True when `now()` is a database server's clock (PostgreSQL): a step of this host's
        wall clock then moves no stored time, and needs no repair (see note_clock_offset)."""
        ...

    def clock_offset(self) -> float:
        """`now()` minus this host's wall clock (webhook.clock.now()), seconds: 0.0 for SQLite.
        Converts times callers compute from their own clock (a retry's due time, a pause's end)
        into the store's clock and back."""
        ...

    def wait_for_jobs(self, poll: float) -> bool:
        """Block an idle worker thread until new jobs may be runnable: SQLite sleeps `poll`
        seconds (False); PostgreSQL waits for a NOTIFY from a commit that recorded jobs (True),
        at most about a second, so jobs that merely came due are found too (False)."""
        ...

    def notify_jobs(self, conn: Connection) -> None:
        """Inside a write transaction that recorded runnable jobs: wake idle workers when it
        commits (PostgreSQL NOTIFY; nothing for SQLite, whose workers poll)."""
        ...

    def reserve_ids(self, conn: Connection, table: str, n: int) -> list[int]:
        """`n` fresh ids for `table`'s `id` column, inside `conn`'s write transaction, so rows
        can be inserted together later with explicit ids (SQLite: past max(id), under the
        writers' lock; PostgreSQL: from the identity sequence, in one round trip)."""
        ...

    def check_room(self, conn: Connection, nbytes: int) -> None:
        """Raise StorageFull-like DatabaseUnavailable unless `nbytes` more can be written now
        (a probe inside `conn`'s open write transaction, rolled back)."""
        ...

    def checkpoint(self) -> tuple[int, int]:
        """Engine upkeep the worker runs twice a second (SQLite: WAL checkpoint, returning
        (WAL pages, pages copied)); (0, 0) where there is nothing to do."""
        ...
