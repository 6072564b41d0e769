"""Nothing is shared outside the stage's allow-list, whatever an event or a replayed dead letter names,
and nothing is ever made public: checked on AWS's state in the sandbox (launch permissions, createVolumePermission)."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.sandbox.sqs_clock import SqsClock
from tests.integration.conftest import TARGET_A
from tests.operations.conftest import Cli
from tests.property.conftest import new_instance, operator_event, stored_job
from tests.security.conftest import ALLOWED_ACCOUNTS, assert_shared_only_within_the_allow_list

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
outside_accounts = st.from_regex(r"\A[0-9]{12}\Z").filter(lambda a: a not in ALLOWED_ACCOUNTS)
org_ids = st.from_regex(r"\Ao-[a-z0-9]{10}\Z")
outside_entries = st.one_of(
    st.builds(lambda a, r: ("targets", {"accountId": a, "region": r}), outside_accounts, st.sampled_from(REGIONS)),
    # an allowed account in a region the stage does not copy to
    st.builds(lambda r: ("targets", {"accountId": "222222222222", "region": r}), st.sampled_from(REGIONS[1:])),
    st.builds(lambda a, o: ("organizationArns", f"arn:aws:organizations::{a}:organization/{o}"), outside_accounts, org_ids),
    st.builds(lambda a, o: ("organizationalUnitArns", f"arn:aws:organizations::{a}:ou/{o}/ou-ab12-cdefghij"),
              outside_accounts, org_ids),
    st.sampled_from([("organizationArns", "all"), ("organizationalUnitArns", "all"), ("targets", {"Group": "all"}),
                     ("targets", {"accountId": "all", "region": "us-east-1"}), ("organizationArns", "*")]),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # one stage, many events
@given(outside=st.lists(outside_entries, min_size=1, max_size=3), with_allowed=st.booleans())
def test_an_event_naming_anything_outside_the_allow_list_shares_nothing(stage_wave, outside, with_allowed):
    instance = new_instance(stage_wave)
    distribution = {"targets": [{"accountId": TARGET_A[0], "region": TARGET_A[1]}] if with_allowed else []}
    for key, entry in outside:
        distribution.setdefault(key, []).append(entry)
    result = stage_wave.runner.invoke("on_mgn_event", operator_event(
        stage_wave, {"instanceIds": [instance], "wave": "outside", "distribution": distribution}))
    assert "allow-list" in result.get("rejected", ""), result
    stage_wave.run()
    assert not [j for j in stage_wave.jobs() if j["instance_id"] == instance]
    assert_shared_only_within_the_allow_list(stage_wave)


def test_a_request_from_another_account_of_the_organization_is_rejected(stage_wave):
    """The stage's bus takes its targets' forwarded AMI events, so a target account can put events on it."""
    instance = new_instance(stage_wave)
    for account in sorted(ALLOWED_ACCOUNTS):
        result = stage_wave.runner.invoke("on_mgn_event", operator_event(
            stage_wave, {"instanceIds": [instance], "wave": "foreign"}, account=account))
        assert f"event from account {account}" in result["rejected"]
    stage_wave.run()
    assert not [j for j in stage_wave.jobs() if j["instance_id"] == instance]


def _park_in_the_dlq(wave, job: dict, body: str) -> None:
    """Take the job's message off the jobs queue and leave `body` in the DLQ, as maxReceiveCount would."""
    sqs = wave.runner.sqs
    # a new job's first message is held back to the first step's grid (intake); the clock moves on to it
    wave.sandbox.clock.advance_to(SqsClock.next_visible_at() or wave.sandbox.clock.now())
    for message in sqs.receive_message(QueueUrl=wave.stage.jobs_queue_url, MaxNumberOfMessages=10)["Messages"]:
        assert job["job_id"] in message["Body"]
        sqs.delete_message(QueueUrl=wave.stage.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"])
    sqs.send_message(QueueUrl=wave.stage.dlq_url, MessageBody=body)


def _job_for_a_new_instance(wave) -> dict:
    instance = new_instance(wave)
    [job_id] = wave.runner.invoke("on_mgn_event", operator_event(wave, {"instanceIds": [instance], "wave": "dlq"}))["created"]
    return stored_job(wave, job_id)


def test_a_replayed_dead_letter_naming_outside_accounts_shares_only_with_the_job_s_own_targets(stage_wave):
    wave = stage_wave
    job = _job_for_a_new_instance(wave)
    # the job's current message, with a distribution of the attacker's choosing riding along
    injected = {"jobId": job["job_id"], "version": job["version"], "token": job["token"],
                "distribution": {"targets": [{"accountId": "999999999999", "region": "us-east-1"}],
                                 "organizationArns": ["all"]}, "accountId": "999999999999", "Group": "all"}
    _park_in_the_dlq(wave, job, json.dumps(injected))
    wave.sandbox.clock.advance(1)
    Cli(wave.sandbox)("dlq", "replay", "--stage", "local")  # the move task: the body goes back verbatim
    wave.run()
    done = stored_job(wave, job["job_id"])
    assert done["status"] == "DONE", done["last_error"]
    assert_shared_only_within_the_allow_list(wave)


def test_a_replayed_dead_letter_of_a_job_whose_record_names_outside_accounts_shares_nothing(stage_wave):
    wave = stage_wave
    calls = wave.sandbox.service_call_counts()
    job = _job_for_a_new_instance(wave)
    # the record itself names an account, an organization and an OU outside the allow-list (tampered with, or
    # written before the allow-list shrank): the SHARE stage checks the record against the allow-list again
    job["distribution"]["targets"].append({"account_id": "999999999999", "region": "us-east-1",
                                           "kms_key_id": None, "copy": False})
    job["distribution"]["organization_arns"] = ["arn:aws:organizations::999999999999:organization/o-abcdefghij"]
    job["distribution"]["organizational_unit_arns"] = ["arn:aws:organizations::999999999999:ou/o-abcdefghij/ou-ab12-cdefghij"]
    wave.sandbox.client("dynamodb").update_item(
        TableName=wave.stage.env["JOBS_TABLE"], Key={"job_id": {"S": job["job_id"]}},
        UpdateExpression="SET doc = :doc", ExpressionAttributeValues={":doc": {"S": json.dumps(job)}})
    _park_in_the_dlq(wave, job, json.dumps({"jobId": job["job_id"], "version": job["version"], "token": job["token"]}))
    Cli(wave.sandbox).json("dlq", "replay", "--job-id", job["job_id"], "--stage", "local")
    wave.run()
    failed = stored_job(wave, job["job_id"])
    assert (failed["status"], failed["reason"]) == ("FAILED", "NOT_ALLOWED")
    for outside in ("999999999999/us-east-1", "o-abcdefghij/ou-ab12-cdefghij", "organization/o-abcdefghij"):
        assert outside in failed["last_error"]["message"]
    now = wave.sandbox.service_call_counts()
    assert now["ec2:CreateImage"] > calls["ec2:CreateImage"]  # it got as far as the share, then shared nothing
    assert now["ec2:ModifyImageAttribute"] == calls["ec2:ModifyImageAttribute"]
    assert now["ec2:ModifySnapshotAttribute"] == calls["ec2:ModifySnapshotAttribute"]
    assert_shared_only_within_the_allow_list(wave)
