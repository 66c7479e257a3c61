"""Time: one small injectable interface over the wall clock and the monotonic clock.

- `now()` is the wall clock (unix seconds). Use it for what people read (ISO timestamps) and for
  moments several processes compare through the database (a job's due time, a pause's end). It
  can step: NTP, a person, a VM resumed.
- `monotonic()` never steps. Use it for durations and timeouts inside one process (loop cadence,
  lease renewal cadence, how long a lease was seen unchanged).

Everything reads the clock through this module, so a test can install a clock whose wall time it
steps (`use(fake)`) without touching the machine's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """What the service needs to know about time."""

    #: Identifies the run of the monotonic clock (it starts over at each boot): two monotonic
    #: readings are comparable only under the same `boot`.
    boot: str

    def now(self) -> float:
        """Wall-clock unix time in seconds (may step forwards or backwards)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` of monotonic time."""
        ...


def _boot_id() -> str:
    """Linux's per-boot id (CLOCK_MONOTONIC, which time.monotonic reads, restarts at boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


class SystemClock:
    """The machine's clocks: time.time() and time.monotonic()."""

    def __init__(self) -> None:
        self.boot = _boot_id()

    def now(self) -> float:
        """time.time()."""
        return time.time()

    def monotonic(self) -> float:
        """time.monotonic() (CLOCK_MONOTONIC on Linux: one clock for every process of a host)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        time.sleep(max(0.0, seconds))


_current: Clock = SystemClock()


def current() -> Clock:
    """The clock in use."""
    return _current


@contextmanager
def use(replacement: Clock) -> Iterator[Clock]:
    """Make every reader of this module use `replacement` until the block ends (tests)."""
    global _current
    previous, _current = _current, replacement
    try:
        yield replacement
    finally:
        _current = previous


def now() -> float:
    """Current wall-clock unix time in seconds."""
    return _current.now()


def monotonic() -> float:
    """Current monotonic time in seconds (only differences mean anything)."""
    return _current.monotonic()


def sleep(seconds: float) -> None:
    """Wait `seconds` of monotonic time."""
    _current.sleep(seconds)


def iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. 2026-11-22T10:00:00.123Z."""
    moment = datetime.fromtimestamp(now() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_or_none(ts: float | None) -> str | None:
    """iso() that passes None through."""
    return None if ts is None else iso(ts)
