"""The fault profiles' machinery: what goes wrong in a simulated wave, injected where AWS (or Lambda, or an
operator) would make it go wrong, never inside the service's own code.

Where each fault enters:
- in the sandbox, ahead of moto (`AwsFaults`, the first extension to see a request), for the service's
  own calls only: EC2 throttling beyond the token buckets, KMS refusing a copy the target's key, the
  jobs table throttled in brief windows;
- in AWS's state: one target's role stops trusting the distributor (another ExternalId, as a StackSet
  update gone wrong would leave it) for a window, then the operator puts the trust back;
- in Lambda (`LocalLambda.invoke`, wrapped): an `advance_jobs` invocation dies after its k-th AWS call
  (after a side effect and before the state write, mid-batch, or after every write but before the event
  source deletes the batch), or outlives its visibility timeout, so that SQS hands its messages to a
  second consumer that runs while the first one still holds them; a dead function's next invocation is
  a cold start (fresh clients and sessions, so a fresh AssumeRole);
- in SQS and EventBridge: duplicate deliveries, lost AMI state-change events (pipeline.py draws those);
- in the operator's hands (`after_wave`): once the wave is idle, the denials are fixed, every dead letter
  is replayed (`dlq replay`, automation/operations.py) and the jobs that failed for a fixed denial are
  retried (`retry`), then the wave runs until idle again.

What the service does about a denial (the decision, see chalicelib/domain/errors.py: AccessDenied,
UnauthorizedOperation are DENIED, "a person must fix it"): the job ends FAILED at once, with the reason
(ASSUME_ROLE_DENIED, COPY_REFUSED) and AWS's error, and nothing is cleaned up, so the source AMI and the
copies already made stay. It does not retry a denial on its own: a denial that an operator must fix would
only be retried until the retries ran out, hiding the error for that long. Once fixed, `retry --failed`
resumes each job at the stage it failed in (copies already made are kept: their ClientToken and the job's
record say so), and the job ends DONE. The invariant checker holds the service to both halves: every
FAILED job names its reason and AWS's error, and no job is lost or duplicated across the retry.

Every draw comes from a `random.Random` keyed by the seed and what it is about: the server (its hostname,
not an AWS ID: moto's IDs are seeded, but not every run of a process draws them alike), the job's version
and how many times that message was seen, an image's kind and target, an operation. So a seed replays exactly.
"""
from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import boto3
from botocore.handlers import BUILTIN_HANDLERS

from automation.local_lambda import InvocationCrashed
from automation.sandbox.core import SERVICE_USER_AGENT
from automation.sandbox.wire import AwsRequest, AwsResponse, ec2_error, request_id
from chalicelib import bootstrap

from .options import Faults

if TYPE_CHECKING:
    from .ledger import Ledger
    from .pipeline import PipelineRun
    from .world import World

CRASH_AFTER_CALLS = 30  # a crash point is drawn among an invocation's first calls; one that makes fewer dies at its end
SECOND_CONSUMER_AFTER_CALLS = 8  # a slow invocation is overtaken within its first calls (reads, look-ahead)
DENIAL_STARTS_H, DENIAL_LASTS_H = 0.5, 1.0  # the broken trust policy, in hours of AWS time (time_scale applies)
TABLE_THROTTLE_FOR_S = 20.0  # brief: shorter than Lambda's async retry delay (60 s), so intake's retry gets through
OPERATOR_ROUNDS = 3  # replay and retry, run, and again while there is something to replay or retry
FIXED_REASONS = ("ASSUME_ROLE_DENIED", "COPY_REFUSED")  # what the operator's fixes make retryable


def draws(seed: int, *about: object) -> random.Random:
    """The random source of one fault decision, keyed by what it is about (not by call order)."""
    return random.Random("|".join(map(str, (seed, *about))))


def event_lost(seed: int, event: dict, rate: float, ledger: "Ledger") -> bool:
    """EventBridge drops this AMI state-change delivery (keyed by what the image is, its state and the bus)."""
    if rate <= 0:
        return False
    detail = event.get("detail") or {}
    record = ledger.images.get(detail.get("ImageId", ""))
    key = (record.key if record else detail.get("ImageId"), detail.get("State"), event.get("account"),
           event.get("region"))
    return draws(seed, "event-lost", *key).random() < rate


# ---- botocore hooks (tests/integration/faults.py uses these too) ------------------------------------
@contextlib.contextmanager
def builtin_handler(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Registered for every botocore session made from now on (the handlers' clients, target sessions)."""
    entry = (event, handler)
    BUILTIN_HANDLERS.append(entry)
    boto3.DEFAULT_SESSION = None
    bootstrap.reset()
    try:
        yield
    finally:
        BUILTIN_HANDLERS.remove(entry)
        boto3.DEFAULT_SESSION = None
        bootstrap.reset()


# ---- in the sandbox, ahead of moto -------------------------------------------------------------------
@dataclass
class AwsFaults:
    """A sandbox extension: refuses some of the service's requests as AWS would refuse them."""

    faults: Faults
    seed: int
    started_at: float
    what_image: Callable[[str], str] = str  # an image ID -> what it is (the ledger's key)
    kms_fixed: bool = False
    injected: dict[str, int] = field(default_factory=dict)
    _throttle_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def install(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def uninstall(self) -> None:
        pass

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if not request.service or SERVICE_USER_AGENT not in request.headers.get("user-agent", ""):
            return None  # only the service's calls: the runner, the ledger and the operator see AWS as it is
        if request.service == "ec2":
            if self.faults.throttle_rate and self._throttled(request):
                self._count("ec2_throttled")
                return ec2_error("RequestLimitExceeded", "Request limit exceeded.", status=503)
            if request.action == "CopyImage" and self.faults.kms_denied_rate and not self.kms_fixed:
                source, key = request.form.get("SourceImageId", ""), request.form.get("KmsKeyId", "")
                where = f"{request.account_id}/{request.region}"
                draw = draws(self.seed, "kms-denied", self.what_image(source), where).random()
                if draw < self.faults.kms_denied_rate:
                    self._count("kms_denied")
                    # the target's key policy lets its role use the key only through EC2 with CreateGrant for
                    # AWS resources; a policy missing that statement refuses the re-encrypting copy
                    return ec2_error("UnauthorizedOperation", f"You are not authorized to perform this operation. "
                                     f"kms:CreateGrant on {key} is not allowed by its key policy.", status=403)
        if request.service == "dynamodb" and self.faults.table_throttled_share and self._table_window():
            self._count("table_throttled")
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                               "message": "The level of configured provisioned throughput for the table was exceeded."})
            return AwsResponse(400, body.encode(), {"Content-Type": "application/x-amz-json-1.0",
                                                    "x-amzn-RequestId": request_id()})
        return None

    def _throttled(self, request: AwsRequest) -> bool:
        key = (request.account_id, request.region, request.action)
        self._throttle_counts[key] = count = self._throttle_counts.get(key, 0) + 1
        return draws(self.seed, "throttle", *key, count).random() < self.faults.throttle_rate

    def _table_window(self) -> bool:
        """Windows of a few seconds in which the table refuses everything, one at a seeded instant of each period
        (virtual seconds: SQS and Lambda's retries do not shrink with time_scale)."""
        period = TABLE_THROTTLE_FOR_S / self.faults.table_throttled_share
        elapsed = self.sandbox.clock.now() - self.started_at
        index = int(elapsed // period)
        start = index * period + draws(self.seed, "table-throttle", index).uniform(0, period - TABLE_THROTTLE_FOR_S)
        return start <= elapsed < start + TABLE_THROTTLE_FOR_S

    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1


# ---- in Lambda ---------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What befalls one invocation: die after call `crash_at`, or be overtaken after call `overtaken_at`."""

    records: list[dict]
    crash_at: int | None = None
    overtaken_at: int | None = None
    calls: int = 0


class FaultInjector:
    """Installs a profile's faults on a world and its pipeline run; `after_wave` plays the operator."""

    def __init__(self, world: "World", run: "PipelineRun") -> None:
        self.world, self.run, self.faults = world, run, world.options.fault_model
        self.seed = world.options.seed
        self.runner = run.runner
        self.log: list[dict] = []  # what was injected, when and on which jobs: printed with a broken invariant
        self.operator = {"dead_letters_replayed": 0, "dead_letters_dropped": 0, "jobs_retried": 0, "rounds": 0}
        self.aws = AwsFaults(self.faults, self.seed, world.started_at, self._what_image)
        self._occurrences: dict[tuple, int] = {}
        self._plan: Plan | None = None
        self._nested = False
        self._counts = {"crashes": 0, "overtaken": 0, "duplicates": 0, "denial_windows": 0}

    @contextlib.contextmanager
    def installed(self) -> Iterator["FaultInjector"]:
        sandbox = self.world.sandbox
        sandbox.extensions.insert(0, self.aws)
        self.aws.install(sandbox)
        original_invoke = self.runner.invoke
        self.runner.invoke = self._invoke(original_invoke)  # instance attribute: gone with this runner
        if self.faults.duplicate_rate:
            self.runner.duplicate_when = self._duplicate
        if self.faults.assume_role_denied:
            self._schedule_denial()
        try:
            with builtin_handler("after-call", self._after_call):
                yield self
        finally:
            del self.runner.invoke
            self.runner.duplicate_when = None
            sandbox.extensions.remove(self.aws)

    def counts(self) -> dict[str, int]:
        return dict(sorted({**self._counts, **self.aws.injected}.items()))

    # SQS duplicates -------------------------------------------------------------------------
    def _what_image(self, image_id: str) -> str:
        record = self.world.ledger.images.get(image_id)
        return record.key if record else image_id

    def _what_message(self, body: str, receives: object = "") -> tuple:
        """(server, job version, receive count, how many such deliveries came before): the message's identity."""
        try:
            message = json.loads(body)
            instance_id, version = str(message["jobId"]).rsplit("-", 1)[0], message["version"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return ("malformed", body, receives)
        launch = self.world.ledger.launches.get(instance_id)
        key = (launch.hostname if launch else instance_id, version, receives)
        self._occurrences[key] = self._occurrences.get(key, 0) + 1
        return (*key, self._occurrences[key])

    def _duplicate(self, message: dict) -> bool:
        about = self._what_message(message["Body"], "duplicate")
        if draws(self.seed, "duplicate", *about).random() < self.faults.duplicate_rate:
            self._counts["duplicates"] += 1
            return True
        return False

    # crashes and slow consumers --------------------------------------------------------------
    def _invoke(self, original: Callable[[str, dict], Any]) -> Callable[[str, dict], Any]:
        def invoke(function_name: str, event: dict) -> Any:
            if self._nested or function_name != "advance_jobs":
                return original(function_name, event)
            self._plan = plan = self._plan_for(event)
            try:
                result = original(function_name, event)
                if plan.crash_at is not None:  # fewer calls than the crash point: it dies after its last write
                    self._crash(plan, "after its last call, before the event source deletes the batch")
                return result
            except InvocationCrashed:
                bootstrap.reset()  # the execution environment died: the next invocation is a cold start
                raise
            finally:
                self._plan = None

        return invoke

    def _plan_for(self, event: dict) -> Plan:
        records = event.get("Records") or []
        # keyed by the batch itself (its messages and how often each was received), not by call order
        key = sorted(self._what_message(r["body"], r.get("attributes", {}).get("ApproximateReceiveCount", ""))
                     for r in records)
        rng = draws(self.seed, "invocation", key)
        plan = Plan(records)
        if rng.random() < self.faults.crash_rate:
            plan.crash_at = rng.randint(1, CRASH_AFTER_CALLS)
        elif rng.random() < self.faults.slow_consumer_rate:
            plan.overtaken_at = rng.randint(1, SECOND_CONSUMER_AFTER_CALLS)
        return plan

    def _after_call(self, event_name: str = "", **_: Any) -> None:
        plan = self._plan
        if plan is None or self._nested:
            return
        plan.calls += 1
        if plan.calls == plan.crash_at:
            self._crash(plan, f"after call {plan.calls} ({event_name.split('.', 1)[-1]})")
        if plan.calls == plan.overtaken_at:
            self._second_consumer(plan, event_name.split(".", 1)[-1])

    def _crash(self, plan: Plan, where: str) -> None:
        plan.crash_at = None
        self._counts["crashes"] += 1
        self._note("crash", f"advance_jobs died {where}", plan.records)
        raise InvocationCrashed(f"injected crash {where}")

    def _second_consumer(self, plan: Plan, after: str) -> None:
        """The invocation outlived its visibility timeout: SQS gives its messages to another consumer, which
        takes them while this one still holds them (its step and write happen first, here)."""
        self._counts["overtaken"] += 1
        self._note("overtaken", f"advance_jobs overtaken after call {plan.calls} ({after})", plan.records)
        self._nested = True
        try:
            sqs, url = self.runner.sqs, self.world.wave.stage.jobs_queue_url
            for record in plan.records:
                with contextlib.suppress(Exception):  # the message may be gone already (a stale one deleted)
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=record["receiptHandle"],
                                                  VisibilityTimeout=0)
            self.runner.advance()
        finally:
            self._nested = False

    # a denial for a window --------------------------------------------------------------------
    def _schedule_denial(self) -> None:
        stage, sandbox = self.world.wave.stage, self.world.sandbox
        account = self.world.targets[-1]["accountId"]
        iam = sandbox.client("iam", account_id=account)
        role_name = stage.env["CROSS_ACCOUNT_ROLE_NAME"]
        trusted = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
        broken = json.loads(json.dumps(trusted))
        for statement in broken["Statement"]:
            statement.setdefault("Condition", {}).setdefault("StringEquals", {})["sts:ExternalId"] = "not-this-stage"
        scale = self.world.options.time_scale
        start = self.world.started_at + DENIAL_STARTS_H * 3600 * scale

        def deny() -> None:
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(broken))
            self._counts["denial_windows"] += 1
            self._note("denial", f"role {role_name} in {account} trusts another ExternalId", [])
            bootstrap.reset()  # functions redeployed with it: their next AssumeRole meets the broken trust

        def fix() -> None:
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trusted))
            self._note("fixed", f"role {role_name} in {account} trusts the distributor again", [])
            self._operator_round(("ASSUME_ROLE_DENIED",), replay=False)  # and retries what the denial failed

        sandbox.scheduler.at(start, deny)
        sandbox.scheduler.at(start + DENIAL_LASTS_H * 3600 * scale, fix)

    # the operator, once the wave is idle -------------------------------------------------------
    def after_wave(self) -> None:
        if not self.faults.operator_at_the_end:
            return
        self.aws.kms_fixed = True  # the target key policies are fixed (the role's trust was, at its window's end)
        for _ in range(OPERATOR_ROUNDS):
            if not self._operator_round(FIXED_REASONS, replay=self.faults.dlq_replay):
                return
            self.run.run()

    def _operator_round(self, reasons: tuple[str, ...], replay: bool) -> bool:
        """`dlq replay` (every dead letter) and `retry` of the jobs FAILED for `reasons`, as the operator
        commands do them (automation/operations.py). Returns whether anything was put back to work."""
        from automation import operations

        connection = self._connection()
        now, who = self.world.sandbox.clock.now(), "simulated-operator"
        moved = 0
        if replay:
            dlq = connection.dead_letters()
            outcome = operations._replay(connection, dlq, set(), None, False, False, now=now, who=who)
            if outcome["to_move"]:
                operations._move_all(connection, dlq, wait=False)
            moved = len(outcome["to_move"]) + len(outcome["moved"]) + len(outcome["retried"])
            self.operator["dead_letters_replayed"] += moved
            self.operator["dead_letters_dropped"] += len(outcome["dropped"])
        fixed = self._fixed_failures(connection, reasons)
        if fixed:
            operations._retry_and_enqueue(connection, fixed, None, now=now, who=who)
        self.operator["jobs_retried"] += len(fixed)
        if moved or fixed:
            self.operator["rounds"] += 1
            self._note("operator", f"replayed {moved} dead letters, retried {len(fixed)} jobs",
                       [{"body": json.dumps({"jobId": j.job_id})} for j in fixed])
        return bool(moved or fixed)

    def _fixed_failures(self, connection: Any, reasons: tuple[str, ...]) -> list:
        from chalicelib.domain.model import Status

        jobs = [connection.store.get(j["job_id"]) for j in self.world.wave.jobs()
                if j["status"] == "FAILED" and j.get("reason") in reasons]
        return [j for j in jobs if j is not None and j.status is Status.FAILED]

    def _connection(self) -> Any:
        from automation.operator_aws import StageConnection
        from chalicelib import config
        from chalicelib.adapters.job_store import DynamoJobStore
        from chalicelib.adapters.queue import JobQueue

        stage, sandbox = self.world.wave.stage, self.world.sandbox
        settings = config.load(stage.env)
        dynamodb, sqs = sandbox.client("dynamodb", region=stage.region), sandbox.client("sqs", region=stage.region)
        return StageConnection("simulated", settings, DynamoJobStore(dynamodb, settings.table_name,
                                                                     settings.job_ttl_days),
                               JobQueue(sqs, settings.queue_url), sqs)

    # the fault log -------------------------------------------------------------------------------
    def _note(self, kind: str, what: str, records: list[dict]) -> None:
        jobs = []
        for record in records:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                jobs.append(json.loads(record["body"]).get("jobId"))
        self.log.append({"at": self.world.sandbox.clock.now(), "kind": kind, "what": what, "jobs": jobs})
