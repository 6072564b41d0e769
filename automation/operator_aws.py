"""The operator's side of AWS: a stage's table, jobs queue and dead-letter queue, reached with the
operator's own credentials or, with an endpoint URL, inside a sandbox (entered as the stage's account).

All of the operator commands' boto3 is here; jobs are read and written through chalicelib's job store
and queue adapters, so the CLI keeps the service's protocol.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import boto3
from botocore.config import Config

from automation.stages import function_environment
from chalicelib import config
from chalicelib.adapters.aws import aws_call
from chalicelib.adapters.job_store import DynamoJobStore
from chalicelib.adapters.queue import JobQueue

# standard retries, and no "ami-distributor" user agent: an operator's calls are not the service's
OPERATOR_CONFIG = Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=30,
                         user_agent_extra="operator-cli")
HOLD_SECONDS = 60  # how long a look at the DLQ keeps a message out of others' sight (released at once after)
RECEIVE_MAX = 10


class NotADeadLetterQueue(ValueError):
    pass


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # receives before this look (SQS counts ours too)
    sent_at: float


@dataclass(frozen=True)
class MoveTask:
    status: str
    moved: int
    to_move: int
    failure: str | None
    handle: str | None


@dataclass
class DeadLetters:
    """The stage's DLQ: look without consuming (hold, then release), delete one, or move all with a task."""

    sqs: object
    url: str
    arn: str

    def hold(self, limit: int | None = None) -> Iterator[DeadLetter]:
        """Every message (up to `limit`), each received once and kept invisible until released or deleted."""
        seen = 0
        while limit is None or seen < limit:
            count = RECEIVE_MAX if limit is None else min(RECEIVE_MAX, limit - seen)
            with aws_call("sqs:ReceiveMessage"):
                messages = self.sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=count, VisibilityTimeout=HOLD_SECONDS, WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"]).get("Messages", [])
            if not messages:
                return
            for message in messages:
                attributes = message.get("Attributes", {})
                seen += 1
                yield DeadLetter(message["MessageId"], message["ReceiptHandle"], message["Body"],
                                 int(attributes.get("ApproximateReceiveCount", "1")) - 1,
                                 int(attributes.get("SentTimestamp", "0")) / 1000.0)

    def release(self, letters: list[DeadLetter]) -> None:
        for start in range(0, len(letters), RECEIVE_MAX):
            entries = [{"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                       for i, letter in enumerate(letters[start:start + RECEIVE_MAX])]
            with aws_call("sqs:ChangeMessageVisibilityBatch"):
                self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)

    def delete(self, letter: DeadLetter) -> None:
        with aws_call("sqs:DeleteMessage"):
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)

    def depth(self) -> int:
        with aws_call("sqs:GetQueueAttributes"):
            attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values())

    def latest_task(self) -> MoveTask | None:
        with aws_call("sqs:ListMessageMoveTasks"):
            results = self.sqs.list_message_move_tasks(SourceArn=self.arn, MaxResults=1).get("Results", [])
        if not results:
            return None
        task = results[0]
        return MoveTask(task["Status"], int(task.get("ApproximateNumberOfMessagesMoved", 0)),
                        int(task.get("ApproximateNumberOfMessagesToMove", 0)), task.get("FailureReason"),
                        task.get("TaskHandle"))

    def start_move(self, destination_arn: str) -> str:
        """StartMessageMoveTask to the jobs queue, at the rate SQS picks (≤ 500 messages/s)."""
        with aws_call("sqs:StartMessageMoveTask"):
            return self.sqs.start_message_move_task(SourceArn=self.arn, DestinationArn=destination_arn)["TaskHandle"]


@dataclass
class StageConnection:
    name: str
    settings: config.Settings
    store: DynamoJobStore
    queue: JobQueue
    sqs: object

    @property
    def region(self) -> str:
        return self.settings.queue_arn.split(":")[3]

    def dead_letters(self, dlq_url: str | None = None) -> DeadLetters:
        """The jobs queue's DLQ (from its redrive policy); a `dlq_url` given must be that queue."""
        with aws_call("sqs:GetQueueAttributes"):
            policy = self.sqs.get_queue_attributes(QueueUrl=self.settings.queue_url,
                                                   AttributeNames=["RedrivePolicy"])["Attributes"].get("RedrivePolicy")
        if not policy:
            raise NotADeadLetterQueue(f"the jobs queue of stage {self.name} has no redrive policy, so no DLQ")
        dlq_arn = json.loads(policy)["deadLetterTargetArn"]
        if dlq_url is not None:
            with aws_call("sqs:GetQueueAttributes"):
                given = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
            if given["QueueArn"] != dlq_arn:
                raise NotADeadLetterQueue(f"{dlq_url} is not the dead-letter queue of stage {self.name}'s jobs "
                                          f"queue (that is {dlq_arn})")
            return DeadLetters(self.sqs, dlq_url, dlq_arn)
        _, _, _, _, account, name = dlq_arn.split(":")
        with aws_call("sqs:GetQueueUrl"):
            url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return DeadLetters(self.sqs, url, dlq_arn)


def connect(stage: str, endpoint_url: str | None = None) -> StageConnection:
    """Raises automation.stages.UnknownStage or chalicelib.config.ConfigError on a bad stage."""
    settings = config.load(function_environment(stage))
    _, _, _, region, account, _ = settings.queue_arn.split(":")
    if endpoint_url:
        from automation.sandbox.core import Sandbox  # a sandbox: enter the stage's account as its operator

        session = Sandbox.remote(endpoint_url).session(account, region)
    else:
        session = boto3.Session(region_name=region)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url, config=OPERATOR_CONFIG)
    sqs = session.client("sqs", endpoint_url=endpoint_url, config=OPERATOR_CONFIG)
    return StageConnection(stage, settings, DynamoJobStore(dynamodb, settings.table_name, settings.job_ttl_days),
                           JobQueue(sqs, settings.queue_url), sqs)
