"""SQS delays, visibility timeouts and retention follow the sandbox's clock.

On the real clock this changes nothing; on a virtual clock it is what lets a test or the
simulator jump over a 900 s DelaySeconds instead of waiting for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import moto.sqs.models as sqs_models

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


class SqsClock:
    def install(self, sandbox: "Sandbox") -> None:
        self._originals = (sqs_models.unix_time, sqs_models.unix_time_millis)
        clock = sandbox.clock
        sqs_models.unix_time = lambda *_: clock.now()
        sqs_models.unix_time_millis = lambda *_: clock.now() * 1000.0

    def uninstall(self) -> None:
        sqs_models.unix_time, sqs_models.unix_time_millis = self._originals

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None

    @staticmethod
    def next_visible_at() -> float | None:
        """When the next message held back (delayed or in flight) becomes receivable, in any queue."""
        instants = [
            max(message.delayed_until, message.visible_at) / 1000.0 + 0.001  # moto compares strictly
            for account in list(sqs_models.sqs_backends.values())
            for backend in list(account.values())
            for queue in list(backend.queues.values())
            for message in list(queue._messages)
            if message.delayed or not message.visible
        ]
        return min(instants, default=None)
