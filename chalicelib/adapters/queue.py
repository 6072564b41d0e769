"""The jobs queue."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import AwsError
from ..events import JobMessage
from .aws import aws_call

SEND_BATCH_MAX = 10


@dataclass
class JobQueue:
    sqs: object
    queue_url: str

    def send(self, messages: list[tuple[JobMessage, int]]) -> None:
        """SendMessageBatch in tens; any entry SQS refuses fails the call, so the caller retries."""
        for start in range(0, len(messages), SEND_BATCH_MAX):
            chunk = messages[start:start + SEND_BATCH_MAX]
            entries = [{"Id": str(i), "MessageBody": m.body(), "DelaySeconds": delay} for i, (m, delay) in enumerate(chunk)]
            with aws_call("sqs:SendMessageBatch"):
                failed = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            if failed:
                first = failed[0]
                raise AwsError("sqs:SendMessageBatch", first.get("Code", "Unknown"),
                               f"{len(failed)} of {len(entries)} messages refused: {first.get('Message', '')}")
