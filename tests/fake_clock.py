"""A clock for tests: its wall time steps on request, its monotonic time only moves forward."""

from __future__ import annotations

import threading


class FakeClock:
    """Implements webhook.clock.Clock; `sleep` advances time instead of waiting."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self.boot = "fake-boot"
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move by `seconds`."""
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def step(self, seconds: float) -> None:
        """The wall clock is set forwards (+) or backwards (-); no time passes."""
        with self._lock:
            self._wall += seconds
