"""The baseline: the SSM Automation runbook the service replaces, one execution per server, modelled
step by step against the same sandbox (same wave, same seed, same durations, buckets and limits).

The runbook, as DESIGN.md describes it, with its defects kept:
  1. aws:executeAwsApi CreateImage, NoReboot, a fixed name per instance (it cannot be re-run);
  2. aws:waitForAwsResourceProperty until the image is available (modelled as a DescribeImages every
     POLL_S; a `failed` image fails the execution);
  3. ModifyImageAttribute (the one target account); 4. ModifySnapshotAttribute per snapshot (a script);
  5. a script: sts:AssumeRole into the target, CopyImage with an empty KmsKeyId (the target's default key);
  6. aws:loop, at most LOOP_ITERATIONS times: DescribeImages of the copy, break when `available`, else
     aws:sleep POLL_S. A `failed` copy is not noticed;
  7. after the loop, whatever the copy's state: DeregisterImage, DeleteSnapshot (a script), TerminateInstances.
It serves one target account in one region (the distribution's first). SSM runs at most
MAX_CONCURRENT executions and starts at most one a second (StartAutomationExecution); the rest queue.
Each step takes STEP_S to start; a step whose API call is throttled or refused fails the execution
(maxAttempts 1, onFailure Abort: nothing after it runs).
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

from botocore.config import Config
from botocore.exceptions import ClientError

from automation.sandbox.throttling import Throttling

from . import cost
from .world import CONTROL_PLANE, MgnDriver, World, percentiles

MAX_CONCURRENT = 100  # SSM Automation concurrent executions (more queue as Pending)
START_INTERVAL_S = 1.0  # StartAutomationExecution: 1 per second
POLL_S = 60.0
LOOP_ITERATIONS = 60
STEP_S = 1.0  # SSM's own time between one step and the next
SCRIPT_S = 2.0  # an aws:executeScript step's billed run time
_NO_RETRIES = Config(retries={"total_max_attempts": 1})  # the step fails; SSM does not retry it


@dataclass
class Execution:
    instance_id: str
    queued_at: float
    image_id: str | None = None
    snapshot_ids: list[str] = field(default_factory=list)
    copy_id: str | None = None
    iterations: int = 0
    waits: int = 0
    status: str = "Pending"  # Pending (queued or running), Success, Failed
    error: str | None = None  # the code of the call that failed the execution
    history: list[tuple[float, str]] = field(default_factory=list)


class RunbookRun:
    def __init__(self, world: World) -> None:
        self.world, self.sandbox = world, world.sandbox
        target = world.targets[0]
        self.target = (target["accountId"], target["region"])
        self.region = world.wave.stage.region
        self.executions: list[Execution] = []
        self.queue: list[Execution] = []
        self.running = 0
        self.steps = 0
        self.script_seconds = 0.0
        self._heap: list[tuple[float, int, Execution, str]] = []
        self._order = 0
        self._clients: dict = {}
        self._seen: set[str] = set()

    def _client(self, service: str, account: str | None = None, region: str | None = None):
        key = (service, account, region)
        if key not in self._clients:
            session = self.sandbox.session(account or self.world.wave.source, region or self.region)
            self._clients[key] = session.client(service, config=_NO_RETRIES)
        return self._clients[key]

    def run(self) -> None:
        clock, driver = self.sandbox.clock, MgnDriver(self.world)
        self._calls_before = Counter(self.sandbox.api_calls)
        next_start = clock.now()
        while True:
            now = clock.now()
            driver.poll()
            self.sandbox.tick()  # what the driver's call set going at this instant (MGN picks the job up)
            for instance_id, launch in self.world.ledger.launches.items():
                if instance_id not in self._seen:  # the operator starts one execution per launched instance
                    self._seen.add(instance_id)
                    execution = Execution(instance_id, launch.at, history=[(launch.at, "QUEUED")])
                    self.executions.append(execution)
                    self.queue.append(execution)
            while self.queue and self.running < MAX_CONCURRENT and next_start <= now:
                execution = self.queue.pop(0)
                self.running += 1
                next_start = now + START_INTERVAL_S
                self._at(now, execution, "create")
            while self._heap and self._heap[0][0] <= now:
                _, _, execution, step = heapq.heappop(self._heap)
                getattr(self, f"_{step}")(execution, now)
            due = [t for t in (self.sandbox.scheduler.next_due(), self._heap[0][0] if self._heap else None,
                               next_start if self.queue and self.running < MAX_CONCURRENT else None) if t is not None]
            due = [t for t in due if t > now]
            if not due:
                return
            clock.advance_to(min(due))
            self.sandbox.tick()

    def _at(self, when: float, execution: Execution, step: str) -> None:
        self._order += 1
        heapq.heappush(self._heap, (when, self._order, execution, step))

    def _step(self, execution: Execution, now: float, stage: str, script: bool = False) -> None:
        self.steps += 1
        self.script_seconds += SCRIPT_S if script else 0.0
        if not execution.history or execution.history[-1][1] != stage:
            execution.history.append((now, stage))

    def _end(self, execution: Execution, now: float, status: str) -> None:
        execution.status = status
        execution.history.append((now, "DONE" if status == "Success" else "FAILED"))
        self.running -= 1

    def _call(self, execution: Execution, now: float, action) -> dict | None:
        try:
            return action()
        except ClientError as error:
            execution.error = error.response.get("Error", {}).get("Code", "Unknown")
            self._end(execution, now, "Failed")
            return None

    # the steps ---------------------------------------------------------------------------------
    def _create(self, execution: Execution, now: float) -> None:
        self._step(execution, now, "CREATE_IMAGE")
        ec2 = self._client("ec2")
        made = self._call(execution, now, lambda: ec2.create_image(
            InstanceId=execution.instance_id, Name=f"cutover-{execution.instance_id}", NoReboot=True))
        if made:
            execution.image_id = made["ImageId"]
            self._at(now + STEP_S, execution, "wait_image")

    def _wait_image(self, execution: Execution, now: float) -> None:
        if execution.waits == 0:
            self._step(execution, now, "WAIT_IMAGE")
        execution.waits += 1
        ec2 = self._client("ec2")
        found = self._call(execution, now, lambda: ec2.describe_images(ImageIds=[execution.image_id]))
        if found is None:
            return
        image = found["Images"][0]
        if image["State"] == "available":
            execution.snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
            self._at(now + STEP_S, execution, "share")
        elif image["State"] == "failed":
            self._end(execution, now, "Failed")
        else:
            self._at(now + POLL_S, execution, "wait_image")

    def _share(self, execution: Execution, now: float) -> None:
        self._step(execution, now, "SHARE")
        ec2, account = self._client("ec2"), self.target[0]
        if self._call(execution, now, lambda: ec2.modify_image_attribute(
                ImageId=execution.image_id, LaunchPermission={"Add": [{"UserId": account}]})) is None:
            return
        self._step(execution, now, "SHARE", script=True)
        for snapshot_id in execution.snapshot_ids:
            if self._call(execution, now, lambda s=snapshot_id: ec2.modify_snapshot_attribute(
                    SnapshotId=s, Attribute="createVolumePermission", OperationType="add",
                    UserIds=[account])) is None:
                return
        self._at(now + STEP_S, execution, "copy")

    def _copy(self, execution: Execution, now: float) -> None:
        self._step(execution, now, "COPY", script=True)
        account, region = self.target
        sts = self._client("sts")
        if self._call(execution, now, lambda: sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/{self.world.wave.stage.env['CROSS_ACCOUNT_ROLE_NAME']}",
                RoleSessionName=f"runbook-{execution.instance_id}",
                ExternalId=self.world.wave.stage.env.get("CROSS_ACCOUNT_EXTERNAL_ID", ""))) is None:
            return
        target_ec2 = self._client("ec2", account, region)
        made = self._call(execution, now, lambda: target_ec2.copy_image(
            SourceImageId=execution.image_id, SourceRegion=self.region, Name=f"cutover-{execution.instance_id}",
            Encrypted=True, KmsKeyId=""))
        if made:
            execution.copy_id = made["ImageId"]
            self._at(now + STEP_S, execution, "poll_copy")

    def _poll_copy(self, execution: Execution, now: float) -> None:
        self._step(execution, now, "WAIT_COPY")  # the loop's DescribeImages step
        execution.iterations += 1
        target_ec2 = self._client("ec2", *self.target)
        found = self._call(execution, now, lambda: target_ec2.describe_images(ImageIds=[execution.copy_id]))
        if found is None:
            return
        if found["Images"][0]["State"] == "available" or execution.iterations >= LOOP_ITERATIONS:
            self._at(now + STEP_S, execution, "cleanup")
        else:
            self.steps += 1  # the aws:sleep step
            self._at(now + POLL_S, execution, "poll_copy")

    def _cleanup(self, execution: Execution, now: float) -> None:
        self._step(execution, now, "CLEANUP")
        ec2 = self._client("ec2")
        if self._call(execution, now, lambda: ec2.deregister_image(ImageId=execution.image_id)) is None:
            return
        self._step(execution, now, "CLEANUP", script=True)
        for snapshot_id in execution.snapshot_ids:
            if self._call(execution, now, lambda s=snapshot_id: ec2.delete_snapshot(SnapshotId=s)) is None:
                return
        self._step(execution, now, "CLEANUP")
        if self._call(execution, now, lambda: ec2.terminate_instances(InstanceIds=[execution.instance_id])) is None:
            return
        self._end(execution, now, "Success")

    # the report ------------------------------------------------------------------------------
    def report(self) -> tuple[dict, list[list[tuple[float, str]]]]:
        world, sandbox, t0 = self.world, self.sandbox, self.world.started_at
        images = world.ledger.images
        copies_available = {e.instance_id for e in self.executions
                            if e.copy_id and images.get(e.copy_id) and images[e.copy_id].available is not None
                            and images[e.copy_id].failed is None}
        done = sum(1 for e in self.executions if e.status == "Success" and e.instance_id in copies_available)
        finished = [e for e in self.executions if e.status != "Pending"]
        calls = Counter(sandbox.api_calls) - self._calls_before
        api_calls = {op: n for op, n in sorted(calls.items())
                     if op.split(":")[0] in CONTROL_PLANE and not op.startswith("mgn:")}  # MGN: the operator's
        per_ami = max(1, done)
        dollars = cost.runbook_cost(steps=self.steps, script_seconds=self.script_seconds)
        invariants = world.ledger.invariants("cutover-", 1, {self.target[0]}, set())
        lags, ratios = [], []
        for execution in self.executions:
            stages = dict((stage, at) for at, stage in reversed(execution.history))  # first time per stage
            for image_id, next_stage in ((execution.image_id, "SHARE"), (execution.copy_id, "CLEANUP")):
                record = images.get(image_id or "")
                if record and record.available is not None and next_stage in stages:
                    lags.append(stages[next_stage] - record.available)
                    ratios.append((stages[next_stage] - record.available) / max(1e-9, record.available - record.started))
        ends = [e.history[-1][0] for e in self.executions if e.history[-1][1] in ("DONE", "FAILED")]
        throttled = sum(sandbox.extension(Throttling).throttled.values())
        bound = world.bound(world.targets[:1], {e.instance_id for e in self.executions
                                                 if e.status == "Success" and e.instance_id in copies_available})
        result = {
            "servers": world.options.servers,
            "targets": 1,
            "jobs": len(self.executions),
            "done": done,
            "failed": len(self.executions) - done,
            "lost": len(world.ledger.launches) - len(finished),
            **invariants,
            "makespan_s": round(max(ends, default=t0) - t0, 3),
            "lower_bound_s": bound["lower_bound_s"],
            "lower_bound_parts_s": bound["parts"],
            "api_calls": api_calls,
            "api_calls_total": sum(api_calls.values()),
            "api_calls_per_ami": round(sum(api_calls.values()) / per_ami, 3),
            "automation_steps": self.steps,
            "invocations_per_ami": round(self.steps / per_ami, 3),  # SSM bills steps, as Lambda bills invocations
            "sqs_requests_per_ami": 0.0,
            "dynamodb_writes_per_ami": 0.0,
            "throttled_calls": throttled,
            "throttled_share": round(throttled / max(1, sum(api_calls.values())), 4),
            "throttle_failures": sum(1 for e in self.executions if e.error == "RequestLimitExceeded"),
            "copies_refused_for_concurrency": sandbox.extension(Throttling).copies_refused,
            "detection_lag_s": percentiles(lags),
            "detection_lag_ratio": percentiles(ratios),
            "cost_usd": {k: round(v, 6) for k, v in dollars.items()},
            "cost_usd_per_1000_amis": round(sum(dollars.values()) * 1000 / per_ami, 4),
        }
        timelines = [[(at - t0, stage) for at, stage in e.history] for e in self.executions]
        return result, timelines
