"""Publishing (SSM parameter, launch template, tags, time-based copies, deregistration protection) and the job and
wave events, through the real handlers against the sandbox; what is checked is read back from AWS state."""
import json

import pytest

from automation.demo import downstream_events as received, subscribe_downstream
from automation.provision import SOURCE_KEY_ALIAS, key, seed_servers
from automation.sandbox import SOURCE_ACCOUNT
from automation.sandbox.mgn import MgnService
from tests.integration.conftest import TARGET_A, TARGET_B, distribution, target
from tests.integration.faults import crash_after

def publishing_target(**options) -> dict:
    spec = target(*TARGET_A)
    spec.update(options)
    return spec


def tags_of(tag_list: list[dict]) -> dict:
    return {t["Key"]: t["Value"] for t in tag_list}


def test_each_copy_is_named_in_an_ssm_parameter_of_its_target(start_wave, sandbox):
    spec = publishing_target(publish={"tags": {"team": "platform"}})
    wave = start_wave(distribution(spec, target(*TARGET_B), cleanup=True))
    mgn_job, servers = wave.cutover(3)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}
    assert [t["stage"] for t in jobs[0]["history"]][-3:] == ["PUBLISH", "CLEANUP", "DONE"]
    ssm = sandbox.client("ssm", account_id=TARGET_A[0], region=TARGET_A[1])
    found = {p["Name"]: p for p in ssm.get_parameters_by_path(Path="/migrated", Recursive=True)["Parameters"]}
    expected = {f"/migrated/{mgn_job}/{j['source_server_id']}": j["copies"]["222222222222/us-east-1"]["image_id"]
                for j in jobs}
    assert {name: p["Value"] for name, p in found.items()} == expected
    assert {p["DataType"] for p in found.values()} == {"aws:ec2:image"}
    job = jobs[0]
    name = f"/migrated/{mgn_job}/{job['source_server_id']}"
    tags = tags_of(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"])
    assert tags["team"] == "platform" and tags["ami-distributor:job-id"] == job["job_id"]
    assert tags["ami-distributor:source-server-id"] == job["source_server_id"] and tags["ami-distributor:wave"] == mgn_job
    ec2 = sandbox.client("ec2", account_id=TARGET_A[0], region=TARGET_A[1])
    [copy] = ec2.describe_images(ImageIds=[job["copies"]["222222222222/us-east-1"]["image_id"]])["Images"]
    assert tags_of(copy["Tags"])["team"] == "platform" and tags_of(copy["Tags"])["ami-distributor:target"] == "222222222222/us-east-1"
    # the target that does not publish has no parameter
    other = sandbox.client("ssm", account_id=TARGET_B[0], region=TARGET_B[1])
    assert other.get_parameters_by_path(Path="/", Recursive=True)["Parameters"] == []


def test_a_named_launch_template_gets_each_copy_as_a_new_default_version(start_wave, sandbox):
    ec2 = sandbox.client("ec2", account_id=TARGET_A[0], region=TARGET_A[1])
    ec2.create_launch_template(LaunchTemplateName="web-tier",
                               LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "m5.large"})
    wave = start_wave(distribution(publishing_target(publish={"ssmParameter": None, "launchTemplateName": "web-tier"}),
                                   cleanup=False))
    wave.cutover(2)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="web-tier")["LaunchTemplateVersions"]
    made = {v["VersionNumber"]: v for v in versions if v["VersionNumber"] > 1}
    by_job = {j["copies"]["222222222222/us-east-1"]["launch_template_version"]: j for j in jobs}
    assert sorted(made) == sorted(by_job) == [2, 3]
    for number, version in made.items():
        # the new version keeps what the default had and launches the copy
        assert version["LaunchTemplateData"] == {
            "ImageId": by_job[number]["copies"]["222222222222/us-east-1"]["image_id"], "InstanceType": "m5.large"}
    [template] = ec2.describe_launch_templates(LaunchTemplateNames=["web-tier"])["LaunchTemplates"]
    assert template["DefaultVersionNumber"] in made
    assert sandbox.client("ssm", account_id=TARGET_A[0], region=TARGET_A[1]).get_parameters_by_path(
        Path="/", Recursive=True)["Parameters"] == []  # ssmParameter null: no parameter


def test_a_publishing_step_done_again_after_a_crash_makes_nothing_twice(start_wave, sandbox):
    ec2 = sandbox.client("ec2", account_id=TARGET_A[0], region=TARGET_A[1])
    ec2.create_launch_template(LaunchTemplateName="web-tier", LaunchTemplateData={"ImageId": "ami-12345678"})
    wave = start_wave(distribution(publishing_target(publish={"launchTemplateName": "web-tier"}), cleanup=False))
    wave.cutover(1)
    with crash_after("ec2.CreateLaunchTemplateVersion", times=1) as crashes:
        wave.run()
    assert crashes == ["ec2.CreateLaunchTemplateVersion"]
    [job] = wave.jobs()
    assert job["status"] == "DONE"
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="web-tier")["LaunchTemplateVersions"]
    assert [v["VersionNumber"] for v in versions] == [1, 2]  # the ClientToken found the version made before the crash
    ssm = sandbox.client("ssm", account_id=TARGET_A[0], region=TARGET_A[1])
    [parameter] = ssm.get_parameters_by_path(Path="/migrated", Recursive=True)["Parameters"]
    assert parameter["Value"] == job["copies"]["222222222222/us-east-1"]["image_id"]


@pytest.mark.parametrize("setting, shown", [("cooldown", "enabled-with-cooldown"), (True, "enabled-without-cooldown")])
def test_copies_can_be_protected_from_deregistration(start_wave, sandbox, setting, shown):
    wave = start_wave(distribution(publishing_target(deregistrationProtection=setting), target(*TARGET_B), cleanup=True))
    wave.cutover(2)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}
    protected = sandbox.client("ec2", account_id=TARGET_A[0], region=TARGET_A[1]).describe_images(Owners=["self"])["Images"]
    assert sorted(i["DeregistrationProtection"] for i in protected) == [shown, shown]
    unprotected = sandbox.client("ec2", account_id=TARGET_B[0], region=TARGET_B[1]).describe_images(Owners=["self"])["Images"]
    assert {i["DeregistrationProtection"] for i in unprotected} == {"disabled"}


def test_a_time_based_copy_finishes_within_its_duration(start_wave, sandbox):
    # the 100 + 500 GiB layout: a best-effort copy takes ~750 s here (time scale 0.1), a 15-minute one 90 s
    wave = start_wave(distribution(publishing_target(copyMinutes=15), target(*TARGET_B), cleanup=False))
    servers = seed_servers(sandbox, 1, wave.stage.region, wave.stage.source_key_arn, layouts=[(100, [500])])
    sandbox.client("mgn").start_cutover(sourceServerIDs=servers)
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE"
    copies = {key: available_at(sandbox, key, c["image_id"]) for key, c in job["copies"].items()}
    timed = copies["222222222222/us-east-1"]
    best_effort = copies["333333333333/us-west-2"]
    started = job["copies"]["222222222222/us-east-1"]["started_at"]
    assert timed <= started + 90 < best_effort  # the time-based copy was ready when the best-effort one was not
    assert sandbox.api_calls["ec2:CopyImage"] == 2


def available_at(sandbox, key, image_id):
    """When the sandbox made the copy available: the time of its `available` AMI event."""
    account, region = key.split("/")
    [event] = [e for e in sandbox.published if e.detail_type == "EC2 AMI State Change"
               and e.detail["ImageId"] == image_id and e.detail["State"] == "available"]
    assert (event.account, event.region) == (account, region)
    return event.time


def test_every_job_and_its_wave_are_announced_once(start_wave, sandbox):
    downstream = subscribe_downstream(sandbox)
    wave = start_wave(distribution(publishing_target(publish=True), target(*TARGET_B), cleanup=True),
                      EVENT_BUS_NAME="default", STAGE_NAME="local")
    mgn_job, servers = wave.cutover(4)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"} and not any(j["announce_pending"] for j in jobs)
    events = received(sandbox, downstream)
    by_type = {}
    for event in events:
        assert event["source"] == "ami-distributor"
        by_type.setdefault(event["detail-type"], []).append(event["detail"])
    completed = by_type["AMI Distribution Job Completed"]
    assert sorted(d["jobId"] for d in completed) == sorted(j["job_id"] for j in jobs)
    assert len({d["eventId"] for d in completed}) == 4
    one = next(d for d in completed if d["jobId"] == jobs[0]["job_id"])
    copy = next(c for c in one["copies"] if c["accountId"] == TARGET_A[0])
    assert copy["imageId"] == jobs[0]["copies"]["222222222222/us-east-1"]["image_id"]
    assert copy["parameterName"] == f"/migrated/{mgn_job}/{jobs[0]['source_server_id']}"
    [wave_done] = by_type["AMI Distribution Wave Completed"]
    assert wave_done["wave"] == mgn_job and wave_done["counts"] == {"DONE": 4, "FAILED": 0, "CANCELLED": 0}
    assert wave_done["report"] == {"jobsTable": wave.stage.env["JOBS_TABLE"], "index": "by-wave",
                                   "keyCondition": f"wave = {mgn_job}",
                                   "command": f"python -m automation report --wave {mgn_job} --stage local"}
    assert "AMI Distribution Job Failed" not in by_type


def test_a_failed_job_is_announced_with_its_reason_and_counted_in_its_wave(start_wave, sandbox):
    downstream = subscribe_downstream(sandbox)
    wave = start_wave(EVENT_BUS_NAME="default")
    mgn = sandbox.extension(MgnService)
    legacy = mgn.add_source_server("111111111111", "us-east-1", "legacy.corp.example",
                                   [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": "aws/ebs"}])
    good = seed_servers(sandbox, 1, wave.stage.region, wave.stage.source_key_arn)
    mgn_job = sandbox.client("mgn").start_cutover(sourceServerIDs=[legacy, *good])["job"]["jobID"]
    wave.run()
    events = {e["detail-type"]: e["detail"] for e in received(sandbox, downstream)}
    failed = events["AMI Distribution Job Failed"]
    assert (failed["sourceServerId"], failed["reason"]) == (legacy, "AWS_MANAGED_KEY")
    assert "aws/ebs" in failed["error"]["message"]
    assert events["AMI Distribution Job Completed"]["sourceServerId"] == good[0]
    assert events["AMI Distribution Wave Completed"]["counts"] == {"DONE": 1, "FAILED": 1, "CANCELLED": 0}
    assert events["AMI Distribution Wave Completed"]["wave"] == mgn_job


def test_an_announcement_put_again_after_a_crash_keeps_its_event_ids(start_wave, sandbox):
    downstream = subscribe_downstream(sandbox)
    wave = start_wave(distribution(target(*TARGET_A), cleanup=False), EVENT_BUS_NAME="default")
    wave.cutover(1)
    with crash_after("events.PutEvents", times=1) as crashes:
        wave.run()
    assert crashes == ["events.PutEvents"]
    [job] = wave.jobs()
    assert job["status"] == "DONE" and not job["announce_pending"]
    events = received(sandbox, downstream)
    # put, crashed before it was recorded, put again: the same facts, the same IDs for consumers to dedupe on
    assert sorted(e["detail-type"] for e in events) == ["AMI Distribution Job Completed"] * 2 + [
        "AMI Distribution Wave Completed"] * 2
    assert len({e["detail"]["eventId"] for e in events}) == 2


def test_without_an_event_bus_no_event_is_put(start_wave, sandbox):
    downstream = subscribe_downstream(sandbox)
    wave = start_wave(distribution(target(*TARGET_A), cleanup=False))
    wave.cutover(1)
    wave.run()
    assert [j["status"] for j in wave.jobs()] == ["DONE"]
    assert received(sandbox, downstream) == [] and sandbox.api_calls["events:PutEvents"] == 0


def aws_managed_server(sandbox) -> str:
    return sandbox.extension(MgnService).add_source_server(
        "111111111111", "us-east-1", "legacy.corp.example",
        [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": "aws/ebs"},
         {"device": "/dev/sdf", "size_gib": 50, "kms_key_id": "aws/ebs"}])


def test_reencrypt_source_shares_a_customer_key_copy_of_an_aws_managed_ami_then_removes_it(start_wave, sandbox):
    from tests.integration.checks import assert_copies_owned_and_encrypted, source_images

    spec = distribution(target(*TARGET_A), target(*TARGET_B), cleanup=False)
    # the stage's customer-managed source key (provisioned with a policy that lets the targets use it)
    spec["reencryptSource"] = {"kmsKeyId": key(sandbox, SOURCE_ACCOUNT, "us-east-1", SOURCE_KEY_ALIAS)}
    wave = start_wave(spec)
    sandbox.client("mgn").start_cutover(sourceServerIDs=[aws_managed_server(sandbox)])
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", (job["reason"], job["last_error"])
    assert [t["stage"] for t in job["history"]][:6] == ["CREATE_IMAGE", "WAIT_IMAGE", "REENCRYPT", "WAIT_REENCRYPT",
                                                       "SHARE", "COPY"]
    assert_copies_owned_and_encrypted(wave, [job], [TARGET_A, TARGET_B])
    ec2 = sandbox.client("ec2")
    # the intermediate and its snapshots are gone; the aws/ebs source AMI stays (cleanup is off)
    assert [i["ImageId"] for i in source_images(wave)] == [job["source_image_id"]]
    own_snapshots = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert job["reencrypted_snapshot_ids"] and not own_snapshots & set(job["reencrypted_snapshot_ids"])
    assert set(job["snapshot_ids"]) <= own_snapshots
    # what the targets copied was the re-encrypted intermediate
    copy = sandbox.client("ec2", account_id=TARGET_A[0], region=TARGET_A[1]).describe_images(
        ImageIds=[job["copies"]["222222222222/us-east-1"]["image_id"]])["Images"][0]
    assert tags_of(copy["Tags"])["ami-distributor:source-image-id"] == job["source_image_id"]
    assert sandbox.api_calls["ec2:CopyImage"] == 3  # one in the source account, one per target


def test_without_reencrypt_source_an_aws_managed_ami_fails_naming_the_setting(start_wave, sandbox):
    wave = start_wave()
    sandbox.client("mgn").start_cutover(sourceServerIDs=[aws_managed_server(sandbox)])
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "AWS_MANAGED_KEY")
    assert "DISTRIBUTION.reencryptSource" in job["last_error"]["message"]
    assert sandbox.api_calls["ec2:CreateImage"] == 0 and sandbox.api_calls["ec2:CopyImage"] == 0
