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
# Matched whole (fullmatch: `$` alone lets a trailing newline through) and ASCII only (`\d` takes any script's digits).
SOURCE_SERVER_ARN = re.compile(r"^arn:aws[a-z-]*:mgn:([a-z0-9-]+):(\d{12}):source-server/(s-[0-9a-f]{17})$", re.ASCII)
MGN_JOB_ID = re.compile(r"^mgnjob-[0-9a-f]{17}$")
INSTANCE_ID = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")  # also the MGN post-launch document's allowedPattern
IMAGE_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_STATE = re.compile(r"^[a-z]{1,32}$")
ACCOUNT_ID = re.compile(r"^\d{12}$", re.ASCII)
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$", re.ASCII)
WAVE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TOKEN = re.compile(r"^[0-9a-f]{1,64}$")
MAX_INSTANCES_PER_EVENT = 500  # an MGN job holds at most 200 servers; an operator event a little more
SHOWN_CHARS = 80  # of a rejected value, in the error: enough to recognise it, never a megabyte in the logs


class InvalidEvent(ValueError):
    pass


def shown(value: Any) -> str:
    """A rejected value as the error quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit limit
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


def _matches(pattern: re.Pattern, value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


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
    if not _matches(ACCOUNT_ID, account):
        raise InvalidEvent(f"event account {shown(account)} is not a 12-digit account ID")
    if not _matches(REGION, region):
        raise InvalidEvent(f"event region {shown(region)} is not a region")
    if not isinstance(detail, dict):
        raise InvalidEvent("event detail must be an object")
    return source, detail_type, account, region, detail


def parse_intake(event: Any) -> LaunchResult | DistributeRequest:
    source, detail_type, account, region, detail = _envelope(event)
    if (source, detail_type) == (MGN_SOURCE, MGN_DETAIL_TYPE):
        return _launch_result(event, account, region, detail)
    if (source, detail_type) == (OPERATOR_SOURCE, OPERATOR_DETAIL_TYPE):
        return _distribute_request(account, region, detail)
    raise InvalidEvent(f"unexpected event {shown(source)} / {shown(detail_type)}")


def _launch_result(event: dict, account: str, region: str, detail: dict) -> LaunchResult:
    state, job_id = detail.get("state"), detail.get("job-id")
    if not isinstance(state, str) or state not in LAUNCH_STATES:
        raise InvalidEvent(f"launch state {shown(state)} is not one of {sorted(LAUNCH_STATES)}")
    if not _matches(MGN_JOB_ID, job_id):
        raise InvalidEvent(f"job-id {shown(job_id)} is not an MGN job ID")
    resources = event.get("resources")
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], str):
        raise InvalidEvent("a launch result names exactly one source server in resources")
    match = SOURCE_SERVER_ARN.fullmatch(resources[0])
    if not match or match.group(2) != account or match.group(1) != region:
        raise InvalidEvent(f"resource {shown(resources[0])} is not a source server of account {account} in {region}")
    return LaunchResult(account, region, match.group(3), job_id, state)


def _distribute_request(account: str, region: str, detail: dict) -> DistributeRequest:
    instance_ids, wave, distribution = detail.get("instanceIds"), detail.get("wave"), detail.get("distribution")
    if not isinstance(instance_ids, list) or not instance_ids:
        raise InvalidEvent("instanceIds must be a non-empty list")
    if len(instance_ids) > MAX_INSTANCES_PER_EVENT:
        raise InvalidEvent(f"at most {MAX_INSTANCES_PER_EVENT} instanceIds per event, got {len(instance_ids)}")
    bad = [i for i in instance_ids if not _matches(INSTANCE_ID, i)]
    if bad:
        raise InvalidEvent(f"not EC2 instance IDs: {shown(bad[:5])}")
    if not _matches(WAVE, wave):
        raise InvalidEvent(f"wave {shown(wave)} must be 1-64 of letters, digits and . _ : -")
    if distribution is not None and not isinstance(distribution, dict):
        raise InvalidEvent("distribution must be an object")
    return DistributeRequest(account, region, tuple(dict.fromkeys(instance_ids)), wave, distribution)


def parse_ami_event(event: Any) -> AmiStateChange:
    source, detail_type, account, region, detail = _envelope(event)
    if (source, detail_type) != ("aws.ec2", AMI_DETAIL_TYPE):
        raise InvalidEvent(f"unexpected event {shown(source)} / {shown(detail_type)}")
    image_id, state = detail.get("ImageId"), detail.get("State")
    if not _matches(IMAGE_ID, image_id):
        raise InvalidEvent(f"ImageId {shown(image_id)} is not an AMI ID")
    if not _matches(IMAGE_STATE, state):
        raise InvalidEvent(f"State {shown(state)} is not an image state")
    return AmiStateChange(account, region, image_id, state)


def parse_job_message(body: Any) -> JobMessage:
    try:
        data = json.loads(body) if isinstance(body, str) else None
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep; ValueError: too many digits
        raise InvalidEvent(f"message body is not JSON we can read: {shown(str(error))}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("message body must be a JSON object")
    job_id, version, token = data.get("jobId"), data.get("version"), data.get("token")
    if not _matches(JOB_ID, job_id):
        raise InvalidEvent(f"jobId {shown(job_id)} is not a job ID")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent(f"version {shown(version)} must be a positive integer")
    if not _matches(TOKEN, token):
        raise InvalidEvent("token must be hexadecimal")
    return JobMessage(job_id, version, token)
