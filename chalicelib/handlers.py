"""What each Lambda function does with its event: parse, call the use case, report. app.py only routes here."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import bootstrap
from .events import InvalidEvent, JobMessage, parse_job_message
from .service import EarlyMessage, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


def on_mgn_event(event: dict, request_id: str) -> dict:
    try:
        return bootstrap.container().intake.handle(event, request_id)
    finally:
        metrics.flush_metrics()


def on_ami_event(event: dict, request_id: str) -> dict:
    try:
        return bootstrap.container().waker.handle(event, request_id)
    finally:
        metrics.flush_metrics()


def advance_jobs(event: dict, context: Any) -> dict:
    # imported here: Powertools' batch utilities cost ~40 ms of import, which the event functions never need
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    advancer = bootstrap.container().advancer

    def advance_one(record: SQSRecord) -> str:
        try:
            message = parse_job_message(record.body)
        except InvalidEvent as error:
            logger.error("malformed job message", extra={"message_id": record.message_id, "error": str(error)})
            raise
        logger.append_keys(job_id=message.job_id)
        try:
            outcome = advancer.handle(message, f"{record.message_id}:{record.receipt_handle}")
            logger.info("job advanced", extra={"outcome": outcome, "version": message.version})
            return outcome
        except EarlyMessage as early:
            logger.info("message ahead of its job; SQS redelivers it", extra={"detail": str(early)})
            raise
        except Exception:
            logger.exception("job step failed; SQS redelivers the message, then dead-letters it")
            raise
        finally:
            logger.remove_keys(["job_id"])

    try:
        advancer.look_ahead(_readable_messages(event))
        # a batch whose every record failed is reported like any other, not raised as a whole-batch retry
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(event=event, record_handler=advance_one, processor=processor, context=context)
    finally:
        advancer.forget_look_ahead()
        metrics.flush_metrics()


def _readable_messages(event: dict) -> list[JobMessage]:
    """The batch's job messages, for a look ahead; a malformed record is reported by its own handling."""
    messages = []
    for record in event.get("Records") or [] if isinstance(event, dict) else []:
        try:
            messages.append(parse_job_message(record["body"]))
        except (InvalidEvent, KeyError, TypeError):
            continue
    return messages
