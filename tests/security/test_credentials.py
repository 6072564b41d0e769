"""Credentials: every sts:AssumeRole the functions make carries the stage's ExternalId, and no access key,
secret key or session token ever reaches the logs, on the happy path or on any error path."""
from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Iterator

from botocore.exceptions import ClientError

from automation.sandbox import SOURCE_ACCOUNT
from tests.integration.checks import images_in
from tests.integration.conftest import TARGET_A, TARGET_B
from tests.integration.faults import after_call, before_call, crash_switch
from tests.property.conftest import new_instance, operator_event, stored_job

ROLE_NAME = "AmiDistributorCopyRole"  # the local stage's CROSS_ACCOUNT_ROLE_NAME
SECRET_PATTERNS = {
    "access key ID": re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "secret access key": re.compile(r"(?<![A-Za-z0-9/+=._-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=._-])"),
    "session token": re.compile(r"FQoGZXIvYXdz|IQoJb3JpZ2lu"),  # how moto's and AWS's session tokens start
}


@contextlib.contextmanager
def assume_role_calls() -> Iterator[list[dict]]:
    """Every sts:AssumeRole request as botocore sends it (the query form), and the credentials each one got."""
    calls: list[dict] = []

    def sent(params, **_):
        calls.append(dict(params["body"]))

    def answered(parsed, **_):
        if "Credentials" in parsed:
            calls[-1]["issued"] = parsed["Credentials"]

    with before_call("sts.AssumeRole", sent), after_call("sts.AssumeRole", answered):
        yield calls


def service_calls(calls: list[dict]) -> list[dict]:
    return [c for c in calls if not c["RoleArn"].endswith(":role/sandbox-operator")]  # the sandbox's own way in


def test_every_assume_role_carries_the_stage_s_external_id(stage_wave):
    with assume_role_calls() as calls:
        instance = new_instance(stage_wave)
        stage_wave.runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [instance], "wave": "x"}))
        stage_wave.run()
    [job] = [j for j in stage_wave.jobs() if j["instance_id"] == instance]
    assert job["status"] == "DONE", job["last_error"]
    made = service_calls(calls)
    assert {c["RoleArn"] for c in made} == {f"arn:aws:iam::{a}:role/{ROLE_NAME}" for a, _ in (TARGET_A, TARGET_B)}
    assert {c.get("ExternalId") for c in made} == {stage_wave.stage.env["CROSS_ACCOUNT_EXTERNAL_ID"]}
    assert all(c["RoleSessionName"].startswith("amid-i-") for c in made)


def test_a_stage_whose_external_id_the_role_does_not_trust_copies_nothing(stage_wave):
    """The target role's trust policy names the ExternalId: a wrong one is refused, and the job says why."""
    instance = new_instance(stage_wave)
    stage_wave.stage.env["CROSS_ACCOUNT_EXTERNAL_ID"] = "not-the-one-the-role-trusts"
    try:
        with assume_role_calls() as calls:
            stage_wave.runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [instance], "wave": "y"}))
            stage_wave.run()
    finally:
        stage_wave.stage.env["CROSS_ACCOUNT_EXTERNAL_ID"] = "ami-distributor-local"
    [job] = [j for j in stage_wave.jobs() if j["instance_id"] == instance]
    assert (job["status"], job["reason"]) == ("FAILED", "ASSUME_ROLE_DENIED")
    assert {c.get("ExternalId") for c in service_calls(calls)} == {"not-the-one-the-role-trusts"}
    assert not any("issued" in c for c in service_calls(calls))
    for account, region in (TARGET_A, TARGET_B):
        assert not [i for i in images_in(stage_wave, account, region) if i["Name"].endswith(job["job_id"])]


def looks_random(candidate: str) -> bool:
    """A secret key is 40 random base64 characters; a 40-character file path (where CI checks the project out,
    /check/work/main/chalicelib/adapters/ec2.py has one) has no digits or capitals, or is slashes between words."""
    classes = [any(c.isupper() for c in candidate), any(c.islower() for c in candidate),
               any(c.isdigit() for c in candidate)]
    return all(classes) and candidate.count("/") < 4


def secrets_in(text: str, known: set[str]) -> list[str]:
    found = [f"{kind}: {m.group(0)[:12]}..." for kind, pattern in SECRET_PATTERNS.items() for m in pattern.finditer(text)
             if kind != "secret access key" or looks_random(m.group(0))]
    return found + [f"issued credential {value[:8]}..." for value in known if value in text]


def test_the_scanner_finds_what_it_looks_for():
    """So that an empty scan below means clean logs, not a blind scanner."""
    planted = 'x {"key": "ASIATHPL2AOHMRPN2R47", "secret": "Q/6YfNFO2pUhoYv0gjScK6IRbOMKzx+cb9lhnZ7b"} FQoGZXIvYXdzEBYa'
    assert len(secrets_in(planted, {"FQoGZXIvYXdzEBYa"})) == 4
    assert secrets_in("i-0123456789abcdef0-29a3eb3794e2 ami-fed18d51ce538582a " + "ab12" * 16, set()) == []
    # where CI checks the project out: its source paths are 40 base64 characters long
    assert secrets_in('File "/check/work/main/chalicelib/adapters/ec2.py", line 9', set()) == []
    assert secrets_in("/Check/Work2/main/chalicelib/adapters/ec2.py", set()) == []
    assert secrets_in("/work/main/.venv/lib/python3.11/site-packages/botocore/client.py", set()) == []


def throttled_once():
    thrown = []

    def throttle(**_):
        if not thrown:
            thrown.append(True)
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "The level of configured provisioned throughput was exceeded"}},
                              "PutItem")
    return throttle


def test_no_credentials_in_the_logs_of_a_wave_with_every_error_path(stage_wave, shipped_logs, caplog, capsys):
    """Whole runs, happy and not: a throttled, crashed, refused, failed and malformed wave, every log captured."""
    caplog.set_level(logging.INFO)  # what a Lambda ships; botocore's DEBUG wire logs are off in Lambda
    sandbox, runner = stage_wave.sandbox, stage_wave.runner
    with assume_role_calls() as calls, crash_switch() as crash:
        good, refused = new_instance(stage_wave), new_instance(stage_wave)
        runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [good], "wave": "logs"}))
        crash.arm("ec2.CopyImage")
        runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [good, "i-*"], "wave": "x"}))
        runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [good], "wave": "logs"},
                                                     account="222222222222"))
        runner.invoke("advance_jobs", {"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": "[" * 10_000,
                                                    "attributes": {}, "messageAttributes": {}}]})
        runner.invoke("on_ami_event", operator_event(stage_wave, {"ImageId": "ami-0", "State": "available"},
                                                     source="aws.ec2", **{"detail-type": "EC2 AMI State Change"}))
        with before_call("dynamodb.PutItem", throttled_once()):  # a step's write fails: logged with its traceback
            stage_wave.run()
        stage_wave.stage.env["CROSS_ACCOUNT_EXTERNAL_ID"] = "wrong"  # AssumeRole refused: its error is logged
        try:
            runner.invoke("on_mgn_event", operator_event(stage_wave, {"instanceIds": [refused], "wave": "logs"}))
            stage_wave.run()
        finally:
            stage_wave.stage.env["CROSS_ACCOUNT_EXTERNAL_ID"] = "ami-distributor-local"
    assert crash.crashes == ["ec2.CopyImage"]
    jobs = {j["instance_id"]: j for j in stage_wave.jobs()}
    assert (jobs[good]["status"], jobs[refused]["reason"]) == ("DONE", "ASSUME_ROLE_DENIED")
    known = {value for account in (SOURCE_ACCOUNT, TARGET_A[0], TARGET_B[0])
             for value in sandbox.credentials(account).values()}
    known |= {c["issued"][k] for c in calls if "issued" in c for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    assert len(known) > 6  # the sandbox's accounts and the target roles' sessions
    captured = capsys.readouterr()
    logs = "\n".join([shipped_logs.text(), caplog.text, captured.out, captured.err,
                      "\n".join(json.dumps(r.__dict__, default=str) for r in shipped_logs.records)])
    for line in ("job step failed", "Traceback", "ProvisionedThroughputExceededException", "ASSUME_ROLE_DENIED",
                 "event rejected", "malformed job message", "job failed"):
        assert line in logs, line
    assert secrets_in(logs, known) == []
