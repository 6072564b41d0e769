"""dlq list / replay, retry and cancel: each changes jobs and queues, so each test runs its own small wave."""
import json

import pytest

from automation.local_lambda import InvocationCrashed
from automation.sandbox.settings import FailureModel
from automation.wave import Wave
from tests.integration.checks import images_in, source_images
from tests.integration.conftest import TARGET_A, distribution, fast_settings, target
from tests.integration.faults import before_call, crash_after

# one target keeps the waves short; no cleanup, so that source AMIs stay countable
NO_CLEANUP = distribution(target(*TARGET_A), cleanup=False)
LOCAL = ("--stage", "local")


def dead_lettered(start_wave, servers: int) -> Wave:
    """A wave whose every first message died in CreateImage until SQS dead-lettered it (maxReceiveCount 5)."""
    wave = start_wave(NO_CLEANUP)
    wave.cutover(servers)
    with crash_after("ec2.CreateImage", times=10**6):
        wave.run()
    assert {(j["status"], j["stage"]) for j in wave.jobs()} == {("RUNNING", "CREATE_IMAGE")}
    return wave


def depth(wave: Wave, url: str) -> int:
    attributes = wave.runner.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attributes.values())


def assert_one_ami_and_one_copy_per_target(wave: Wave, job_ids) -> None:
    jobs = {j["job_id"]: j for j in wave.jobs()}
    for job_id in job_ids:
        assert jobs[job_id]["status"] == "DONE", jobs[job_id]["last_error"]
        name = f"ami-distributor-{job_id}"
        assert [i["Name"] for i in source_images(wave)].count(name) == 1
        for account, region in (TARGET_A,):
            copies = [i for i in images_in(wave, account, region) if i["Name"] == name]
            assert [c["ImageId"] for c in copies] == [jobs[job_id]["copies"][f"{account}/{region}"]["image_id"]]


def test_replay_after_a_forced_dlq_completes_each_job_once(cli, start_wave, sandbox):
    wave = dead_lettered(start_wave, 2)
    first, *others = [j["job_id"] for j in wave.jobs()]
    listed = cli.json("dlq", "list", *LOCAL)
    assert listed["count"] == 2 and sorted(m["job_id"] for m in listed["messages"]) == sorted([first, *others])
    assert all(m["receive_count"] >= 5 and m["verdict"] == "move" and m["job_stage"] == "CREATE_IMAGE"
               for m in listed["messages"])
    assert depth(wave, wave.stage.dlq_url) == 2  # listing consumed nothing

    sandbox.clock.advance(1)  # moto shows a message released with visibility 0 only once its clock has moved on
    filtered = cli.json("dlq", "replay", "--job-id", first, *LOCAL)
    assert [m["job_id"] for m in filtered["moved"]] == [first] and filtered["left"] == 1
    assert depth(wave, wave.stage.dlq_url) == 1  # the other dead letters stay where they are
    wave.run()
    assert_one_ami_and_one_copy_per_target(wave, [first])
    assert {j["status"] for j in wave.jobs() if j["job_id"] != first} == {"RUNNING"}

    everything = cli.json("dlq", "replay", *LOCAL)  # no filter: an SQS message move task
    assert sorted(m["job_id"] for m in everything["to_move"]) == sorted(others)
    assert everything["task"]["status"] == "RUNNING" and everything["task"]["to_move"] == 1
    wave.run()  # the task moves one batch per second of the sandbox's clock, then the jobs run
    assert depth(wave, wave.stage.dlq_url) == 0
    assert_one_ami_and_one_copy_per_target(wave, [first, *others])


def test_a_crash_between_send_and_delete_loses_nothing_and_duplicates_no_work(cli, start_wave, sandbox):
    wave = dead_lettered(start_wave, 1)
    [job] = wave.jobs()
    def die(**_):  # the CLI dies after its send succeeded, before SQS sees the delete
        raise InvocationCrashed("killed between send and delete")

    with before_call("sqs.DeleteMessage", die), pytest.raises(InvocationCrashed):
        cli("dlq", "replay", "--job-id", job["job_id"], *LOCAL)
    assert depth(wave, wave.stage.jobs_queue_url) == 1 and depth(wave, wave.stage.dlq_url) == 1
    sandbox.clock.advance(61)  # the dead letter is visible again: replay it a second time
    again = cli.json("dlq", "replay", "--job-id", job["job_id"], *LOCAL)
    assert [m["job_id"] for m in again["moved"]] == [job["job_id"]]
    assert depth(wave, wave.stage.jobs_queue_url) == 2  # two copies of the one current message
    wave.run()
    assert_one_ami_and_one_copy_per_target(wave, [job["job_id"]])
    assert any(r == {"batchItemFailures": []} for _, r in wave.runner.results)
    assert depth(wave, wave.stage.dlq_url) == 0


def replay_leaving_the_letter(cli, wave: Wave, job_id: str) -> None:
    """A filtered replay that dies between its send and its delete: the job runs on, its dead letter stays."""
    def die(**_):
        raise InvocationCrashed("killed between send and delete")

    with before_call("sqs.DeleteMessage", die), pytest.raises(InvocationCrashed):
        cli("dlq", "replay", "--job-id", job_id, *LOCAL)
    wave.run()
    wave.sandbox.clock.advance(61)  # the dead letter is visible again


def test_letters_of_done_cancelled_and_unfixably_failed_jobs_are_dropped_not_replayed(cli, start_wave, sandbox):
    wave = dead_lettered(start_wave, 3)
    done, cancelled, failed = sorted(j["job_id"] for j in wave.jobs())
    replay_leaving_the_letter(cli, wave, done)
    # the source key no longer lets the target copy: preflight fails the job, and a replay cannot change that
    kms = sandbox.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=wave.stage.source_key_arn)["Policy"])
    kms.put_key_policy(KeyId=wave.stage.source_key_arn, Policy=json.dumps({**policy, "Statement": policy["Statement"][:1]}))
    replay_leaving_the_letter(cli, wave, failed)
    cli("cancel", cancelled, *LOCAL)
    wave.run()  # the cancel's own message, which would announce the wave's end (this stage puts no events)
    before = {j["job_id"]: j for j in wave.jobs()}
    assert {k: (j["status"], j["reason"]) for k, j in before.items()} == {
        done: ("DONE", None), cancelled: ("CANCELLED", None), failed: ("FAILED", "SOURCE_KEY_UNUSABLE")}
    assert depth(wave, wave.stage.dlq_url) == 3 and depth(wave, wave.stage.jobs_queue_url) == 0
    calls = sandbox.service_call_counts()

    filtered = cli.json("dlq", "replay", "--job-id", done, *LOCAL)  # the filtered path
    assert [(m["job_id"], m["why"]) for m in filtered["dropped"]] == [(done, "job is DONE")]
    assert filtered["moved"] == filtered["retried"] == [] and filtered["left"] == 2
    sandbox.clock.advance(1)  # moto shows a message released with visibility 0 only once its clock has moved on
    everything = cli.json("dlq", "replay", *LOCAL)  # the move task's path: dropped before a task is started
    assert {m["job_id"]: m["why"] for m in everything["dropped"]} == {
        cancelled: "job is CANCELLED",
        failed: "job FAILED (SOURCE_KEY_UNUSABLE): replay cannot fix it; see `show`, then `retry`"}
    assert everything["to_move"] == everything["retried"] == [] and everything["task"] is None
    assert depth(wave, wave.stage.dlq_url) == 0 and depth(wave, wave.stage.jobs_queue_url) == 0
    wave.run()
    assert {j["job_id"]: j for j in wave.jobs()} == before  # no record changed
    assert sandbox.service_call_counts() == calls  # and the functions made no AWS call for them


def test_dlq_bad_input_changes_nothing(cli, start_wave, sandbox):
    wave = dead_lettered(start_wave, 1)
    [job] = wave.jobs()
    assert "no such job in stage local: i-nope" in cli("dlq", "replay", "--job-id", "i-nope", *LOCAL, expect=2).stderr
    not_dlq = cli("dlq", "replay", "--dlq-url", wave.stage.jobs_queue_url, *LOCAL, expect=2).stderr
    assert "is not the dead-letter queue of stage local's jobs queue" in not_dlq
    assert "is not the dead-letter queue" in cli("dlq", "list", "--dlq-url", wave.stage.events_queue_url, *LOCAL,
                                                 expect=2).stderr
    plan = cli.json("dlq", "replay", "--dry-run", *LOCAL)
    assert [m["job_id"] for m in plan["to_move"]] == [job["job_id"]] and plan["task"] is None
    assert depth(wave, wave.stage.dlq_url) == 1 and depth(wave, wave.stage.jobs_queue_url) == 0
    sandbox.clock.advance(1)  # moto shows a message released with visibility 0 only once its clock has moved on
    started = cli.json("dlq", "replay", *LOCAL)
    assert started["task"]["status"] == "RUNNING"  # the sandbox's clock stands still: the task is still going
    for args in (("dlq", "replay"), ("dlq", "replay", "--job-id", job["job_id"])):
        assert "a move task is already RUNNING" in cli(*args, *LOCAL, expect=2).stderr
    assert depth(wave, wave.stage.dlq_url) == 1 and depth(wave, wave.stage.jobs_queue_url) == 0


def test_retry_a_failed_copy_with_a_fresh_budget(make_sandbox):
    from tests.operations.conftest import Cli

    sandbox = make_sandbox(fast_settings(failures=FailureModel(copy_failure_rate=1.0)))
    wave = Wave.start(sandbox, env_overrides={"MAX_COPY_ATTEMPTS": "2", "DISTRIBUTION": json.dumps(NO_CLEANUP)})
    cli = Cli(sandbox)
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"], job["stage"]) == ("FAILED", "COPY_FAILED", "WAIT_COPY")
    refused = cli("retry", job["job_id"], "--from-stage", "CLEANUP", *LOCAL, expect=2).stderr
    assert "can be retried from CREATE_IMAGE, WAIT_IMAGE, SHARE, COPY, WAIT_COPY, not CLEANUP" in refused
    assert "no such job" in cli("retry", "i-nope", *LOCAL, expect=2).stderr
    assert "--wave needs --failed" in cli("retry", "--wave", job["wave"], *LOCAL, expect=2).stderr
    assert "has no jobs" in cli("retry", "--wave", "nope", "--failed", *LOCAL, expect=2).stderr
    assert "already FAILED" in cli("cancel", job["job_id"], *LOCAL, expect=2).stderr
    assert wave.jobs() == [job]  # nothing changed

    sandbox.settings.failures.copy_failure_rate = 0.0  # whatever broke the copies is fixed
    result = cli.json("retry", "--wave", job["wave"], "--failed", *LOCAL)
    assert result == {"retried": [{"job_id": job["job_id"], "stage": "WAIT_COPY", "retries": 1}], "lost_race": []}
    wave.run()
    assert_one_ami_and_one_copy_per_target(wave, [job["job_id"]])
    [done] = wave.jobs()
    assert done["retries"] == 1 and any(t["note"].startswith("retry 1 by ") for t in done["history"])
    assert "is DONE: nothing to retry" in cli("retry", job["job_id"], *LOCAL, expect=2).stderr
    assert "already DONE" in cli("cancel", job["job_id"], *LOCAL, expect=2).stderr


def test_retry_of_a_failed_source_image_makes_a_new_one(make_sandbox):
    """The failed image keeps the job's AMI name (CreateImage's idempotency key): the retry frees it, once."""
    from tests.operations.conftest import Cli

    sandbox = make_sandbox(fast_settings(failures=FailureModel(create_failure_rate=1.0)))
    wave = Wave.start(sandbox, env_overrides={"DISTRIBUTION": json.dumps(NO_CLEANUP)})
    cli = Cli(sandbox)
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert (job["status"], job["reason"]) == ("FAILED", "IMAGE_FAILED")
    failed_image = job["source_image_id"]

    sandbox.settings.failures.create_failure_rate = 0.0
    cli.json("retry", job["job_id"], *LOCAL)
    wave.run()
    [done] = wave.jobs()
    assert done["status"] == "DONE", done["last_error"]
    assert done["source_image_id"] != failed_image
    ec2 = sandbox.client("ec2", region=wave.stage.region)
    assert [i["State"] for i in ec2.describe_images(ImageIds=[failed_image])["Images"]] in ([], ["deregistered"])
    assert_one_ami_and_one_copy_per_target(wave, [job["job_id"]])


def test_cancel_stops_a_running_job_and_retry_resumes_it(cli, start_wave, sandbox):
    wave = start_wave(NO_CLEANUP)
    wave.cutover(2)
    while len(wave.jobs()) < 2 or not [j for j in wave.jobs() if j["stage"] == "WAIT_IMAGE"]:
        wave.runner.deliver_events() or wave.runner.advance() or sandbox.clock.advance(5) or sandbox.tick()
    status = cli.json("status", *LOCAL)  # every active job
    assert status["by_status"] == {"RUNNING": 2}
    oldest = next(j for j in wave.jobs() if j["job_id"] == status["oldest_waiting"]["job_id"])
    assert status["oldest_waiting"]["stage"] == oldest["stage"]
    victim, other = sorted(wave.jobs(), key=lambda j: j["stage"] != "WAIT_IMAGE")
    assert "in flight" in cli("retry", victim["job_id"], *LOCAL, expect=2).stderr

    assert cli.json("cancel", victim["job_id"], *LOCAL) == {"cancelled": [{"job_id": victim["job_id"]}], "skipped": []}
    assert "already CANCELLED" in cli("cancel", victim["job_id"], *LOCAL, expect=2).stderr
    wave.run()
    jobs = {j["job_id"]: j for j in wave.jobs()}
    assert (jobs[victim["job_id"]]["status"], jobs[victim["job_id"]]["stage"]) == ("CANCELLED", "WAIT_IMAGE")
    assert jobs[victim["job_id"]]["copies"] == {}  # its next step never ran
    assert [i["ImageId"] for i in source_images(wave)].count(victim["source_image_id"]) == 1  # nothing cleaned up
    assert jobs[other["job_id"]]["status"] == "DONE"
    assert cli.json("cancel", "--wave", victim["wave"], *LOCAL)["cancelled"] == []  # nothing left running

    assert cli.json("retry", victim["job_id"], *LOCAL)["retried"][0]["stage"] == "WAIT_IMAGE"
    wave.run()
    assert_one_ami_and_one_copy_per_target(wave, [victim["job_id"], other["job_id"]])


@pytest.mark.http_only
def test_replay_over_http_follows_the_move_task(tmp_path):
    """The operator's path to a sandbox: --endpoint-url, entering the stage's account; --wait follows the task."""
    from automation.provision import provision
    from automation.sandbox import RealClock, Sandbox
    from automation.stages import function_environment
    from chalicelib import config
    from chalicelib.domain.model import Job
    from chalicelib.events import JobMessage
    from tests.operations.conftest import Cli

    box = Sandbox(clock=RealClock(), seed=3).start("http")
    try:
        env = function_environment("local")
        stage = provision(box, env)
        settings = config.load(env)
        sqs = box.client("sqs")
        for index in range(3):
            job = Job(f"i-{index:017x}-abc", "w-http", "111111111111", "us-east-1", f"i-{index:017x}",
                      settings.distribution, token="ab", created_at=1.0)
            from chalicelib.adapters.job_store import DynamoJobStore

            DynamoJobStore(box.client("dynamodb"), settings.table_name).create(job)
            sqs.send_message(QueueUrl=stage.dlq_url, MessageBody=JobMessage(job.job_id, 1, "ab").body())
        cli = Cli(box)
        cli.env = {"COLUMNS": "250"}  # no credentials at all: --endpoint-url enters the sandbox's stage account
        result = cli.json("dlq", "replay", "--wait", "--endpoint-url", box.endpoint_url, *LOCAL)
        assert result["task"]["status"] == "COMPLETED" and result["task"]["moved"] == 3
        assert sqs.get_queue_attributes(QueueUrl=stage.jobs_queue_url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "3"
        status = cli.json("status", "--wave", "w-http", "--endpoint-url", box.endpoint_url, *LOCAL)
        assert status["by_status"] == {"RUNNING": 3}
    finally:
        box.stop()


def test_cancelling_the_last_running_job_of_a_wave_completes_the_wave(cli, start_wave, sandbox):
    """The small server's job ends DONE while the big one's still runs, so its announcement names no wave. The
    operator then cancels the big one: the wave is complete, and its event says so (a cancel is no news of
    the job's own: no job event for it)."""
    from automation.demo import downstream_events, subscribe_downstream
    from automation.provision import seed_servers

    downstream = subscribe_downstream(sandbox)
    wave = start_wave(NO_CLEANUP, EVENT_BUS_NAME="default")
    small, big = seed_servers(sandbox, 2, wave.stage.region, wave.stage.source_key_arn,
                              layouts=[(10, []), (30, [2000])])
    mgn_job = sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=[small, big])["job"]["jobID"]
    while not any(j["status"] == "DONE" and not j["announce_pending"] for j in wave.jobs()):
        wave.runner.deliver_events() or wave.runner.advance() or sandbox.clock.advance(30) or sandbox.tick()
    running = {j["source_server_id"]: j for j in wave.jobs() if j["status"] == "RUNNING"}
    assert list(running) == [big]
    assert [e["detail-type"] for e in downstream_events(sandbox, downstream)] == ["AMI Distribution Job Completed"]

    assert cli.json("cancel", running[big]["job_id"], *LOCAL)["cancelled"] == [{"job_id": running[big]["job_id"]}]
    wave.run()
    events = downstream_events(sandbox, downstream)
    assert [e["detail-type"] for e in events] == ["AMI Distribution Wave Completed"]
    assert events[0]["detail"]["wave"] == mgn_job
    assert events[0]["detail"]["counts"] == {"DONE": 1, "FAILED": 0, "CANCELLED": 1}
    assert not any(j["announce_pending"] for j in wave.jobs())
