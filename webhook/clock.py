"""Time helpers: unix seconds for scheduling, ISO-8601 UTC strings for people."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    """Current unix time in seconds."""
    return time.time()


def iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. 2026-11-22T10:00:00.123Z."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_or_none(ts: float | None) -> str | None:
    """iso() that passes None through."""
    return None if ts is None else iso(ts)
