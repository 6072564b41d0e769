import json
import threading

import pytest

from automation.sandbox.ec2_images import ImageFidelity
from automation.sandbox.settings import ThrottleSettings
from tests.integration.checks import images_in, source_images
from tests.integration.conftest import TARGET_A, TARGET_B, distribution, fast_settings, target
from tests.integration.faults import before_call, crash_after


def assert_one_image_per_job_and_target(wave, jobs):
    assert {j["status"] for j in jobs} == {"DONE"}, [(j["status"], j["last_error"]) for j in jobs]
    for account, region in (TARGET_A, TARGET_B):
        assert len(images_in(wave, account, region)) == len(jobs)
    created = wave.sandbox.api_calls["ec2:CreateImage"]
    assert created >= len(jobs)


@pytest.mark.parametrize("operation", [
    "ec2.CreateImage", "ec2.ModifyImageAttribute", "ec2.ModifySnapshotAttribute", "ec2.CopyImage",
    "ec2.DeregisterImage", "ec2.DeleteSnapshot", "ec2.TerminateInstances", "sqs.SendMessageBatch",
    "dynamodb.PutItem",
])
def test_a_crash_after_any_aws_call_converges_without_duplicates(start_wave, sandbox, operation):
    wave = start_wave(distribution(target(*TARGET_A), target(*TARGET_B), cleanup=True))
    wave.cutover(2)
    with crash_after(operation, times=2) as crashes:
        wave.run()
    assert crashes == [operation, operation]
    jobs = wave.jobs()
    assert len(jobs) == 2
    assert_one_image_per_job_and_target(wave, jobs)
    assert source_images(wave) == []  # cleanup finished too, once each


def test_a_duplicate_message_processed_concurrently_makes_one_ami(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    sandbox.clock.advance(3600)  # launched; its event waits in the events queue
    wave.runner.deliver_events()
    [message] = wave.runner.sqs.receive_message(QueueUrl=wave.stage.jobs_queue_url,
                                                MessageSystemAttributeNames=["All"])["Messages"]
    event = wave.runner._sqs_event([message])
    duplicate = json.loads(json.dumps(event))
    duplicate["Records"][0]["receiptHandle"] += "-second-delivery"
    both_at_create = threading.Barrier(2, timeout=20)

    def meet_at_create_image(**_) -> None:  # returns None: the call then goes on to AWS
        both_at_create.wait()

    with before_call("ec2.CreateImage", meet_at_create_image):
        threads = [threading.Thread(target=wave.runner.invoke, args=("advance_jobs", e)) for e in (event, duplicate)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wave.runner.sqs.delete_message(QueueUrl=wave.stage.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"])
    outcomes = [r for name, r in wave.runner.results if name == "advance_jobs"]
    assert outcomes == [{"batchItemFailures": []}] * 2, (outcomes, wave.runner.errors)
    assert sandbox.api_calls["ec2:CreateImage"] == 2  # both raced to AWS; the name made the second adopt
    wave.run()
    jobs = wave.jobs()
    assert_one_image_per_job_and_target(wave, jobs)


def test_every_message_delivered_twice_still_makes_one_of_everything(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(2)
    wave.runner.duplicate_every_message = True
    wave.run()
    jobs = wave.jobs()
    assert_one_image_per_job_and_target(wave, jobs)
    # every message of both jobs came twice: at least its CREATE_IMAGE and its waits' on the image and the copies
    assert wave.runner.duplicates_sent >= 2 * 3


@pytest.mark.parametrize("operation", [  # DescribeInstances only runs for an instance with no volume attached
    "DescribeVolumes", "CreateImage", "DescribeImages", "ModifyImageAttribute",
    "ModifySnapshotAttribute", "CopyImage", "DeregisterImage", "DeleteSnapshot", "TerminateInstances"])
def test_throttling_on_any_ec2_operation_is_never_a_failure(make_sandbox, operation):
    from automation.sandbox.throttling import Throttling
    from automation.wave import Wave

    # one token, refilled every 1,000 s: every job but the first waits its turn
    sandbox = make_sandbox(fast_settings(throttling=ThrottleSettings(overrides={operation: (1, 0.001)})))
    wave = Wave.start(sandbox)
    wave.cutover(3)
    wave.run()
    sandbox.settings.throttling.enabled = False  # the checks below are not the service's calls
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}, [(j["status"], j["last_error"]) for j in jobs]
    assert sandbox.extension(Throttling).throttled[operation] > 0
    assert all(j["last_error"] is None for j in jobs)  # a throttle is not even recorded as an error
    assert_one_image_per_job_and_target(wave, jobs)


def test_a_failed_source_image_fails_the_job_with_the_reason(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()
    while sandbox.api_calls["ec2:CreateImage"] == 0:
        wave.runner.advance()
    [image] = source_images(wave)
    sandbox.extension(ImageFidelity).fail_image(image["ImageId"], "Client.InternalError: snapshot failed")
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "IMAGE_FAILED")
    assert "snapshot failed" in job["last_error"]["message"]
    assert images_in(wave, *TARGET_A) == [] and sandbox.api_calls["ec2:ModifyImageAttribute"] == 0


def test_a_failed_copy_is_retried_then_fails_the_job_without_cleanup(make_sandbox):
    from automation.sandbox.settings import FailureModel
    from automation.wave import Wave

    sandbox = make_sandbox(fast_settings(failures=FailureModel(copy_failure_rate=1.0)))
    wave = Wave.start(sandbox, env_overrides={"MAX_COPY_ATTEMPTS": "3"})
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "COPY_FAILED")
    assert sandbox.api_calls["ec2:CopyImage"] >= 3
    assert len(source_images(wave)) == 1  # nothing cleaned up: no copy was ever available


def test_a_copy_that_fails_once_is_retried_and_the_job_completes(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    fidelity = sandbox.extension(ImageFidelity)
    failed = []
    while not failed:
        wave.runner.deliver_events() or wave.runner.advance() or sandbox.clock.advance(5) or sandbox.tick()
        [job] = wave.jobs() or [{}]
        copy = job.get("copies", {}).get("222222222222/us-east-1", {})
        if copy.get("image_id"):
            fidelity.fail_image(copy["image_id"])
            failed.append(copy["image_id"])
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", job["last_error"]
    assert job["copies"]["222222222222/us-east-1"]["attempts"] == 1
    assert [i["ImageId"] for i in images_in(wave, *TARGET_A)] == [job["copies"]["222222222222/us-east-1"]["image_id"]]


def test_aws_managed_key_volumes_fail_before_any_ami_exists(start_wave, sandbox):
    from automation.sandbox.mgn import MgnService

    wave = start_wave()
    server = sandbox.extension(MgnService).add_source_server(
        "111111111111", "us-east-1", "legacy.corp.example", [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": "aws/ebs"}])
    sandbox.client("mgn").start_cutover(sourceServerIDs=[server])
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "AWS_MANAGED_KEY")
    assert "aws/ebs" in job["last_error"]["message"] and "customer-managed" in job["last_error"]["message"]
    assert sandbox.api_calls["ec2:CreateImage"] == 0 and source_images(wave) == []


def test_an_instance_that_no_longer_exists_fails_the_job(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()
    [job] = wave.jobs()
    sandbox.client("ec2").terminate_instances(InstanceIds=[job["instance_id"]])
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "INSTANCE_NOT_FOUND")
    assert sandbox.api_calls["ec2:CreateImage"] == 0


def test_a_malformed_message_fails_alone_and_the_rest_of_the_batch_succeeds(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(2)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()
    sqs = wave.runner.sqs
    sqs.send_message(QueueUrl=wave.stage.jobs_queue_url, MessageBody='{"jobId": 42}')
    messages = sqs.receive_message(QueueUrl=wave.stage.jobs_queue_url, MaxNumberOfMessages=10,
                                   MessageSystemAttributeNames=["All"])["Messages"]
    assert len(messages) == 3
    result = wave.runner.invoke("advance_jobs", wave.runner._sqs_event(messages))
    bad = [m["MessageId"] for m in messages if m["Body"] == '{"jobId": 42}']
    assert result == {"batchItemFailures": [{"itemIdentifier": bad[0]}]}
    assert sandbox.api_calls["ec2:CreateImage"] == 2
