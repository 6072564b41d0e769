"""When to look at an image AWS is still making. Pure: the caller passes the clock.

The `EC2 AMI State Change` event wakes a job the moment its image is ready; polling is only the
backstop for a lost event. So a poll before the image can plausibly be ready is a wasted call.
The plan polls first at the expected end (from the image's size), then every tenth of the time
waited so far: a lost event is noticed within about 10% of the operation's duration, and a job
whose event arrives polls only when its image is later than expected.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .backoff import SQS_MAX_DELAY_S

_EXPECTED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\+\s*(\d+(?:\.\d+)?)\s*/\s*GiB\s*$")


@dataclass(frozen=True)
class Expected:
    """How long an operation is expected to take: a fixed part plus a part per GiB of the image."""

    base_s: float
    per_gib_s: float

    @classmethod
    def parse(cls, text: str) -> "Expected":
        """'120+6/GiB': 120 s plus 6 s per GiB."""
        match = _EXPECTED.match(text)
        if not match:
            raise ValueError(f"{text!r} is not '<seconds>+<seconds per GiB>/GiB', e.g. '120+6/GiB'")
        return cls(float(match.group(1)), float(match.group(2)))

    def seconds(self, size_gib: float) -> float:
        return self.base_s + self.per_gib_s * size_gib


@dataclass(frozen=True)
class PollPlan:
    min_s: int
    max_s: int
    grid_s: int = 1  # looks fall on multiples of this (epoch seconds), so the jobs of a wave poll together
    first_at: float = 1.0  # the first poll, as a share of the expected duration
    every: float = 0.1  # later polls, as a share of the time waited so far (at least the expected duration)

    def delay(self, started_at: float, now: float, expected_s: float) -> int:
        """Seconds until the next look at an operation that started at `started_at`. The first look may be
        further off than SQS can delay a message (900 s): the job then waits in hops (service.py)."""
        waited = max(0.0, now - started_at)
        first = self.first_at * expected_s
        if waited < first:
            return int(max(self.min_s, round(first - waited)))
        return int(max(self.min_s, min(self.max_s, round(self.every * max(expected_s, waited)))))

    def on_grid(self, at: float) -> float:
        """`at` moved later, onto the grid: SQS then hands the consumer the looks of many jobs in one batch
        instead of one each."""
        return math.ceil(at / self.grid_s) * self.grid_s

    def delay_on_grid(self, now: float, seconds: float) -> int:
        """A delay of at least `seconds` that ends on the grid."""
        return math.ceil(self.on_grid(now + seconds) - now)

    def hop(self, now: float, wake_at: float) -> float:
        """Where a wait past SQS's longest delay goes on: at `wake_at` if SQS can delay that far, or else as far
        as it can on a grid five times coarser (a hop only sends the message on: the more that share a batch,
        the better)."""
        if wake_at - now <= SQS_MAX_DELAY_S:
            return wake_at
        coarse = min(5 * self.grid_s, SQS_MAX_DELAY_S // 3)  # so that a hop always goes at least 600 s on
        return math.floor((now + SQS_MAX_DELAY_S) / coarse) * coarse
