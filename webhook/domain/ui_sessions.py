"""Admin web UI session and sign-in throttling policy (stdlib only)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SESSION_IDLE_SECONDS = 3600.0
"""A session unused for this long ends (the next request goes to the sign-in page)."""
SESSION_MAX_SECONDS = 12 * 3600.0
"""A session ends this long after sign-in, used or not."""
SESSION_TOUCH_SECONDS = 60.0
"""last_seen is written at most this often per session (reads stay reads)."""

FREE_FAILURES = 5
"""Failed sign-ins from one address before it has to wait."""
FIRST_LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 900.0
FAILURE_MEMORY_SECONDS = 3600.0
"""A failure older than this (with none since) is forgotten."""


def session_hash(session_id: str) -> str:
    """SHA-256 hex of a session id: what the database keeps instead of the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def lock_seconds(failures: int) -> float:
    """How long an address waits after its n-th consecutive failure (0 for the first five).

    Doubles from FIRST_LOCK_SECONDS with every failure past FREE_FAILURES, capped at
    MAX_LOCK_SECONDS.
    """
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(FIRST_LOCK_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_LOCK_SECONDS))


@dataclass(frozen=True)
class SignInCheck:
    """Whether an address may try to sign in now, and if not for how many more seconds."""

    allowed: bool
    wait_seconds: int = 0
