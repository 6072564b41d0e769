"""Waiting on AWS: a job looks at an image when its size says it should be ready, not every 900 s before."""
from collections import defaultdict

from automation.provision import seed_servers
from automation.sandbox import SandboxSettings
from automation.wave import Wave


def test_an_hours_long_image_is_not_polled_before_it_can_be_ready(make_sandbox):
    sandbox = make_sandbox(SandboxSettings())  # AWS's own durations: a 1 TiB server images for ~1.7 h, copies ~3.5 h
    wave = Wave.start(sandbox)
    [server] = seed_servers(sandbox, 1, wave.stage.region, wave.stage.source_key_arn, layouts=[(30, [1000])])
    sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=[server])
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", job["last_error"]
    # SQS delays a message 900 s at most, so the job waited in hops; a look every 900 s would be ~7 looks at the
    # source image and ~14 at each copy. The plan looks at the expected end (and the AMI events wake it).
    assert sandbox.service_calls["ec2:DescribeImages"] <= 6
    assert job["size_gib"] == 1030


def test_a_batch_of_jobs_due_together_looks_with_one_call_per_account_and_region(sandbox):
    """The poll grid makes jobs' looks fall due together; advance_jobs then asks once for all of them."""
    wave = Wave.start(sandbox)
    servers = seed_servers(sandbox, 5, wave.stage.region, wave.stage.source_key_arn, layouts=[(30, [20])])
    sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=servers)
    sandbox.clock.advance(3600)  # MGN launches them all
    wave.runner.deliver_events()  # the launch results; no AMI event is delivered after this
    while sandbox.service_calls["ec2:CreateImage"] < 5:
        wave.runner.advance()
    sandbox.clock.advance(3600)  # every image is ready, and every job's look is due
    before = sandbox.service_calls["ec2:DescribeImages"]
    assert wave.runner.advance() == 5  # one batch holds the five looks
    assert sandbox.service_calls["ec2:DescribeImages"] - before == 1
    assert {j["stage"] for j in wave.jobs()} == {"WAIT_COPY"}  # each went on to share and copy


def test_a_batch_of_new_jobs_reads_their_volumes_with_one_call(sandbox):
    wave = Wave.start(sandbox)
    layouts = [(30, [data]) for data in (10, 20, 30, 40, 50)]
    servers = seed_servers(sandbox, 5, wave.stage.region, wave.stage.source_key_arn, layouts=layouts)
    sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=servers)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()  # five launch results: five jobs, each with its first message
    assert wave.runner.advance() == 5
    assert sandbox.service_calls["ec2:CreateImage"] == 5
    assert sandbox.service_calls["ec2:DescribeVolumes"] == 1
    # each job got its own instance's volumes
    assert {j["source_server_id"]: j["size_gib"] for j in wave.jobs()} == dict(zip(servers, (40, 50, 60, 70, 80)))


def test_launch_events_of_one_mgn_job_ask_mgn_once(sandbox):
    wave = Wave.start(sandbox)
    wave.cutover(6)
    sandbox.clock.advance(3600)  # all six launched: their launch results arrive together
    wave.run()
    assert {j["status"] for j in wave.jobs()} == {"DONE"}
    assert sandbox.service_calls["mgn:DescribeJobs"] == 1  # the instances of all six came in one answer
    assert sandbox.service_calls["ec2:DescribeVolumes"] == 1  # their first steps shared a batch, and its look-ahead


def six_jobs_where_two_copies_fit(make_sandbox, copy_slots: int):
    """Six servers to two destinations that each run two copies at once, taken to the end: every job DONE."""
    from automation.sandbox.settings import ThrottleSettings
    from tests.integration.conftest import fast_settings

    sandbox = make_sandbox(fast_settings(throttling=ThrottleSettings(copy_concurrency_limit=2)))
    wave = Wave.start(sandbox, env_overrides={"COPY_SLOTS_PER_DESTINATION": str(copy_slots)})
    wave.cutover(6)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"} and all(j["last_error"] is None for j in jobs)
    return sandbox, wave, jobs


def test_copies_refused_for_the_destination_limit_wait_and_ask_again_instead_of_failing(make_sandbox):
    """AWS runs a limited number of copies per destination region (ResourceLimitExceeded past it). Without our
    admission (or when others' copies fill the destination), a refused copy waits in SQS for about as long as a
    copy takes to free a slot, and never fails for it."""
    from automation.sandbox.throttling import Throttling

    sandbox, _, jobs = six_jobs_where_two_copies_fit(make_sandbox, copy_slots=0)
    refused = sandbox.extension(Throttling).copies_refused
    assert refused > 0  # the limit was reached
    assert sandbox.service_calls["ec2:CopyImage"] - 12 == refused
    # 8 of the 12 copies (4 per destination) cannot start at once; each asks again about once, not every few seconds
    assert refused <= 12


def test_with_copy_slots_no_copy_is_refused_and_every_slot_is_given_back(make_sandbox):
    """Admission: a copy starts only with one of the destination's slots, so copies past the limit queue in SQS
    and EC2 never refuses one; each slot is given back when its copy ends."""
    from automation.sandbox.throttling import Throttling
    from chalicelib.adapters.copy_slots import DynamoCopySlots

    sandbox, wave, jobs = six_jobs_where_two_copies_fit(make_sandbox, copy_slots=2)
    assert sandbox.extension(Throttling).copies_refused == 0
    assert sandbox.service_calls["ec2:CopyImage"] == 12  # one per job and target, none asked twice
    slots = DynamoCopySlots(sandbox.client("dynamodb", region=wave.stage.region), wave.stage.env["JOBS_TABLE"])
    destinations = {key for j in jobs for key in j["copies"]}
    assert destinations == {"222222222222/us-east-1", "333333333333/us-west-2"}
    for destination in destinations:
        assert slots.holders(destination) == {}


def test_a_copy_that_waits_for_a_slot_starts_the_moment_one_is_given_back(make_sandbox):
    """Whoever gives a slot back hands it to the first copy in line, in the same invocation: a waiting copy does
    not sit out its own backstop wait while a slot stands free. (A job gives its slots back when the copy it
    awaits ends, which may be its copy into another destination: so the moment is the end of some copy.)"""
    from automation.sandbox.ec2_images import ImageFidelity
    from automation.sandbox.settings import ThrottleSettings
    from tests.integration.conftest import fast_settings

    sandbox = make_sandbox(fast_settings(throttling=ThrottleSettings(copy_concurrency_limit=2)))
    images, copy_ends = sandbox.extension(ImageFidelity), set()
    finish = images._finish

    def watched(job):  # observes the emulator, changes nothing
        if job.kind == "copy":
            copy_ends.add(sandbox.clock.now())
        finish(job)

    images._finish = watched
    wave = Wave.start(sandbox, env_overrides={"COPY_SLOTS_PER_DESTINATION": "2"})
    wave.cutover(6)
    wave.run()
    jobs = wave.jobs()
    assert {j["status"] for j in jobs} == {"DONE"}
    waited = [copy["started_at"] for j in jobs for copy in j["copies"].values()
              if copy["started_at"] > next(h["at"] for h in j["history"] if h["stage"] == "COPY")]
    assert len(waited) >= 4  # 12 copies, 2 at a time into each destination
    assert set(waited) <= copy_ends


def test_a_copy_slot_whose_holder_died_is_taken_back_when_its_lease_runs_out(sandbox):
    from chalicelib.adapters.copy_slots import DynamoCopySlots

    wave = Wave.start(sandbox)
    slots = DynamoCopySlots(sandbox.client("dynamodb", region=wave.stage.region), wave.stage.env["JOBS_TABLE"])
    now = sandbox.clock.now()
    assert slots.take("222222222222/us-east-1", "cancelled-job", now + 600, 1, now, claim=200)
    assert not slots.take("222222222222/us-east-1", "next-job", now + 600, 1, now, claim=200)  # full, lease live
    assert slots.take("222222222222/us-east-1", "cancelled-job", now + 900, 1, now, claim=200)  # kept by its holder
    assert slots.take("222222222222/us-east-1", "next-job", now + 2000, 1, now + 901, claim=200)  # taken back
    assert slots.holders("222222222222/us-east-1") == {"next-job": now + 2000}
    slots.give_back("222222222222/us-east-1", "next-job", now + 901)
    slots.give_back("222222222222/us-east-1", "next-job", now + 901)  # twice (a redelivered step) is harmless
    assert slots.holders("222222222222/us-east-1") == {}
    # the slots share the jobs table: an operator's scan of the jobs does not see them
    from chalicelib.adapters.job_store import DynamoJobStore
    store = DynamoJobStore(sandbox.client("dynamodb", region=wave.stage.region), wave.stage.env["JOBS_TABLE"])
    assert list(store.summaries()) == []


def test_a_freed_copy_slot_goes_to_the_longest_waiting_copy_first(sandbox):
    """A wave ends with its longest copy: one that waits must not lose every freed slot to short copies."""
    from chalicelib.adapters.copy_slots import DynamoCopySlots

    wave = Wave.start(sandbox)
    slots = DynamoCopySlots(sandbox.client("dynamodb", region=wave.stage.region), wave.stage.env["JOBS_TABLE"])
    where, now = "222222222222/us-east-1", sandbox.clock.now()
    until = now + 3600
    assert slots.take(where, "running", until, 1, now, claim=600)
    assert not slots.take(where, "short", until, 1, now, claim=300)
    assert not slots.take(where, "long", until, 1, now, claim=9000)
    assert [w.holder for w in slots.waiters(where)] == ["long", "short"]
    assert slots.give_back(where, "running", now) == "long"  # whoever gives back learns whom to wake
    assert not slots.take(where, "short", until, 1, now, claim=300)  # the free slot is the longer claim's
    assert not slots.take(where, "newcomer", until, 1, now, claim=60)
    assert slots.take(where, "long", until, 1, now, claim=9000)
    assert [w.holder for w in slots.waiters(where)] == ["short", "newcomer"]  # it left the line
    assert slots.give_back(where, "long", now) == "short"
    assert slots.give_back(where, "long", now) is None  # given back twice: nothing more to hand on
    # a registration that ran out (its job ended, say) keeps nobody from a slot
    assert slots.take(where, "late", now + 7200, 1, now + 3601, claim=60)
    assert slots.waiters(where) == []  # and is swept on the way


def test_the_copy_line_keeps_its_longest_claims_only(sandbox):
    """The line lives in one DynamoDB item (400 KB at most): a wave of 10,000 copies into one destination must not
    outgrow it. A copy left off the line still asks again on its own."""
    from chalicelib.adapters.copy_slots import DynamoCopySlots

    wave = Wave.start(sandbox)
    slots = DynamoCopySlots(sandbox.client("dynamodb", region=wave.stage.region), wave.stage.env["JOBS_TABLE"],
                            line_length=2)
    where, now = "222222222222/us-east-1", sandbox.clock.now()
    assert slots.take(where, "a", now + 3600, 2, now, claim=100) and slots.take(where, "b", now + 3600, 2, now, claim=100)
    for name, claim in (("c", 50), ("d", 70), ("e", 10), ("f", 90)):
        assert not slots.take(where, name, now + 3600, 2, now, claim=claim)
    assert [w.holder for w in slots.waiters(where)] == ["f", "d"]  # the two longest claims
    assert slots.holders(where).keys() == {"a", "b"}


def test_a_throttled_table_during_the_look_ahead_costs_one_call_not_the_batch(sandbox):
    from botocore.exceptions import ClientError

    from tests.integration.faults import before_call

    wave = Wave.start(sandbox)
    servers = seed_servers(sandbox, 5, wave.stage.region, wave.stage.source_key_arn, layouts=[(30, [20])])
    sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=servers)
    sandbox.clock.advance(3600)
    wave.runner.deliver_events()
    while sandbox.service_calls["ec2:CreateImage"] < 5:
        wave.runner.advance()
    sandbox.clock.advance(3600)
    before = sandbox.service_calls["ec2:DescribeImages"]
    throttled = []

    def throttle_first_read(**kwargs):
        if not throttled:
            throttled.append("GetItem")
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "GetItem")

    with before_call("dynamodb.GetItem", throttle_first_read):
        assert wave.runner.advance() == 5
    assert throttled and {j["stage"] for j in wave.jobs()} == {"WAIT_COPY"}
    assert sandbox.service_calls["ec2:DescribeImages"] - before == 2  # the batch's look, and the unread job's own
