"""retry / cancel / replay rules on a Job: pure, no AWS."""
import pytest

from chalicelib.domain import operations as rules
from chalicelib.domain.model import Cleanup, Distribution, Job, Reason, Stage, Status, Target

TARGET = Target("222222222222", "us-east-1", "arn:aws:kms:us-east-1:222222222222:alias/k")
DISTRIBUTION = Distribution((TARGET,), cleanup=Cleanup(True, True, True))


def job_at(stage: Stage, **changes) -> Job:
    job = Job("j-1", "w", "111111111111", "us-east-1", "i-1", DISTRIBUTION, created_at=0.0)
    job.move_to(Stage.CREATE_IMAGE, 0.0, "created")
    path = rules.stages_of(job)  # no aws/ebs volume, no publishing: neither re-encryption nor PUBLISH
    for index, step in enumerate([s for s in list(Stage)[2:list(Stage).index(stage) + 1] if s in path or s is stage],
                                 start=1):
        if step is Stage.WAIT_IMAGE:
            job.source_image_id = "ami-1"
        if step is Stage.WAIT_COPY:
            job.copy_for(TARGET).image_id, job.copy_for(TARGET).state = "ami-2", "pending"
        job.move_to(step, index * 10.0)
    for key, value in changes.items():
        setattr(job, key, value)
    return job


def failed_at(stage: Stage, reason: Reason) -> Job:
    job = job_at(stage)
    job.fail(reason, "Code", "message", 100.0)
    return job


def test_a_failed_job_resumes_where_it_failed_and_counts_the_retry():
    job = failed_at(Stage.SHARE, Reason.SHARE_REFUSED)
    assert rules.retry(job, 200.0) is Stage.SHARE
    assert (job.status, job.reason, job.stage, job.retries, job.attempt) == (Status.RUNNING, None, Stage.SHARE, 1, 0)
    assert job.history[-1].note == "retry 1 by operator" and job.last_error.code == "Code"  # the error stays on record


def test_a_failed_copy_gets_a_fresh_budget_of_attempts():
    job = failed_at(Stage.WAIT_COPY, Reason.COPY_FAILED)
    job.copy_for(TARGET).attempts, job.copy_for(TARGET).state = 2, "failed"
    assert rules.retry(job, 200.0) is Stage.WAIT_COPY
    assert job.copy_attempts_granted == 3  # the service compares attempts + 1 against max + this grant


def test_a_failed_source_image_is_made_again_not_waited_for():
    job = failed_at(Stage.WAIT_IMAGE, Reason.IMAGE_FAILED)
    assert rules.retry(job, 200.0) is Stage.CREATE_IMAGE and job.source_image_id is None


@pytest.mark.parametrize("from_stage, allowed", [
    (Stage.CREATE_IMAGE, True), (Stage.SHARE, True), (Stage.COPY, True), (Stage.WAIT_COPY, False),
    (Stage.CLEANUP, False), (Stage.DONE, False), (Stage.WAIT_LAUNCH, False)])
def test_retry_may_go_back_but_never_forward(from_stage, allowed):
    job = failed_at(Stage.COPY, Reason.COPY_REFUSED)
    if allowed:
        assert rules.check_retry(job, from_stage) is from_stage
    else:
        with pytest.raises(rules.Refused, match="can be retried from CREATE_IMAGE, WAIT_IMAGE, SHARE, COPY"):
            rules.check_retry(job, from_stage)


def test_retry_refuses_done_and_in_flight_jobs_and_resumes_cancelled_ones():
    done = job_at(Stage.CLEANUP)
    done.finish(50.0)
    with pytest.raises(rules.Refused, match="DONE"):
        rules.check_retry(done)
    with pytest.raises(rules.Refused, match="in flight"):
        rules.check_retry(job_at(Stage.COPY))
    cancelled = job_at(Stage.SHARE)
    rules.cancel(cancelled, 60.0)
    assert rules.retry(cancelled, 70.0) is Stage.SHARE and cancelled.status is Status.RUNNING


def test_cancel_applies_to_running_jobs_only_and_keeps_what_they_made():
    job = job_at(Stage.WAIT_COPY)
    rules.cancel(job, 60.0, by="ana")
    assert job.status is Status.CANCELLED and job.stage is Stage.WAIT_COPY and job.source_image_id == "ami-1"
    assert job.history[-1].note == "cancelled by ana" and job.awaited_image_id is None
    for terminal in (job, failed_at(Stage.SHARE, Reason.SHARE_REFUSED)):
        with pytest.raises(rules.Refused, match="already"):
            rules.check_cancel(terminal)


def test_replay_verdicts():
    running = job_at(Stage.SHARE, version=4, token="ab")
    assert rules.replay_verdict(running, 4, "ab") == rules.Verdict("move", "resumes at SHARE")
    assert rules.replay_verdict(running, 3, "aa").action == "drop"  # stale
    assert "orphan" in rules.replay_verdict(running, 5, "cd").why
    assert rules.replay_verdict(None, 1, "ab").why == "no such job"
    exhausted = failed_at(Stage.COPY, Reason.RETRIES_EXHAUSTED)
    assert rules.replay_verdict(exhausted, exhausted.version, exhausted.token).action == "retry"
    key = failed_at(Stage.CREATE_IMAGE, Reason.AWS_MANAGED_KEY)
    assert "cannot fix" in rules.replay_verdict(key, key.version, key.token).why
    done = job_at(Stage.CLEANUP)
    done.finish(50.0)
    assert rules.replay_verdict(done, done.version, done.token) == rules.Verdict("drop", "job is DONE")


def test_stage_durations_follow_the_history():
    job = job_at(Stage.SHARE)  # CREATE_IMAGE at 0, WAIT_IMAGE 10, SHARE 20
    assert rules.stage_durations(job, 25.0) == [("CREATE_IMAGE", 0.0, 10.0), ("WAIT_IMAGE", 10.0, 10.0),
                                                ("SHARE", 20.0, 5.0)]
    job.fail(Reason.SHARE_REFUSED, "C", "m", 30.0)
    assert rules.stage_durations(job, 99.0)[-1] == ("SHARE", 20.0, 10.0)
