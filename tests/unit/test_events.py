import json
from pathlib import Path

import pytest

from chalicelib.events import (DistributeRequest, InvalidEvent, JobMessage, LaunchResult, parse_ami_event,
                               parse_intake, parse_job_message)

SHARED_EVENTS = Path(__file__).resolve().parents[3] / "shared" / "events"  # ../shared beside the checkout


def sample(name):
    return json.loads((SHARED_EVENTS / name).read_text())


def operator_event(**detail):
    return {"version": "0", "id": "x", "source": "ami-distributor", "detail-type": "Distribute Instances",
            "account": "111111111111", "region": "us-east-1", "resources": [], "detail": detail}


def test_the_documented_launch_events_parse():
    cutover = parse_intake(sample("mgn-launch-result-cutover.json"))
    assert cutover == LaunchResult("111111111111", "us-east-1", "s-1a2b3c4d5e6f70801", "mgnjob-0a1b2c3d4e5f60718",
                                   "CUTOVER_LAUNCH_SUCCEEDED")
    assert cutover.succeeded and cutover.launch_type == "CUTOVER"
    failed = parse_intake(sample("mgn-launch-result-failed.json"))
    assert not failed.succeeded


def test_the_documented_ami_event_parses():
    change = parse_ami_event(sample("ec2-ami-state-change.json"))
    assert (change.image_id, change.state) == ("ami-0123456789abcdef0", "available")


def test_operator_event_deduplicates_instances():
    request = parse_intake(operator_event(instanceIds=["i-0123456789abcdef0", "i-0123456789abcdef0"], wave="w1"))
    assert isinstance(request, DistributeRequest)
    assert request.instance_ids == ("i-0123456789abcdef0",)


@pytest.mark.parametrize("event, fragment", [
    ("not an object", "JSON object"),
    ({**sample("mgn-launch-result-cutover.json"), "account": "1234"}, "12-digit"),
    ({**sample("mgn-launch-result-cutover.json"), "detail": {"state": "LAUNCHED", "job-id": "mgnjob-0a1b2c3d4e5f60718"}},
     "launch state"),
    ({**sample("mgn-launch-result-cutover.json"), "resources": ["arn:aws:mgn:us-east-1:999999999999:source-server/s-1a2b3c4d5e6f70801"]},
     "not a source server of account"),
    ({**sample("mgn-launch-result-cutover.json"), "detail-type": "Something Else"}, "unexpected event"),
    (operator_event(instanceIds=[], wave="w"), "non-empty"),
    (operator_event(instanceIds=["i-0123456789abcdef0'; DROP TABLE"], wave="w"), "not EC2 instance IDs"),
    (operator_event(instanceIds=["i-0123456789abcdef0"], wave="../../etc"), "wave"),
    (operator_event(instanceIds=["i-0123456789abcdef0"] * 501, wave="w"), "at most 500"),
    (operator_event(instanceIds=["i-0123456789abcdef0"], wave="w", distribution=[1]), "distribution must be an object"),
])
def test_malformed_intake_events_are_rejected_with_a_reason(event, fragment):
    with pytest.raises(InvalidEvent, match=fragment):
        parse_intake(event)


def test_job_messages_round_trip_and_reject_garbage():
    message = JobMessage("i-0123456789abcdef0-abc", 3, "deadbeef")
    assert parse_job_message(message.body()) == message
    for body, fragment in (("{", "not JSON"), ("[]", "JSON object"), ('{"jobId": "a b", "version": 1, "token": "ab"}', "jobId"),
                           ('{"jobId": "a", "version": true, "token": "ab"}', "version"),
                           ('{"jobId": "a", "version": 1, "token": "<script>"}', "token")):
        with pytest.raises(InvalidEvent, match=fragment):
            parse_job_message(body)
