"""SQS StartMessageMoveTask / ListMessageMoveTasks / CancelMessageMoveTask (DLQ redrive).

moto 5.2.5 has none of the three. A task here moves the messages that were in the dead-letter
queue when it started, oldest first, one batch per virtual second on the sandbox's scheduler:
`MaxNumberOfMessagesPerSecond` of them, or `settings.move_task_max_rate` (500, SQS's ceiling)
when the caller leaves the rate to "the system". Each message is re-sent as a new message
(new ID, receive count and retention reset, as the redrive guide says) with its body and
message attributes, then removed from the DLQ. A message that is in flight waits until it is
visible again (visibility follows the sandbox clock: see sqs_clock.py); one that a consumer
deletes meanwhile is simply no longer work.

Without `DestinationArn` a message goes back to the queue it was dead-lettered from. moto
keeps no trace of that, so while the sandbox runs, moto's `receive_message` is wrapped to stamp
each message it dead-letters with AWS's `DeadLetterQueueSourceArn` system attribute.

Errors and fields follow the SQS API reference and AWS's recorded answers (LocalStack's
AWS-validated snapshots of these operations).
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from moto.core.exceptions import ServiceException
from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends

from .wire import AwsRequest, AwsResponse, json_error, json_response

if TYPE_CHECKING:
    from .core import Sandbox

ORIGIN_ATTRIBUTE = "DeadLetterQueueSourceArn"  # AWS's system attribute for a dead-lettered message's source
ACTIVE = ("RUNNING", "CANCELLING")
LIST_LIMIT = 10  # ListMessageMoveTasks: "the most recent message movement tasks (up to 10)"
STEP_SECONDS = 1.0


class _TaskFailed(Exception):
    """The task stops with this FailureReason (an SQS error code, as AWS reports it)."""


@dataclass
class MoveTask:
    task_id: str
    source_arn: str
    destination_arn: str | None
    rate: int | None
    started_ms: int
    to_move: set[str]  # IDs of the DLQ's messages when the task started: its whole work
    approximate_to_move: int
    moved: int = 0
    status: str = "RUNNING"
    failure_reason: str | None = None

    @property
    def handle(self) -> str:
        # AWS's handle is base64 of {"taskId":…,"sourceArn":…}: CancelMessageMoveTask finds the task from it.
        document = json.dumps({"taskId": self.task_id, "sourceArn": self.source_arn}, separators=(",", ":"))
        return base64.b64encode(document.encode()).decode()

    def as_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Status": self.status,
            "SourceArn": self.source_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": self.approximate_to_move,
            "StartedTimestamp": self.started_ms,
        }
        if self.status == "RUNNING":
            entry["TaskHandle"] = self.handle
        if self.destination_arn:
            entry["DestinationArn"] = self.destination_arn
        if self.rate is not None:
            entry["MaxNumberOfMessagesPerSecond"] = self.rate
        if self.failure_reason:
            entry["FailureReason"] = self.failure_reason
        return entry


def _queue_at(arn: str) -> Queue | None:
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    _, _, _, region, account, name = parts
    try:
        return sqs_backends[account][region].queues.get(name)
    except KeyError:  # a region moto does not know
        return None


def _backend_of(queue: Queue) -> SQSBackend:
    return sqs_backends[queue.account_id][queue.region]


def _not_found(parameter: str) -> AwsResponse:
    return _resource_not_found(f"The resource that you specified for the {parameter} parameter doesn't exist.")


def _resource_not_found(message: str) -> AwsResponse:
    return json_error("ResourceNotFoundException", message, 404, query_code="ResourceNotFoundException")


def _invalid(message: str) -> AwsResponse:
    return json_error("InvalidParameterValueException", message, 400, query_code="InvalidParameterValue")


class MessageMoveTasks:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.tasks: dict[str, list[MoveTask]] = {}  # source queue ARN -> its tasks, oldest first
        self._original_receive = SQSBackend.receive_message
        SQSBackend.receive_message = _stamping_origin(self._original_receive)

    def uninstall(self) -> None:
        SQSBackend.receive_message = self._original_receive

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if request.service != "sqs":
            return None
        operation: Callable[[dict], AwsResponse] | None = {
            "StartMessageMoveTask": self._start,
            "ListMessageMoveTasks": self._list,
            "CancelMessageMoveTask": self._cancel,
        }.get(request.action)
        return operation(request.json) if operation else None

    # operations ----------------------------------------------------------------------------
    def _start(self, params: dict) -> AwsResponse:
        source_arn, destination_arn = params["SourceArn"], params.get("DestinationArn")
        rate = params.get("MaxNumberOfMessagesPerSecond")
        ceiling = self.sandbox.settings.move_task_max_rate
        if rate is not None and not 1 <= rate <= ceiling:
            return _invalid(f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. "
                            f"Reason: Must be between 1 and {ceiling}.")
        source = _queue_at(source_arn)
        if source is None:
            return _not_found("SourceArn")
        if not _backend_of(source).list_dead_letter_source_queues(source.name):
            return _invalid("Source queue must be configured as a Dead Letter Queue.")
        if destination_arn and _queue_at(destination_arn) is None:
            return _not_found("DestinationArn")
        if any(task.status in ACTIVE for task in self.tasks.get(source_arn, [])):
            return _invalid("There is already a task running. "
                            "Only one active task is allowed for a source queue arn at a given time.")

        waiting = {message.id for message in source._messages}  # visible, in flight or delayed alike
        task = MoveTask(
            task_id=str(uuid.UUID(int=self.sandbox.rng.getrandbits(128), version=4)),
            source_arn=source_arn,
            destination_arn=destination_arn,
            rate=rate,
            started_ms=int(self.sandbox.clock.now() * 1000),
            to_move=waiting,
            approximate_to_move=len(waiting),
        )
        self.tasks.setdefault(source_arn, []).append(task)
        self._schedule_step(task, self.sandbox.clock.now() + STEP_SECONDS)
        return json_response({"TaskHandle": task.handle}, "application/x-amz-json-1.0")

    def _list(self, params: dict) -> AwsResponse:
        source_arn, limit = params["SourceArn"], params.get("MaxResults", 1)
        if not 1 <= limit <= LIST_LIMIT:
            return _invalid(f"Value {limit} for parameter MaxResults is invalid. Reason: Must be between 1 and {LIST_LIMIT}.")
        if _queue_at(source_arn) is None:
            return _not_found("SourceArn")
        newest_first = list(reversed(self.tasks.get(source_arn, [])))[:limit]
        return json_response({"Results": [task.as_entry() for task in newest_first]}, "application/x-amz-json-1.0")

    def _cancel(self, params: dict) -> AwsResponse:
        try:
            decoded = json.loads(base64.b64decode(params["TaskHandle"], validate=True))
            task_id, source_arn = decoded["taskId"], decoded["sourceArn"]
        except (binascii.Error, ValueError, KeyError, TypeError):
            return _invalid("Value for parameter TaskHandle is invalid.")
        if _queue_at(source_arn) is None:
            return _not_found("SourceArn")
        task = next((t for t in self.tasks.get(source_arn, []) if t.task_id == task_id), None)
        # "A message movement can only be cancelled when the current status is RUNNING."
        if task is None or task.status != "RUNNING":
            return _resource_not_found("Task does not exist.")
        task.status = "CANCELLING"  # the task's next step stops it: cancelling is asynchronous
        return json_response({"ApproximateNumberOfMessagesMoved": task.moved}, "application/x-amz-json-1.0")

    # the task's work ---------------------------------------------------------------------------
    def _schedule_step(self, task: MoveTask, instant: float) -> None:
        # Steps keep their one-second cadence however far the clock jumps: each is due a second after the
        # last. Steps that run late (one tick after a jump) see the queue as it is at that tick.
        self.sandbox.scheduler.at(instant, lambda: self._step(task, instant))

    def _step(self, task: MoveTask, instant: float) -> None:
        if task.status == "CANCELLING":
            task.status = "CANCELLED"
            return
        source = _queue_at(task.source_arn)
        try:
            if source is None:
                raise _TaskFailed("AWS.SimpleQueueService.NonExistentQueue")
            budget = task.rate or self.sandbox.settings.move_task_max_rate
            for message in self._movable(task, source)[:budget]:
                self._move(task, source, message)
        except _TaskFailed as failure:
            task.status, task.failure_reason = "FAILED", str(failure)
            return
        task.to_move &= {message.id for message in source._messages}  # consumers may have deleted some
        if task.to_move:
            self._schedule_step(task, instant + STEP_SECONDS)
        else:
            task.status = "COMPLETED"

    @staticmethod
    def _movable(task: MoveTask, source: Queue) -> list[Message]:
        # Oldest first; in-flight (and delayed) messages wait until they are visible again.
        return [m for m in source._messages if m.id in task.to_move and m.visible and not m.delayed]

    def _move(self, task: MoveTask, source: Queue, message: Message) -> None:
        destination = _queue_at(task.destination_arn) if task.destination_arn else self._origin(source, message)
        if destination is None:
            raise _TaskFailed("AWS.SimpleQueueService.NonExistentQueue")
        try:
            _backend_of(destination).send_message(
                destination.name,
                message.body,
                message_attributes=message.message_attributes,
                group_id=message.group_id if destination.fifo_queue else None,
                # the original message ID, as SQS uses when it dead-letters a FIFO message (redrive guide)
                deduplication_id=message.id if destination.fifo_queue else None,
            )
        except ServiceException as error:
            raise _TaskFailed(error.code) from error
        # The task's receive-and-delete, done on the model: no receipt handle or receive count to disturb.
        source._messages.remove(message)
        source.pending_messages.discard(message)
        task.to_move.discard(message.id)
        task.moved += 1

    @staticmethod
    def _origin(source: Queue, message: Message) -> Queue | None:
        recorded = message.system_attributes.get(ORIGIN_ATTRIBUTE)
        if recorded:
            return _queue_at(recorded)
        # Not dead-lettered while the sandbox watched (e.g. sent straight to the DLQ): only an
        # unambiguous redrive source will do.
        sources = _backend_of(source).list_dead_letter_source_queues(source.name)
        if len(sources) != 1:
            raise _TaskFailed("CouldNotDetermineMessageSource")
        return sources[0]


def _stamping_origin(receive_message: Callable[..., list[Message]]) -> Callable[..., list[Message]]:
    """moto's receive_message, stamping each message it dead-letters with the queue it came from."""

    def receive_and_stamp(backend: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> list[Message]:
        queue = backend.queues.get(queue_name)
        watched = list(queue._messages) if queue is not None and queue.dead_letter_queue else []
        received = receive_message(backend, queue_name, *args, **kwargs)
        if watched:
            still_here = {id(message) for message in queue._messages}
            for message in watched:
                if id(message) not in still_here:  # receive_message removes a message only to dead-letter it
                    message.system_attributes[ORIGIN_ATTRIBUTE] = queue.queue_arn
        return received

    return receive_and_stamp
