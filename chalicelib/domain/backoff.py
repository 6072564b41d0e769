"""When to look at a job again. Pure: the caller passes the random draw, so tests and the
simulator are deterministic and production uses real randomness."""
from __future__ import annotations

from dataclasses import dataclass

SQS_MAX_DELAY_S = 900  # SendMessage DelaySeconds upper bound


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base * 2**attempt, capped, scaled by a draw in [1 - jitter, 1]."""

    base_s: float
    cap_s: float
    jitter: float = 0.5

    def delay(self, attempt: int, draw: float) -> int:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)), SQS_MAX_DELAY_S)
        return max(0, min(SQS_MAX_DELAY_S, round(ceiling * (1 - self.jitter * draw))))
