"""Time for the sandbox: the real clock for the HTTP server, a virtual one for tests and the simulator."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class RealClock:
    def now(self) -> float:
        return time.time()


class VirtualClock:
    """Time that moves only when told to; starts at a fixed instant so runs are reproducible."""

    DEFAULT_START = 1_796_000_000.0  # 2026-11-30, an arbitrary fixed instant

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds

    def advance_to(self, instant: float) -> None:
        self._now = max(self._now, float(instant))
