"""The stage machine under faults, as a hypothesis state machine run through the sandbox.

Each example distributes one instance with the `local` stage (two targets, cleanup on) and then applies
a sequence of rules, each followed by a round of the world (SQS delivers, EventBridge delivers, virtual
time runs on): an image turns failed, a message is delivered twice, AMI events are lost, the function
crashes right after an AWS call, a stale message is replayed, the operator cancels or retries. After
every rule the job's record and AWS's state are checked against the invariants; at the end the wave is
run dry and the job must be in the state a simple model of those facts predicts.
"""
from __future__ import annotations

import math
import random
from collections import Counter

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from automation import operations
from automation.sandbox import VirtualClock
from automation.sandbox.ec2_images import ImageFidelity
from automation.sandbox.sqs_clock import SqsClock
from automation.wave import Wave
from chalicelib import bootstrap
from chalicelib.domain.model import Stage
from chalicelib.events import JobMessage
from tests.integration.conftest import TARGET_A, TARGET_B
from tests.integration.faults import CrashSwitch, crash_switch
from tests.property.conftest import new_instance, operator_connection, operator_event, stored_job

TARGETS = {f"{a}/{r}": (a, r) for a, r in (TARGET_A, TARGET_B)}
MAX_COPY_ATTEMPTS = 3  # the stage's default: a target's third failed copy fails the job
CRASH_POINTS = ["ec2.CreateImage", "ec2.ModifyImageAttribute", "ec2.ModifySnapshotAttribute", "ec2.CopyImage",
                "ec2.DeregisterImage", "ec2.DeleteSnapshot", "ec2.TerminateInstances", "sqs.SendMessageBatch",
                "dynamodb.PutItem", "sts.AssumeRole"]
# the stages a RUNNING job may go to from each stage (the service's own steps; operators add retries)
FORWARD = {
    Stage.CREATE_IMAGE: {Stage.WAIT_IMAGE},
    Stage.WAIT_IMAGE: {Stage.SHARE},
    Stage.SHARE: {Stage.COPY, Stage.CLEANUP},
    Stage.COPY: {Stage.WAIT_COPY},
    Stage.WAIT_COPY: {Stage.COPY, Stage.CLEANUP},  # back to COPY only to redo the copies that failed
    Stage.CLEANUP: set(),
}
FINISHES_FROM = {Stage.SHARE, Stage.WAIT_COPY, Stage.CLEANUP}


class StageMachine(RuleBasedStateMachine):
    wave: Wave  # set by the test: one sandbox stage for every example
    crash: CrashSwitch

    @initialize()
    def distribute_one_instance(self) -> None:
        wave, sandbox = self.wave, self.wave.sandbox
        # Examples share the stage, yet each must behave the same whenever hypothesis replays it: the same
        # phase of the poll grid, the same random draws (image durations, backoff jitter), no warm caches.
        sandbox.clock.advance_to(math.ceil(sandbox.clock.now() / 3600 + 1) * 3600)
        sandbox.tick()
        sandbox.rng.seed(0)
        bootstrap.overrides = bootstrap.Overrides(now=sandbox.clock.now, draw=random.Random(0).random)
        bootstrap.reset()
        self.ec2 = wave.sandbox.client("ec2", region=wave.stage.region)
        self.instance = new_instance(wave)
        result = wave.runner.invoke("on_mgn_event", operator_event(wave, {"instanceIds": [self.instance],
                                                                          "wave": "machine"}))
        [self.job_id] = result["created"]
        self.name = f"ami-distributor-{self.job_id}"
        # the model: what was done to the job, and what has been seen of it
        self.source_failed = False
        self.copy_failures: Counter[str] = Counter()
        self.cancelled = False
        self.seen: list[dict] = [stored_job(wave, self.job_id)]
        self.source_ids: set[str] = set()
        self.copy_ids: dict[str, set[str]] = {key: set() for key in TARGETS}
        self.snapshots: set[str] = set()

    # the world moves on ----------------------------------------------------------------------
    def round(self) -> None:
        """What LocalLambda.run does once: deliver what is due, or let virtual time run to the next thing due."""
        runner, sandbox = self.wave.runner, self.wave.sandbox
        if runner.deliver_events() + runner.advance():
            return
        due = [t for t in (sandbox.scheduler.next_due(), SqsClock.next_visible_at()) if t is not None]
        if due:
            assert isinstance(sandbox.clock, VirtualClock)
            sandbox.clock.advance_to(min(due))
            sandbox.tick()

    @rule(rounds=st.integers(1, 4))
    def time_passes(self, rounds: int) -> None:
        for _ in range(rounds):
            self.round()

    @rule()
    def every_message_is_delivered_twice(self) -> None:
        self.wave.runner.duplicate_every_message = True
        try:
            self.round()
        finally:
            self.wave.runner.duplicate_every_message = False

    @rule()
    def ami_events_are_lost(self) -> None:
        sqs, url = self.wave.runner.sqs, self.wave.stage.events_queue_url
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.round()

    @rule(point=st.sampled_from(CRASH_POINTS))
    def the_function_crashes_after(self, point: str) -> None:
        crashes = len(self.crash.crashes)
        self.crash.arm(point)
        try:
            self.round()
        finally:
            self.crash.arm(None)
        event("a crash" if len(self.crash.crashes) > crashes else "no crash: the round made no such call")

    @rule(where=st.sampled_from(["source", *TARGETS]))
    def a_pending_image_fails(self, where: str) -> None:
        pending = [i for i in self.images(where) if i["State"] == "pending"]
        for image in pending:
            self.wave.sandbox.extension(ImageFidelity).fail_image(image["ImageId"], "Client.InternalError: injected")
            if where == "source":
                self.source_failed = True
            else:
                self.copy_failures[where] += 1
        self.round()

    # (no precondition reads the job: what hypothesis draws must not depend on what the system did)
    @rule(back=st.integers(1, 8))
    def a_stale_message_is_replayed(self, back: int) -> None:
        older = [j for j in self.seen if j["version"] < self.seen[-1]["version"]]
        if older:
            old = older[-min(back, len(older))]
            self.wave.runner.sqs.send_message(QueueUrl=self.wave.stage.jobs_queue_url,
                                              MessageBody=JobMessage(self.job_id, old["version"], old["token"]).body())
        self.round()

    @rule()
    def the_operator_cancels(self) -> None:
        refused = operations._cancel_one(operator_connection(self.wave), self.job_id, "machine")
        if refused is None:
            self.cancelled = True
        else:  # only a job that has ended is refused, and it says so
            status = stored_job(self.wave, self.job_id)["status"]
            assert status != "RUNNING" and f"already {status}" in refused, refused
        self.round()

    @rule()
    def the_operator_retries_a_cancelled_job(self) -> None:
        connection = operator_connection(self.wave)
        job = connection.store.get(self.job_id)
        if job.status.value == "CANCELLED":
            assert operations._retry_and_enqueue(connection, [job], None) == []  # nobody else writes a cancelled job
            self.cancelled = False
        self.round()

    # AWS state ---------------------------------------------------------------------------------
    def images(self, where: str) -> list[dict]:
        account, region = (None, self.wave.stage.region) if where == "source" else TARGETS[where]
        ec2 = self.ec2 if account is None else self.wave.sandbox.client("ec2", account_id=account, region=region)
        return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [self.name]}])["Images"]

    # invariants --------------------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        """After every rule, in this order: the record first, since the others judge what it says now."""
        self.the_record_only_moves_forward()
        self.the_job_ends_only_for_what_happened_to_it()
        self.one_source_ami_and_one_live_copy_per_target()
        self.nothing_is_cleaned_up_before_every_copy_is_available()
        self.nothing_is_shared_outside_the_allow_list()

    def the_record_only_moves_forward(self) -> None:
        job, before = stored_job(self.wave, self.job_id), self.seen[-1]
        assert job["version"] >= before["version"]
        assert job["history"][:len(before["history"])] == before["history"], "history was rewritten"
        if before["status"] in ("DONE", "FAILED") or (before["status"] == "CANCELLED" and job["status"] == "CANCELLED"):
            assert job == before, f"a {before['status']} job was written again"
        for earlier, later in zip(job["history"], job["history"][1:]):
            assert earlier["status"] not in ("DONE", "FAILED"), f"{earlier['status']} is followed by {later}"
            if earlier["status"] == "CANCELLED":  # only an operator's retry, resuming where it stopped
                assert (later["status"], later["stage"]) == ("RUNNING", earlier["stage"])
                assert later["note"].startswith("retry "), later
            elif later["status"] == "DONE":
                assert Stage(earlier["stage"]) in FINISHES_FROM and later["stage"] == "DONE", (earlier, later)
            elif later["status"] in ("FAILED", "CANCELLED"):
                assert later["stage"] == earlier["stage"], (earlier, later)
            else:
                assert Stage(later["stage"]) in FORWARD[Stage(earlier["stage"])], (earlier, later)
        if job != before:
            self.seen.append(job)

    def the_job_ends_only_for_what_happened_to_it(self) -> None:
        job = self.seen[-1]
        if job["status"] == "DONE":
            assert not self.source_failed and max(self.copy_failures.values(), default=0) < MAX_COPY_ATTEMPTS
        elif job["status"] == "FAILED":
            expected = "IMAGE_FAILED" if self.source_failed else "COPY_FAILED"
            assert (job["reason"], job["last_error"]["code"]) == (expected, "Image.failed"), job["last_error"]
            assert self.source_failed or max(self.copy_failures.values()) >= MAX_COPY_ATTEMPTS
        elif job["status"] == "CANCELLED":
            assert self.cancelled

    def one_source_ami_and_one_live_copy_per_target(self) -> None:
        source = self.images("source")
        assert len(source) <= 1
        self.source_ids |= {i["ImageId"] for i in source}
        assert len(self.source_ids) <= 1, f"{self.job_id} made source AMIs {sorted(self.source_ids)}"
        for image in source:
            self.snapshots |= {m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m}
        for key in TARGETS:
            copies = self.images(key)
            assert len([c for c in copies if c["State"] != "failed"]) <= 1, (key, copies)
            self.copy_ids[key] |= {c["ImageId"] for c in copies}
            # a failed copy is deregistered and made again, each try with its own ClientToken
            assert len(self.copy_ids[key]) <= 1 + self.copy_failures[key], (key, self.copy_ids[key])

    def nothing_is_cleaned_up_before_every_copy_is_available(self) -> None:
        gone_image = bool(self.source_ids) and not self.images("source")
        [reservation] = self.ec2.describe_instances(InstanceIds=[self.instance])["Reservations"]
        terminated = reservation["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")
        left = {s["SnapshotId"] for s in self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        if gone_image or terminated or (self.snapshots - left):
            for key in TARGETS:
                assert [c["State"] for c in self.images(key)] == ["available"], f"cleaned up before {key}'s copy"

    def nothing_is_shared_outside_the_allow_list(self) -> None:
        allowed = [{"UserId": account} for account, _ in TARGETS.values()]
        for image in self.images("source"):
            permissions = self.ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
            assert all(p in allowed for p in permissions["LaunchPermissions"]), permissions["LaunchPermissions"]
            assert image["Public"] is False
        live = {s["SnapshotId"] for s in self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        for snapshot_id in sorted(self.snapshots & live):
            permissions = self.ec2.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")
            assert all(p in allowed for p in permissions["CreateVolumePermissions"]), permissions

    def teardown(self) -> None:
        if not hasattr(self, "job_id"):
            return
        self.wave.run()  # no more faults: every message is handled and every image finishes
        self.invariants_hold()
        job = self.seen[-1]
        if self.cancelled:
            expected = ("CANCELLED", None)
        elif self.source_failed:
            expected = ("FAILED", "IMAGE_FAILED")
        elif max(self.copy_failures.values(), default=0) >= MAX_COPY_ATTEMPTS:
            expected = ("FAILED", "COPY_FAILED")
        else:
            expected = ("DONE", None)
        event(f"the job ends {job['status']} {job['reason'] or ''}".strip())  # --hypothesis-show-statistics
        assert (job["status"], job["reason"]) == expected, [(t["stage"], t["status"], t["note"]) for t in job["history"]]
        if expected[0] == "DONE":
            for key in TARGETS:
                [copy] = self.images(key)
                assert copy["State"] == "available" and copy["ImageId"] == job["copies"][key]["image_id"]
            assert self.images("source") == []  # and the source cleaned up, once every copy was there


def test_the_stage_machine_holds_its_invariants_under_faults(stage_wave):
    with crash_switch() as switch:
        StageMachine.wave, StageMachine.crash = stage_wave, switch
        run_state_machine_as_test(StageMachine, settings=settings(
            max_examples=15, stateful_step_count=10, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))  # each step runs real handlers against the sandbox
    assert switch.crashes  # the crashes did happen (at the points a round reached)
