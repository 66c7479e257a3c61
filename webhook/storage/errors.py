"""The one error tree of storage: what callers outside an implementation catch.

`Missing`, `AlreadyExists` and `InUse` are answers about the data (404, 409); `StorageBusy` says
the storage cannot take the request now and nothing of it was stored (503 with Retry-After);
`StorageUnusable` that it cannot be used at all at start. An implementation raises subclasses
of these and registers, with `register_engine`, how to read its own low-level exceptions, so
that `storage_unavailable` answers for errors that escaped it raw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class StorageError(Exception):
    """Base class of every storage error."""


class AlreadyExists(StorageError):
    """A row with that unique name already exists."""


class Missing(StorageError):
    """The row does not exist."""


class InUse(StorageError):
    """The row is referenced by others (or busy with work) and cannot be changed that way."""


class StorageBusy(StorageError):
    """The storage cannot take this request now and nothing of it was stored; retry later.

    `reason` is a short phrase for people (/readyz, error messages); `retry_after` the seconds
    an HTTP client is asked to wait (the Retry-After header of the 503). Implementations
    subclass it for busy, full and gone.
    """

    reason = "unavailable"
    retry_after = 5

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reason)


class StorageUnusable(StorageError):
    """The storage cannot be used at start: one line naming the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"database {path}: {problem}")
        self.path = path
        self.problem = problem


_Translate = Callable[[BaseException], StorageBusy | None]
_Check = Callable[[BaseException], bool]
_translators: list[_Translate] = []
_operational: list[_Check] = []


def register_engine(*, unavailable: _Translate, operational: _Check) -> None:
    """Let an implementation say how to read its low-level exceptions (done at its import).

    `unavailable(exc)` maps an exception to the StorageBusy it stands for (or None);
    `operational(exc)` says whether it is an operational failure of the engine (not a bug).
    """
    if unavailable not in _translators:
        _translators.append(unavailable)
    if operational not in _operational:
        _operational.append(operational)


def storage_unavailable(exc: BaseException) -> StorageBusy | None:
    """The StorageBusy an exception stands for, or None if it is no such condition."""
    if isinstance(exc, StorageBusy):
        return exc
    for translate in _translators:
        found = translate(exc)
        if found is not None:
            return found
    return None


def storage_operational(exc: BaseException) -> bool:
    """Whether an exception is StorageBusy or an operational failure of a storage engine."""
    return isinstance(exc, StorageBusy) or any(check(exc) for check in _operational)
