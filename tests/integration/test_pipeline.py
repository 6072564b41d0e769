import json

import pytest

from tests.integration.checks import (assert_copies_owned_and_encrypted, assert_source_cleaned_up, images_in,
                                      source_images)
from tests.integration.conftest import TARGET_A, TARGET_B, distribution, target


def statuses(jobs):
    return [(j["status"], j["reason"], j["last_error"]) for j in jobs]


def test_cutover_to_two_accounts_in_two_regions_with_cleanup(start_wave):
    wave = start_wave()  # the local stage: two targets, two regions, cleanup on
    wave.cutover(4)
    wave.run()
    jobs = wave.jobs()
    assert len(jobs) == 4 and {j["status"] for j in jobs} == {"DONE"}, statuses(jobs)
    assert [t["stage"] for t in jobs[0]["history"]] == [
        "CREATE_IMAGE", "WAIT_IMAGE", "SHARE", "COPY", "WAIT_COPY", "CLEANUP", "DONE"]
    assert_copies_owned_and_encrypted(wave, jobs, [TARGET_A, TARGET_B])
    assert_source_cleaned_up(wave, jobs)
    assert all(j["source_server_id"] and j["mgn_job_id"] for j in jobs)


def test_one_target_without_cleanup_keeps_the_source(start_wave):
    wave = start_wave(distribution(target(*TARGET_A), cleanup=False))
    wave.cutover(2)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}, statuses(jobs)
    assert_copies_owned_and_encrypted(wave, jobs, [TARGET_A])
    assert images_in(wave, *TARGET_B) == []
    assert sorted(i["ImageId"] for i in source_images(wave)) == sorted(j["source_image_id"] for j in jobs)


def test_share_only_lets_the_target_see_the_source_image(start_wave, sandbox):
    wave = start_wave(distribution(target(*TARGET_A, copy=False), cleanup=False))
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE" and job["copies"] == {}
    as_target = sandbox.client("ec2", account_id=TARGET_A[0])
    shared = as_target.describe_images(ExecutableUsers=["self"])["Images"]
    assert [i["ImageId"] for i in shared] == [job["source_image_id"]]
    assert images_in(wave, *TARGET_A) == []


@pytest.mark.parametrize("launch_types, launch, expect_jobs", [
    ("CUTOVER", "test", 0), ("CUTOVER", "cutover", 2), ("CUTOVER,TEST", "test", 2)])
def test_only_configured_launch_types_start_jobs(start_wave, launch_types, launch, expect_jobs):
    wave = start_wave(LAUNCH_TYPES=launch_types)
    wave.cutover(2, launch=launch)
    wave.run()
    jobs = wave.jobs()
    assert len(jobs) == expect_jobs and {j["status"] for j in jobs} <= {"DONE"}
    assert wave.runner.invocations["on_mgn_event"] == 2  # every launch result is looked at


def test_a_failed_launch_is_recorded_and_starts_nothing(start_wave, sandbox):
    from automation.sandbox.mgn import MgnService

    wave = start_wave()
    server = sandbox.extension(MgnService).add_source_server(
        "111111111111", "us-east-1", "broken.corp.example",
        [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": wave.stage.source_key_arn}], fail_launch=True)
    sandbox.client("mgn").start_cutover(sourceServerIDs=[server])
    wave.run()
    assert wave.jobs() == []
    assert wave.runner.invocations["on_mgn_event"] == 1 and not wave.runner.errors


def test_a_redelivered_launch_event_creates_nothing_new(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    sandbox.clock.advance(3600)
    sandbox.tick()
    [launch_event] = [e.as_eventbridge() for e in sandbox.published if e.source == "aws.mgn"]
    for _ in range(3):
        wave.runner.invoke("on_mgn_event", launch_event)
    wave.run()
    jobs = wave.jobs()
    assert len(jobs) == 1 and jobs[0]["status"] == "DONE"
    assert wave.runner.results[1][1]["existing"] == [jobs[0]["job_id"]]
    assert len(images_in(wave, *TARGET_A)) == 1 and len(images_in(wave, *TARGET_B)) == 1


def test_operator_event_distributes_named_instances(start_wave, sandbox):
    wave = start_wave()
    ec2 = sandbox.client("ec2")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, BlockDeviceMappings=[{
        "DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8, "Encrypted": True, "KmsKeyId": wave.stage.source_key_arn}}])
    instance_id = instance["Instances"][0]["InstanceId"]
    wave.distribute([instance_id], "wave-7", {"targets": [{"accountId": TARGET_A[0], "region": TARGET_A[1]}]})
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE" and job["wave"] == "wave-7"
    assert list(job["copies"]) == ["222222222222/us-east-1"]
    assert_copies_owned_and_encrypted(wave, [job], [TARGET_A])


def test_a_target_outside_the_allow_list_gets_nothing(start_wave, sandbox):
    wave = start_wave()
    wave.distribute(["i-0123456789abcdef0"], "w", {"targets": [{"accountId": "999999999999", "region": "us-east-1"}]})
    wave.distribute(["i-0123456789abcdef0"], "w", {"organizationArns": ["arn:aws:organizations::999999999999:organization/o-abcdefghij"]})
    wave.run()
    assert wave.jobs() == []
    rejections = [r for name, r in wave.runner.results if name == "on_mgn_event"]
    assert len(rejections) == 2 and all("allow-list" in r["rejected"] for r in rejections)
    assert sandbox.api_calls["ec2:ModifyImageAttribute"] == 0


def test_a_job_whose_target_left_the_allow_list_shares_nothing(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()  # the job is taken in under the full allow-list
    assert len(wave.jobs()) == 1
    # the stage is redeployed with a narrower allow-list while the job is imaging
    wave.stage.env["DISTRIBUTION"] = json.dumps(distribution(target(*TARGET_A)))
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "NOT_ALLOWED")
    assert "333333333333/us-west-2" in job["last_error"]["message"]
    assert sandbox.api_calls["ec2:ModifyImageAttribute"] == 0 and sandbox.api_calls["ec2:CopyImage"] == 0
