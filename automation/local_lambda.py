"""The real Lambda handlers, run the way AWS runs them, against the sandbox.

- EventBridge → function: the stage's rules deliver to a queue (moto has no Lambda targets);
  each event is one asynchronous invocation of the function its rule names.
- SQS → advance_jobs: receive up to `batch_size` messages, invoke with an SQS event, delete
  what the function did not report in `batchItemFailures`; the rest reappear after the
  visibility timeout, and moto moves them to the DLQ after maxReceiveCount, as SQS does.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from automation.provision import ProvisionedStage
from automation.sandbox import SOURCE_ACCOUNT, Sandbox, VirtualClock
from chalicelib.events import AMI_DETAIL_TYPE


class InvocationCrashed(BaseException):
    """Injected by tests and the simulator: the function dies mid-invocation (timeout, out of memory),
    so nothing after that point runs and the batch is not reported. A BaseException, so no handler
    code can swallow it, just as no code survives a killed sandbox."""


@dataclass
class LambdaContext:
    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class LocalLambda:
    def __init__(self, sandbox: Sandbox, stage: ProvisionedStage, batch_size: int = 10) -> None:
        self.sandbox, self.stage, self.batch_size = sandbox, stage, batch_size
        self.sqs = sandbox.client("sqs", region=stage.region)
        self.invocations: Counter[str] = Counter()
        self.results: list[tuple[str, Any]] = []
        self.errors: list[tuple[str, str]] = []
        self.duplicate_every_message = False  # SQS is at-least-once: deliver each message a second time
        self.duplicate_when: Callable[[dict], bool] | None = None  # or only the messages this picks (faults.py)
        self.duplicates_sent = 0
        self._queue_arn = stage.env["JOBS_QUEUE_ARN"]

    @contextlib.contextmanager
    def _function_environment(self) -> Iterator[None]:
        saved = dict(os.environ)
        os.environ.update(self.stage.env)
        os.environ.update(self.sandbox.environment(SOURCE_ACCOUNT, self.stage.region))
        if isinstance(self.sandbox.clock, VirtualClock):
            # botocore's retries sleep in real time while virtual time stands still; here the
            # job's own re-enqueue (on the virtual clock) is the only retry
            os.environ["AWS_MAX_ATTEMPTS"] = "1"
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def invoke(self, function_name: str, event: dict) -> Any:
        """One invocation. An exception is the function erroring (or crashing): it propagates."""
        import app

        self.invocations[function_name] += 1
        with self._function_environment():
            result = getattr(app, function_name)(event, LambdaContext(function_name))
        self.results.append((function_name, result))
        return result

    def _invoke_or_fail(self, function_name: str, event: dict) -> tuple[bool, Any]:
        try:
            return True, self.invoke(function_name, event)
        except (Exception, InvocationCrashed) as error:  # a failed invocation is data here, as it is to Lambda
            self.errors.append((function_name, repr(error)))
            return False, None

    def deliver_events(self) -> int:
        """One receive from the events queue; each event invokes its function (async: a failure is retried)."""
        messages = self.sqs.receive_message(QueueUrl=self.stage.events_queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=0).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            function = "on_ami_event" if event.get("detail-type") == AMI_DETAIL_TYPE else "on_mgn_event"
            succeeded, _ = self._invoke_or_fail(function, event)
            if succeeded:  # else it is delivered again after the visibility timeout, as Lambda retries async events
                self.sqs.delete_message(QueueUrl=self.stage.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def advance(self) -> int:
        """One poll of the jobs queue by the event source mapping; returns the messages handled."""
        messages = self.sqs.receive_message(
            QueueUrl=self.stage.jobs_queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        if self.duplicate_every_message or self.duplicate_when:
            self._send_duplicates(messages)
        succeeded, result = self._invoke_or_fail("advance_jobs", self._sqs_event(messages))
        if not succeeded:
            return len(messages)  # a failed invocation returns the whole batch to the queue
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.stage.jobs_queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        return len(messages)

    def _send_duplicates(self, messages: list[dict]) -> None:
        originals = [m for m in messages if "duplicate" not in m.get("MessageAttributes", {})
                     and (self.duplicate_every_message or self.duplicate_when(m))]
        for message in originals:
            self.sqs.send_message(QueueUrl=self.stage.jobs_queue_url, MessageBody=message["Body"],
                                  MessageAttributes={"duplicate": {"DataType": "String", "StringValue": "1"}})
        self.duplicates_sent += len(originals)

    def _sqs_event(self, messages: list[dict]) -> dict:
        return {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": m.get("MessageAttributes", {}),
            "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": self._queue_arn,
            "awsRegion": self.stage.region,
        } for m in messages]}

    def in_flight(self) -> int:
        """Messages the jobs and events queues still hold, visible, delayed or in flight."""
        total = 0
        for url in (self.stage.jobs_queue_url, self.stage.events_queue_url):
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            total += sum(int(v) for v in attributes.values())
        return total

    def run(self, *, max_virtual_s: float = 14 * 86400, max_real_s: float = 600,
            settled: Callable[[], bool] = lambda: True) -> None:
        """Until no message is left to handle (and, on the real clock, `settled()` says nothing more will
        come, e.g. MGN has launched every server). On a virtual clock, time jumps to whatever is due next."""
        import time

        from automation.sandbox.sqs_clock import SqsClock

        clock, started_virtual, started_real = self.sandbox.clock, self.sandbox.clock.now(), time.monotonic()
        while True:
            if self.deliver_events() + self.advance():
                continue
            if isinstance(clock, VirtualClock):
                due = [t for t in (self.sandbox.scheduler.next_due(), SqsClock.next_visible_at()) if t is not None]
                if not due:
                    return
                clock.advance_to(min(due))
                self.sandbox.tick()
                if clock.now() - started_virtual > max_virtual_s:
                    raise TimeoutError(f"jobs still in flight after {max_virtual_s} virtual seconds")
            else:
                if self.in_flight() == 0 and self.sandbox.scheduler.next_due() is None and settled():
                    return
                time.sleep(0.05)
            if time.monotonic() - started_real > max_real_s:
                raise TimeoutError(f"jobs still in flight after {max_real_s} s")


def _connect(stage_name: str, endpoint_url: str | None) -> tuple[Sandbox, ProvisionedStage]:
    """The stage's queues in a running sandbox (provisioned by `demo`) or in AWS (no endpoint)."""
    from automation.demo import demo_settings
    from automation.provision import EVENTS_QUEUE
    from automation.stages import function_environment

    # a running sandbox is `python -m automation sandbox`'s, whose AWS runs at the demo's time scale
    env = {**function_environment(stage_name), **demo_settings().durations.handler_expectations()}
    sandbox = Sandbox.remote(endpoint_url) if endpoint_url else None
    if sandbox is None:
        raise ValueError("run and invoke need --endpoint-url: only a sandbox has the local events queue")
    region = env["JOBS_QUEUE_ARN"].split(":")[3]
    sqs = sandbox.client("sqs", region=region)
    queue = env["JOBS_QUEUE_ARN"].split(":")[5]
    urls = {name: sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in (queue, f"{queue}-dlq", EVENTS_QUEUE)}
    return sandbox, ProvisionedStage(env, urls[queue], urls[f"{queue}-dlq"], urls[EVENTS_QUEUE], "")


def run_handler(name: str, event: dict, stage_name: str, endpoint_url: str | None) -> Any:
    sandbox, stage = _connect(stage_name, endpoint_url)
    return LocalLambda(sandbox, stage).invoke(name, event)


def poll_until_idle(stage_name: str, endpoint_url: str | None) -> dict:
    sandbox, stage = _connect(stage_name, endpoint_url)
    runner = LocalLambda(sandbox, stage)
    runner.run()
    return {"invocations": dict(runner.invocations), "errors": runner.errors}
