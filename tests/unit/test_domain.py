import pytest

from chalicelib.domain.backoff import SQS_MAX_DELAY_S, Backoff
from chalicelib.domain.errors import Kind, classify
from chalicelib.domain.model import Cleanup, Distribution, Job, Reason, Stage, Status, Target
from chalicelib.domain.polling import Expected, PollPlan

DISTRIBUTION = Distribution((Target("222222222222", "us-east-1", "arn:aws:kms:us-east-1:222222222222:alias/k"),),
                            cleanup=Cleanup(True, True, True))


def test_backoff_grows_then_caps_within_sqs_limits():
    backoff = Backoff(base_s=30, cap_s=300, jitter=0.5)
    ceilings = [backoff.delay(attempt, draw=0.0) for attempt in range(8)]
    assert ceilings == [30, 60, 120, 240, 300, 300, 300, 300]
    assert backoff.delay(3, draw=1.0) == 120  # jitter takes up to half off
    assert Backoff(600, 5000).delay(5, 0.0) == SQS_MAX_DELAY_S


def test_poll_plan_looks_first_at_the_expected_end_then_every_tenth_of_the_wait():
    plan, expected = PollPlan(min_s=5, max_s=900), Expected.parse("120+6/GiB").seconds(100)  # 720 s
    assert plan.delay(started_at=1000, now=1000, expected_s=expected) == 720
    assert plan.delay(started_at=1000, now=1000 + 720, expected_s=expected) == 72  # late: 10% of 720 s
    assert plan.delay(started_at=1000, now=1000 + 3000, expected_s=expected) == 300  # 10% of the time waited
    assert plan.delay(started_at=0, now=86400, expected_s=expected) == 900  # POLL_MAX_SECONDS
    assert plan.delay(started_at=0, now=0, expected_s=6900) == 6900  # further than SQS delays: the job hops
    assert PollPlan(min_s=30, max_s=900).delay(0, 0, expected_s=10) == 30


def test_looks_fall_on_the_grid_and_long_waits_hop_on_a_coarser_one():
    plan = PollPlan(min_s=30, max_s=900, grid_s=60)
    assert plan.on_grid(1000) == 1020 and plan.on_grid(1020) == 1020
    assert plan.hop(now=1000, wake_at=1500) == 1500  # within SQS's reach: straight to the look
    assert plan.hop(now=1000, wake_at=9000) == 1800  # as far as SQS can delay, on a 300 s grid
    assert 1000 < plan.hop(now=1000, wake_at=9000) <= 1000 + SQS_MAX_DELAY_S
    coarse = PollPlan(min_s=30, max_s=900, grid_s=300)  # the largest grid a stage may set
    assert all(now + 600 <= coarse.hop(now, now + 5000) <= now + SQS_MAX_DELAY_S for now in range(0, 3000, 7))


def test_expected_durations_parse_or_say_what_is_wrong():
    assert Expected.parse(" 0.3 + 0.012 / GiB ") == Expected(0.3, 0.012)
    with pytest.raises(ValueError, match="e.g. '120\\+6/GiB'"):
        Expected.parse("ten minutes")


def test_errors_are_classified_once():
    assert classify("RequestLimitExceeded") is Kind.THROTTLED
    assert classify("ProvisionedThroughputExceededException") is Kind.THROTTLED
    assert classify("ResourceLimitExceeded") is Kind.BUSY
    assert classify("InvalidInstanceID.NotFound") is Kind.GONE
    assert classify("AccessDenied") is Kind.DENIED
    assert classify("SomethingNew") is Kind.INVALID


def test_job_id_is_one_per_instance_and_distribution():
    other = Distribution((Target("333333333333", "us-east-1", "arn:aws:kms:us-east-1:333333333333:alias/k"),))
    assert Job.make_id("i-1", DISTRIBUTION) == Job.make_id("i-1", DISTRIBUTION)
    assert Job.make_id("i-1", DISTRIBUTION) != Job.make_id("i-1", other)


def test_copy_client_token_changes_only_with_the_attempt():
    job = Job("j", "w", "111111111111", "us-east-1", "i-1", DISTRIBUTION)
    target = DISTRIBUTION.targets[0]
    first = job.client_token(target)
    assert job.client_token(target) == first
    job.copy_for(target).attempts += 1
    assert job.client_token(target) != first


def test_job_round_trips_through_its_record():
    job = Job("j", "w", "111111111111", "us-east-1", "i-1", DISTRIBUTION, source_server_id="s-1")
    job.move_to(Stage.WAIT_IMAGE, 10.0, "ami-1")
    job.copy_for(DISTRIBUTION.targets[0]).image_id = "ami-2"
    job.fail(Reason.COPY_FAILED, "Image.failed", "copy failed", 20.0)
    again = Job.from_dict(job.to_dict())
    assert again == job
    assert again.status is Status.FAILED and again.reason is Reason.COPY_FAILED
    assert [t.stage for t in again.history] == ["WAIT_IMAGE", "WAIT_IMAGE"]
