"""Work the sandbox owes at a future instant (an image finishing, a move task's next second)."""
from __future__ import annotations

import heapq
import itertools
from typing import Callable

from .clock import Clock


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties run in the order they were scheduled: deterministic

    def at(self, instant: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (instant, next(self._order), action))

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        self.at(self.clock.now() + seconds, action)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        ran = 0
        now = self.clock.now()
        while self._heap and self._heap[0][0] <= now:
            _, _, action = heapq.heappop(self._heap)
            action()
            ran += 1
        return ran

    def clear(self) -> None:
        self._heap.clear()
