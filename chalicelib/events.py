"""What arrives at the handlers, checked before anything acts on it.

Every parser either returns a typed value or raises `InvalidEvent` with a message that says what
was wrong, so a bad event is recorded and dropped and never reaches AWS.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MGN_SOURCE = "aws.mgn"
MGN_DETAIL_TYPE = "MGN Source Server Launch Result"
OPERATOR_SOURCE = "ami-distributor"
OPERATOR_DETAIL_TYPE = "Distribute Instances"
AMI_DETAIL_TYPE = "EC2 AMI State Change"

LAUNCH_STATES = {"TEST_LAUNCH_SUCCEEDED", "TEST_LAUNCH_FAILED", "CUTOVER_LAUNCH_SUCCEEDED", "CUTOVER_LAUNCH_FAILED"}
SOURCE_SERVER_ARN = re.compile(r"^arn:aws[a-z-]*:mgn:([a-z0-9-]+):(\d{12}):source-server/(s-[0-9a-f]{17})$")
MGN_JOB_ID = re.compile(r"^mgnjob-[0-9a-f]{17}$")
INSTANCE_ID = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
WAVE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_INSTANCES_PER_EVENT = 500  # an MGN job holds at most 200 servers; an operator event a little more


class InvalidEvent(ValueError):
    pass


@dataclass(frozen=True)
class LaunchResult:
    account: str
    region: str
    source_server_id: str
    mgn_job_id: str
    state: str

    @property
    def launch_type(self) -> str:
        return self.state.split("_", 1)[0]  # TEST or CUTOVER

    @property
    def succeeded(self) -> bool:
        return self.state.endswith("_SUCCEEDED")


@dataclass(frozen=True)
class DistributeRequest:
    account: str
    region: str
    instance_ids: tuple[str, ...]
    wave: str
    distribution: dict[str, Any] | None  # narrowed against the stage's allow-list by the service


@dataclass(frozen=True)
class AmiStateChange:
    account: str
    region: str
    image_id: str
    state: str


@dataclass(frozen=True)
class JobMessage:
    """ "Look at job J, which should now be at version V with token T" (the protocol is in service.py)."""

    job_id: str
    version: int
    token: str

    def body(self) -> str:
        return json.dumps({"jobId": self.job_id, "version": self.version, "token": self.token}, sort_keys=True)


def _envelope(event: Any) -> tuple[str, str, str, str, dict]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"an EventBridge event is a JSON object, not {type(event).__name__}")
    source, detail_type = event.get("source"), event.get("detail-type")
    account, region, detail = event.get("account"), event.get("region"), event.get("detail")
    if not isinstance(source, str) or not isinstance(detail_type, str):
        raise InvalidEvent("event has no source or detail-type")
    if not isinstance(account, str) or not re.fullmatch(r"\d{12}", account):
        raise InvalidEvent(f"event account {account!r} is not a 12-digit account ID")
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise InvalidEvent(f"event region {region!r} is not a region")
    if not isinstance(detail, dict):
        raise InvalidEvent("event detail must be an object")
    return source, detail_type, account, region, detail


def parse_intake(event: Any) -> LaunchResult | DistributeRequest:
    source, detail_type, account, region, detail = _envelope(event)
    if (source, detail_type) == (MGN_SOURCE, MGN_DETAIL_TYPE):
        return _launch_result(event, account, region, detail)
    if (source, detail_type) == (OPERATOR_SOURCE, OPERATOR_DETAIL_TYPE):
        return _distribute_request(account, region, detail)
    raise InvalidEvent(f"unexpected event {source!r} / {detail_type!r}")


def _launch_result(event: dict, account: str, region: str, detail: dict) -> LaunchResult:
    state, job_id = detail.get("state"), detail.get("job-id")
    if state not in LAUNCH_STATES:
        raise InvalidEvent(f"launch state {state!r} is not one of {sorted(LAUNCH_STATES)}")
    if not isinstance(job_id, str) or not MGN_JOB_ID.match(job_id):
        raise InvalidEvent(f"job-id {job_id!r} is not an MGN job ID")
    resources = event.get("resources")
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], str):
        raise InvalidEvent("a launch result names exactly one source server in resources")
    match = SOURCE_SERVER_ARN.match(resources[0])
    if not match or match.group(2) != account or match.group(1) != region:
        raise InvalidEvent(f"resource {resources[0]!r} is not a source server of account {account} in {region}")
    return LaunchResult(account, region, match.group(3), job_id, state)


def _distribute_request(account: str, region: str, detail: dict) -> DistributeRequest:
    instance_ids, wave, distribution = detail.get("instanceIds"), detail.get("wave"), detail.get("distribution")
    if not isinstance(instance_ids, list) or not instance_ids:
        raise InvalidEvent("instanceIds must be a non-empty list")
    if len(instance_ids) > MAX_INSTANCES_PER_EVENT:
        raise InvalidEvent(f"at most {MAX_INSTANCES_PER_EVENT} instanceIds per event, got {len(instance_ids)}")
    bad = [i for i in instance_ids if not isinstance(i, str) or not INSTANCE_ID.match(i)]
    if bad:
        raise InvalidEvent(f"not EC2 instance IDs: {bad[:5]!r}")
    if not isinstance(wave, str) or not WAVE.match(wave):
        raise InvalidEvent(f"wave {wave!r} must be 1-64 of letters, digits and . _ : -")
    if distribution is not None and not isinstance(distribution, dict):
        raise InvalidEvent("distribution must be an object")
    return DistributeRequest(account, region, tuple(dict.fromkeys(instance_ids)), wave, distribution)


def parse_ami_event(event: Any) -> AmiStateChange:
    source, detail_type, account, region, detail = _envelope(event)
    if (source, detail_type) != ("aws.ec2", AMI_DETAIL_TYPE):
        raise InvalidEvent(f"unexpected event {source!r} / {detail_type!r}")
    image_id, state = detail.get("ImageId"), detail.get("State")
    if not isinstance(image_id, str) or not IMAGE_ID.match(image_id):
        raise InvalidEvent(f"ImageId {image_id!r} is not an AMI ID")
    if not isinstance(state, str) or not state.isalpha():
        raise InvalidEvent(f"State {state!r} is not an image state")
    return AmiStateChange(account, region, image_id, state)


def parse_job_message(body: Any) -> JobMessage:
    try:
        data = json.loads(body) if isinstance(body, str) else None
    except json.JSONDecodeError as error:
        raise InvalidEvent(f"message body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("message body must be a JSON object")
    job_id, version, token = data.get("jobId"), data.get("version"), data.get("token")
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise InvalidEvent(f"jobId {str(job_id)[:80]!r} is not a job ID")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent(f"version {version!r} must be a positive integer")
    if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{1,64}", token):
        raise InvalidEvent("token must be hexadecimal")
    return JobMessage(job_id, version, token)
