"""One sandbox stage per module for the property-based tests: starting one costs ~2.5 s, a job ~0.5 s, so
hypothesis's examples share the stage and each makes its own instances and jobs."""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field

import pytest

from automation.operator_aws import StageConnection
from automation.sandbox import SOURCE_ACCOUNT, Sandbox, VirtualClock
from automation.wave import Wave
from chalicelib import bootstrap, config
from chalicelib.adapters.job_store import DynamoJobStore
from chalicelib.adapters.queue import JobQueue
from chalicelib.service import logger as service_logger
from tests.integration.conftest import fast_settings


@pytest.fixture(scope="module")
def stage_wave():
    """The `local` stage (two targets in two regions, cleanup on) in a sandbox of its own."""
    box = Sandbox(clock=VirtualClock(), seed=17, settings=fast_settings()).start("inprocess")
    try:
        yield Wave.start(box)
    finally:
        box.stop()
        bootstrap.overrides = bootstrap.Overrides()
        bootstrap.reset()


def new_instance(wave: Wave, size_gib: int = 8) -> str:
    """An instance the operator may distribute: one volume under the stage's customer-managed key."""
    ec2 = wave.sandbox.client("ec2", region=wave.stage.region)
    made = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, BlockDeviceMappings=[{
        "DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": size_gib, "Encrypted": True,
                                           "KmsKeyId": wave.stage.source_key_arn}}])
    return made["Instances"][0]["InstanceId"]


def operator_event(wave: Wave, detail: dict, **envelope) -> dict:
    """A "Distribute Instances" event as EventBridge delivers it (every envelope key present)."""
    event = {"version": "0", "id": "fuzz", "detail-type": "Distribute Instances", "source": "ami-distributor",
             "account": SOURCE_ACCOUNT, "time": "2026-12-04T08:00:00Z", "region": wave.stage.region,
             "resources": [], "detail": detail}
    event.update(envelope)
    return event


def operator_connection(wave: Wave) -> StageConnection:
    """The operator CLI's view of the stage (automation/operations.py), entered as the stage's account."""
    settings = config.load(wave.stage.env)
    sqs = wave.sandbox.client("sqs", region=wave.stage.region)
    store = DynamoJobStore(wave.sandbox.client("dynamodb", region=wave.stage.region), settings.table_name)
    return StageConnection("local", settings, store, JobQueue(sqs, settings.queue_url), sqs)


def stored_job(wave: Wave, job_id: str) -> dict | None:
    item = wave.sandbox.client("dynamodb", region=wave.stage.region).get_item(
        TableName=wave.stage.env["JOBS_TABLE"], Key={"job_id": {"S": job_id}}, ConsistentRead=True).get("Item")
    return json.loads(item["doc"]["S"]) if item else None


@dataclass
class ShippedLogs:
    """What the functions' logger writes, formatted as Lambda would ship it to CloudWatch, plus the records."""

    stream: io.StringIO = field(default_factory=io.StringIO)
    records: list[logging.LogRecord] = field(default_factory=list)

    def text(self) -> str:
        return self.stream.getvalue()

    def rejections(self, message: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()
        self.records.clear()


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
def shipped_logs():
    """The service logger's output in Powertools' JSON format, at DEBUG so every line the code has counts."""
    logs = ShippedLogs()
    formatted = logging.StreamHandler(logs.stream)
    formatted.setFormatter(service_logger.registered_formatter)
    collected = _Collect(logs.records)
    underlying = logging.getLogger(service_logger.name)
    level = underlying.level
    underlying.addHandler(formatted)
    underlying.addHandler(collected)
    underlying.setLevel(logging.DEBUG)
    try:
        yield logs
    finally:
        underlying.removeHandler(formatted)
        underlying.removeHandler(collected)
        underlying.setLevel(level)
