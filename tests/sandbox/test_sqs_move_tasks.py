"""SQS message move tasks (DLQ redrive): StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask."""
import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from automation.sandbox import SandboxSettings

ATTRIBUTES = {"attempt": {"DataType": "Number", "StringValue": "3"}, "job": {"DataType": "String", "StringValue": "j-1"}}


def sqs_client(sandbox):
    # Plain moto answers these operations with HTTP 500, which botocore would retry for seconds.
    return sandbox.session().client("sqs", endpoint_url=sandbox.endpoint_url, config=Config(retries={"total_max_attempts": 1}))


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def make_queue(sqs, name, dlq_url=None):
    attributes = {}
    if dlq_url:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, queue_arn(sqs, url)


def dead_letter(sqs, queue_url, bodies, **send):
    """Send the bodies and receive until SQS has moved each past maxReceiveCount 1 into the DLQ."""
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body, **send} for i, body in enumerate(bodies[start:start + 10])]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    while sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages"):
        pass


def drain(sqs, url):
    messages = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                       MessageAttributeNames=["All"]).get("Messages"):
        messages += batch
    return messages


def depth(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def latest(sqs, source_arn):
    return sqs.list_message_move_tasks(SourceArn=source_arn)["Results"][0]


@pytest.fixture
def pipe(sandbox):
    """jobs queue -> jobs DLQ (maxReceiveCount 1)."""
    sqs = sqs_client(sandbox)
    dlq_url, dlq_arn = make_queue(sqs, "jobs-dlq")
    queue_url, queue_arn_ = make_queue(sqs, "jobs", dlq_url)
    return sqs, queue_url, queue_arn_, dlq_url, dlq_arn


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"], \
        excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_redrive_moves_at_the_task_rate_back_to_the_source_queue(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    dead_letter(sqs, queue_url, [f"job-{i}" for i in range(25)], MessageAttributes=ATTRIBUTES)
    dead_ids = {m["MessageId"] for m in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10,
                                                            VisibilityTimeout=0)["Messages"]}
    assert depth(sqs, dlq_url) == 25

    handle = sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=10)["TaskHandle"]
    task = latest(sqs, dlq_arn)
    assert task["Status"] == "RUNNING" and task["TaskHandle"] == handle
    assert (task["ApproximateNumberOfMessagesToMove"], task["ApproximateNumberOfMessagesMoved"]) == (25, 0)
    assert task["MaxNumberOfMessagesPerSecond"] == 10
    assert task["StartedTimestamp"] == int(sandbox.clock.now() * 1000)
    assert "DestinationArn" not in task

    for second, moved in [(1, 10), (2, 20)]:
        sandbox.clock.advance(1)
        assert latest(sqs, dlq_arn)["ApproximateNumberOfMessagesMoved"] == moved, f"after {second} s"
        assert (depth(sqs, queue_url), depth(sqs, dlq_url)) == (moved, 25 - moved)

    sandbox.clock.advance(1)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 25)
    assert "TaskHandle" not in task  # only a RUNNING task shows its handle
    redriven = drain(sqs, queue_url)
    assert sorted(m["Body"] for m in redriven) == sorted(f"job-{i}" for i in range(25))
    assert all(m["MessageAttributes"] == ATTRIBUTES for m in redriven)
    assert not dead_ids & {m["MessageId"] for m in redriven}  # redriven messages are new messages
    assert depth(sqs, dlq_url) == 0


def test_each_message_returns_to_the_queue_it_was_dead_lettered_from(sandbox, pipe):
    sqs, jobs_url, _, dlq_url, dlq_arn = pipe
    other_url, _ = make_queue(sqs, "events", dlq_url)
    dead_letter(sqs, jobs_url, ["job-1", "job-2"])
    dead_letter(sqs, other_url, ["event-1"])

    sqs.start_message_move_task(SourceArn=dlq_arn)
    sandbox.clock.advance(1)
    assert sorted(m["Body"] for m in drain(sqs, jobs_url)) == ["job-1", "job-2"]
    assert [m["Body"] for m in drain(sqs, other_url)] == ["event-1"]


def test_a_destination_queue_receives_the_messages_instead(sandbox, pipe):
    sqs, queue_url, _, _, dlq_arn = pipe
    replay_url, replay_arn = make_queue(sqs, "replay")
    dead_letter(sqs, queue_url, ["job-1", "job-2"])

    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=replay_arn)
    sandbox.clock.advance(1)
    assert latest(sqs, dlq_arn)["DestinationArn"] == replay_arn
    assert sorted(m["Body"] for m in drain(sqs, replay_url)) == ["job-1", "job-2"]
    assert depth(sqs, queue_url) == 0


def test_in_flight_messages_move_once_visible_and_deleted_ones_are_not_waited_for(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    dead_letter(sqs, queue_url, ["job-1", "job-2", "job-3", "job-4"])
    # An operator is inspecting two of them: in flight for a minute (of the sandbox's clock).
    held = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=2, VisibilityTimeout=60)["Messages"]
    assert len(held) == 2

    sqs.start_message_move_task(SourceArn=dlq_arn)
    assert latest(sqs, dlq_arn)["ApproximateNumberOfMessagesToMove"] == 4
    sandbox.clock.advance(5)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("RUNNING", 2)

    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=held[1]["ReceiptHandle"])  # handled: no longer to move
    sandbox.clock.advance(50)
    assert latest(sqs, dlq_arn)["Status"] == "RUNNING"  # the other one is still in flight
    sandbox.clock.advance(10)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 3)
    assert held[0]["Body"] in {m["Body"] for m in drain(sqs, queue_url)}


def test_messages_dead_lettered_after_the_start_wait_for_the_next_task(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    dead_letter(sqs, queue_url, [f"job-{i}" for i in range(4)])
    sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=1)
    sandbox.clock.advance(1)
    dead_letter(sqs, queue_url, ["late"])  # also re-dead-letters the one already moved back

    sandbox.clock.advance(3)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 4)
    assert sorted(m["Body"] for m in drain(sqs, dlq_url)) == ["job-0", "late"]


def test_one_active_task_per_queue_until_cancelled_and_cancelling_keeps_what_moved(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    dead_letter(sqs, queue_url, [f"job-{i}" for i in range(10)])
    handle = sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=2)["TaskHandle"]
    with pytest.raises(ClientError) as excinfo:
        sqs.start_message_move_task(SourceArn=dlq_arn)
    assert error_of(excinfo) == (
        "InvalidParameterValue",
        "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
        400,
    )
    sandbox.clock.advance(2)

    assert sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"] == 4
    task = latest(sqs, dlq_arn)
    assert task["Status"] == "CANCELLING" and "TaskHandle" not in task
    sandbox.clock.advance(5)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("CANCELLED", 4)
    assert (depth(sqs, queue_url), depth(sqs, dlq_url)) == (4, 6)

    # Only a RUNNING task can be cancelled; a handle must be one SQS gave out.
    with pytest.raises(ClientError) as excinfo:
        sqs.cancel_message_move_task(TaskHandle=handle)
    assert error_of(excinfo) == ("ResourceNotFoundException", "Task does not exist.", 404)
    with pytest.raises(ClientError) as excinfo:
        sqs.cancel_message_move_task(TaskHandle="foobared")
    assert error_of(excinfo) == ("InvalidParameterValue", "Value for parameter TaskHandle is invalid.", 400)
    sqs.start_message_move_task(SourceArn=dlq_arn)  # the queue is free for a new task


def test_start_needs_existing_queues_and_a_dead_letter_queue_source(sandbox, pipe):
    sqs, _, queue_arn_, _, dlq_arn = pipe
    with pytest.raises(ClientError) as excinfo:
        sqs.start_message_move_task(SourceArn=queue_arn_, DestinationArn=dlq_arn)
    assert error_of(excinfo) == ("InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue.", 400)

    missing = dlq_arn + "-missing"
    for call, parameter in [
        (lambda: sqs.start_message_move_task(SourceArn=missing), "SourceArn"),
        (lambda: sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=missing), "DestinationArn"),
        (lambda: sqs.list_message_move_tasks(SourceArn=missing), "SourceArn"),
    ]:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == (
            "ResourceNotFoundException", f"The resource that you specified for the {parameter} parameter doesn't exist.", 404)


def test_the_rate_is_between_1_and_500_per_second(sandbox, pipe):
    sqs, _, _, _, dlq_arn = pipe
    for rate in (0, 501):
        with pytest.raises(ClientError) as excinfo:
            sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=rate)
        assert error_of(excinfo) == (
            "InvalidParameterValue",
            f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: Must be between 1 and 500.",
            400,
        )
    sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=500)


def test_list_gives_the_newest_tasks_first(sandbox, pipe):
    sqs, queue_url, _, _, dlq_arn = pipe
    assert sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"] == []
    for rate in (1, 2, 3):
        dead_letter(sqs, queue_url, [f"job-{rate}"])
        sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=rate)
        sandbox.clock.advance(1)

    assert [t["MaxNumberOfMessagesPerSecond"] for t in sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]] == [3]
    results = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    assert [(t["MaxNumberOfMessagesPerSecond"], t["Status"]) for t in results] == [(3, "COMPLETED"), (2, "COMPLETED"), (1, "COMPLETED")]
    with pytest.raises(ClientError) as excinfo:
        sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=11)
    assert error_of(excinfo)[0] == "InvalidParameterValue"


def test_a_deleted_destination_fails_the_task(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    replay_url, replay_arn = make_queue(sqs, "replay")
    dead_letter(sqs, queue_url, [f"job-{i}" for i in range(10)])
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=replay_arn, MaxNumberOfMessagesPerSecond=1)
    sandbox.clock.advance(3)

    sqs.delete_queue(QueueUrl=replay_url)
    sandbox.clock.advance(1)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["FailureReason"], task["ApproximateNumberOfMessagesMoved"]) == (
        "FAILED", "AWS.SimpleQueueService.NonExistentQueue", 3)
    assert depth(sqs, dlq_url) == 7


def test_a_message_of_unknown_origin_goes_to_the_only_source_queue_or_fails_the_task(sandbox, pipe):
    sqs, queue_url, _, dlq_url, dlq_arn = pipe
    sqs.send_message(QueueUrl=dlq_url, MessageBody="sent-straight-to-the-dlq")
    sqs.start_message_move_task(SourceArn=dlq_arn)
    sandbox.clock.advance(1)
    assert [m["Body"] for m in drain(sqs, queue_url)] == ["sent-straight-to-the-dlq"]

    make_queue(sqs, "events", dlq_url)  # now two queues dead-letter here: which one is ambiguous
    sqs.send_message(QueueUrl=dlq_url, MessageBody="sent-straight-to-the-dlq")
    sqs.start_message_move_task(SourceArn=dlq_arn)
    sandbox.clock.advance(1)
    task = latest(sqs, dlq_arn)
    assert (task["Status"], task["FailureReason"]) == ("FAILED", "CouldNotDetermineMessageSource")
    assert depth(sqs, dlq_url) == 1


def test_without_a_rate_the_system_moves_at_the_ceiling_from_the_settings(make_sandbox):
    sandbox = make_sandbox(settings=SandboxSettings(move_task_max_rate=5))
    sqs = sqs_client(sandbox)
    dlq_url, dlq_arn = make_queue(sqs, "jobs-dlq")
    queue_url, _ = make_queue(sqs, "jobs", dlq_url)
    dead_letter(sqs, queue_url, [f"job-{i}" for i in range(12)])

    with pytest.raises(ClientError):
        sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=6)
    sqs.start_message_move_task(SourceArn=dlq_arn)
    assert "MaxNumberOfMessagesPerSecond" not in latest(sqs, dlq_arn)
    sandbox.clock.advance(2)
    assert (depth(sqs, queue_url), depth(sqs, dlq_url)) == (10, 2)
    sandbox.clock.advance(1)
    assert latest(sqs, dlq_arn)["Status"] == "COMPLETED"
