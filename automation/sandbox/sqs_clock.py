"""SQS delays, visibility timeouts and retention follow the sandbox's clock.

On the real clock this changes nothing; on a virtual clock it is what lets a test or the
simulator jump over a 900 s DelaySeconds instead of waiting for it.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import moto.sqs.models as sqs_models

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


class SqsClock:
    # When held-back messages come due: pushed whenever a message is delayed or made invisible, so finding the
    # next one does not scan every message (a wave of 10,000 jobs keeps ~10,000 in the queue). An entry whose
    # message was deleted or re-timed since only makes the caller look once for nothing.
    _due: list[float] = []
    _clock: Any = None

    def install(self, sandbox: "Sandbox") -> None:
        self._originals = (sqs_models.unix_time, sqs_models.unix_time_millis)
        self._message_methods = (sqs_models.Message.change_visibility, sqs_models.Message.delay)
        clock = sandbox.clock
        sqs_models.unix_time = lambda *_: clock.now()
        sqs_models.unix_time_millis = lambda *_: clock.now() * 1000.0
        SqsClock._due, SqsClock._clock = [], clock
        change_visibility, delay = self._message_methods

        def held_for_visibility(message: Any, visibility_timeout: int) -> None:
            change_visibility(message, visibility_timeout)
            _held(message)

        def held_for_delay(message: Any, delay_seconds: int) -> None:
            delay(message, delay_seconds)
            _held(message)

        sqs_models.Message.change_visibility, sqs_models.Message.delay = held_for_visibility, held_for_delay

    def uninstall(self) -> None:
        sqs_models.unix_time, sqs_models.unix_time_millis = self._originals
        sqs_models.Message.change_visibility, sqs_models.Message.delay = self._message_methods
        SqsClock._due, SqsClock._clock = [], None

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None

    @staticmethod
    def next_visible_at() -> float | None:
        """When the next message held back (delayed or in flight) becomes receivable, in any queue."""
        due, clock = SqsClock._due, SqsClock._clock
        if clock is None:
            return None
        now = clock.now()
        while due and due[0] <= now:
            heapq.heappop(due)
        return due[0] if due else None


def _held(message: Any) -> None:
    heapq.heappush(SqsClock._due, max(message.delayed_until, message.visible_at) / 1000.0 + 0.001)  # moto compares strictly
