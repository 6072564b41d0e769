"""The use cases the handlers call: take in launches, advance a job a step, wake a waiting job.

The message protocol (why no job is lost and no work is done twice):
- A job item carries `version` and `token`; a message names the (version, token) it expects.
- Advancing: read the job; a message for an older version, or the right version with another
  token, is stale and dropped; one for a newer version is early (its sender has not written yet)
  and is retried by SQS. A current message does one step (the stages that need no waiting, back to
  back), then SENDS the follow-up message (version + 1, a fresh token) and only then WRITES the job,
  conditional on the version read. A crash in between leaves an orphan message that will be stale,
  and the job at the old version with its old message still in SQS: that message is redelivered and
  the step (idempotent) is done again. A lost race leaves only an orphan. So every running job always
  has exactly one message that can advance it: in the queue, in flight, or in the DLQ.
- A current message that comes before the job's wake time (SQS delays 900 s at most) is sent on
  again unchanged, a hop: no AWS call, no write.
- Waking (the AMI event): the step runs in the event's invocation, under the same send-then-write
  rule, as if it held the job's message; that message then goes stale, or stays as the backstop.
  Handing on (a copy slot given back) is the same: after its own write, the giver runs the step of
  the first copy in the slot's line.
- Intake writes the job first (conditional put) and then sends; a redelivered event finds the job
  and re-sends its first message, which at worst duplicates it (the duplicate goes stale).
- Every stage is idempotent: CreateImage by name, CopyImage by ClientToken, shares and cleanup
  treat "already so" as done.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .adapters.copy_slots import DynamoCopySlots
from .adapters.ec2 import Ec2Images, Image
from .adapters.event_bus import EventBus
from .adapters.job_store import DynamoJobStore, JobExists, StaleJob
from .adapters.mgn import MgnLaunches
from .adapters.publishing import TargetPublisher
from .adapters.queue import JobQueue
from .adapters.sessions import CrossAccountSessions
from .config import Settings
from .domain import key_policy, publishing
from .domain.backoff import SQS_MAX_DELAY_S
from .domain.errors import AwsError, Kind
from .domain.model import Distribution, Job, Reason, Stage, Status, Target, TargetCopy
from .domain.polling import Expected
from .events import (AmiStateChange, DistributeRequest, InvalidEvent, JobMessage, LaunchResult,
                     parse_ami_event, parse_intake, shown)

logger = Logger(service="ami-distributor")
metrics = Metrics(namespace="AmiDistributor", service="ami-distributor")

BUSY_SHARE_OF_COPY = 0.5  # a copy refused a slot asks again after this share of a copy (doubling)...
BUSY_WAIT_MAX_S = 3600  # ...and after an hour at most (a copy left off a full line has only these asks)
COPY_SLOT_LEASE = 3  # a copy slot not given back within this many expected copy times is taken back
FIRST_STEP_GRID_DIVISOR = 6  # a new job's first step falls on a grid this many times finer than the poll grid
HOP_SLACK_S = 1  # a message due within this of the job's wake time does the step (delays are whole seconds)
# MGN publishes no figure for its post-launch actions (SSM documents); the sandbox models 300 s
POST_LAUNCH_EXPECTED = Expected(300, 0)


class EarlyMessage(Exception):
    """The message names a version its sender has not written yet: SQS will deliver it again."""


@dataclass
class Ports:
    """What the use cases need from the outside world, wired in bootstrap.py."""

    store: DynamoJobStore
    copy_slots: DynamoCopySlots
    queue: JobQueue
    source_ec2: Ec2Images
    targets: CrossAccountSessions
    mgn: MgnLaunches
    events: EventBus
    now: Callable[[], float]
    draw: Callable[[], float]  # uniform [0, 1): backoff jitter


def sqs_delay(seconds: float) -> int:
    return max(0, min(SQS_MAX_DELAY_S, math.ceil(seconds)))


def new_token(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class Intake:
    def __init__(self, settings: Settings, ports: Ports) -> None:
        self.settings, self.ports = settings, ports

    def handle(self, event: Any, request_id: str = "") -> dict:
        try:
            request = parse_intake(event)
            jobs = self._jobs_for(request)
        except InvalidEvent as error:
            logger.error("event rejected", extra={"error": str(error)})
            metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
            return {"rejected": str(error)}
        if not jobs:
            return {"created": [], "existing": []}
        created, existing, to_send = [], [], []
        for job in jobs:
            job.token = new_token(job.job_id, 1, request_id)
            try:
                self.ports.store.create(job)
                created.append(job.job_id)
                to_send.append(job)
            except JobExists:
                existing.append(job.job_id)
                stored = self.ports.store.get(job.job_id)
                if stored and stored.version == 1 and stored.status is Status.RUNNING:
                    to_send.append(stored)  # our earlier try may have died before sending
        # the first step looks at the launch and the instance's volumes: on a grid, the jobs launched within the
        # same few seconds take it in one batch, with one DescribeVolumes (Advancer.look_ahead). A sixth of the
        # poll grid (10 s by default): the launch of a whole MGN job in one go would overrun CreateImage's bucket.
        grid = max(1, self.settings.poll.grid_s // FIRST_STEP_GRID_DIVISOR)
        first_step = sqs_delay(math.ceil(self.ports.now() / grid) * grid - self.ports.now())
        self.ports.queue.send([(JobMessage(j.job_id, j.version, j.token), first_step) for j in to_send])
        metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=len(created))
        logger.info("jobs taken in", extra={"jobs_created": created, "jobs_existing": existing})
        return {"created": created, "existing": existing}

    def _jobs_for(self, request: LaunchResult | DistributeRequest) -> list[Job]:
        now = self.ports.now()
        if (request.account, request.region) != self.settings.home:
            # the stage's bus takes its targets' forwarded AMI events: any of them could put a request on it
            raise InvalidEvent(f"event from account {request.account} in {request.region}: this stage acts only on "
                               f"launches and requests of its own account and region ({'/'.join(self.settings.home)})")
        if isinstance(request, LaunchResult):
            if not request.succeeded:
                logger.warning("launch failed; no job", extra={"source_server_id": request.source_server_id,
                                                                "mgn_job_id": request.mgn_job_id, "state": request.state})
                metrics.add_metric(name="LaunchesFailed", unit=MetricUnit.Count, value=1)
                return []
            if request.launch_type not in self.settings.launch_types:
                logger.info("launch type not distributed by this stage", extra={"state": request.state})
                return []
            try:
                instance_id = self.ports.mgn.launched_instance(request.mgn_job_id, request.source_server_id)
            except AwsError as error:
                if error.kind is not Kind.GONE:
                    raise  # throttled, say: raised, so Lambda tries the event again
                raise InvalidEvent(f"MGN knows no launch of {request.source_server_id} in {request.mgn_job_id}: "
                                   f"{error}") from None
            if not instance_id:
                raise InvalidEvent(f"MGN job {request.mgn_job_id} launched no instance for {request.source_server_id}")
            distribution = self.settings.distribution
            return [self._new_job(instance_id, request.mgn_job_id, distribution, request.region,
                                  request.account, now, source_server_id=request.source_server_id,
                                  mgn_job_id=request.mgn_job_id, launch_type=request.launch_type)]
        distribution = narrow(self.settings, request.distribution)
        return [self._new_job(instance_id, request.wave, distribution, request.region, request.account, now)
                for instance_id in request.instance_ids]

    def _new_job(self, instance_id: str, wave: str, distribution: Distribution, region: str, account: str,
                 now: float, **launch: Any) -> Job:
        first = Stage.WAIT_LAUNCH if (self.settings.wait_for_post_launch_actions and launch) else Stage.CREATE_IMAGE
        job = Job(job_id=Job.make_id(instance_id, distribution), wave=wave, source_account=account, region=region,
                  instance_id=instance_id, distribution=distribution, stage=first, created_at=now, updated_at=now,
                  **launch)
        job.move_to(first, now, "created")
        return job


def narrow(settings: Settings, spec: dict | None) -> Distribution:
    """An event may ask for part of the stage's distribution, never for more."""
    allowed = settings.distribution
    if spec is None:
        return allowed
    for key in ("targets", "organizationArns", "organizationalUnitArns"):
        if not isinstance(spec.get(key) or [], list):
            raise InvalidEvent(f"distribution.{key} must be a list, not {shown(spec[key])}")
    targets = []
    for item in spec.get("targets") or []:
        if not isinstance(item, dict):
            raise InvalidEvent("distribution.targets entries must be objects")
        account, region, copy = item.get("accountId"), item.get("region"), item.get("copy", True)
        match = next((t for t in allowed.targets if t.account_id == account and t.region == region), None)
        if match is None:
            raise InvalidEvent(f"target {shown(account)}/{shown(region)} is not in this stage's allow-list")
        if not isinstance(copy, bool):
            raise InvalidEvent(f"distribution.targets[].copy must be true or false, not {shown(copy)}")
        targets.append(replace(match, copy=copy and match.copy))
    shared_only = [t.key for t in targets if not t.copy]
    if allowed.cleanup.any and shared_only:
        raise InvalidEvent(f"this stage cleans up, which would remove the AMI shared with {shared_only}: "
                           f"they must take a copy")
    for key, permitted in (("organizationArns", allowed.organization_arns),
                           ("organizationalUnitArns", allowed.organizational_unit_arns)):
        outside = [a for a in spec.get(key) or [] if a not in permitted]
        if outside:
            raise InvalidEvent(f"distribution.{key} {shown(outside)} are not in this stage's allow-list")
    if not targets and not spec.get("organizationArns") and not spec.get("organizationalUnitArns"):
        raise InvalidEvent("distribution names no target")
    return Distribution(tuple(targets), tuple(spec.get("organizationArns") or ()),
                        tuple(spec.get("organizationalUnitArns") or ()), allowed.cleanup, allowed.reencrypt_key_id)


class Advancer:
    def __init__(self, settings: Settings, ports: Ports) -> None:
        self.settings, self.ports = settings, ports
        self._reported: dict[str, str] = {}  # image states an AMI event reported to this step
        self._seen: dict[str, Image] = {}  # images looked at for the whole batch (look_ahead)
        self._read: dict[str, Job] = {}  # jobs look_ahead read, each for its one message in the batch
        self._volumes: dict[str, list] = {}  # the volumes of the batch's instances about to be imaged (look_ahead)
        self._freed: list[tuple[str, str]] = []  # (destination, its first waiter) for each slot this step gave back
        self._stages: dict[Stage, Callable[[Job], int | None]] = {
            Stage.WAIT_LAUNCH: self._wait_launch,
            Stage.CREATE_IMAGE: self._create_image,
            Stage.WAIT_IMAGE: self._wait_image,
            Stage.REENCRYPT: self._reencrypt,
            Stage.WAIT_REENCRYPT: self._wait_reencrypt,
            Stage.SHARE: self._share,
            Stage.COPY: self._copy,
            Stage.WAIT_COPY: self._wait_copy,
            Stage.PUBLISH: self._publish,
            Stage.CLEANUP: self._cleanup,
        }

    def handle(self, message: JobMessage, delivery_id: str) -> str:
        """Advance the message's job by one stage; returns what happened (for logs and tests)."""
        # look_ahead's read, a moment old, is as good as a fresh one: the write is conditional on its version
        job = self._read.pop(message.job_id, None) or self.ports.store.get(message.job_id)
        if job is None:
            raise EarlyMessage(f"job {message.job_id} does not exist (yet)")
        if job.status.terminal and not (job.announce_pending and message.version >= job.version):
            return f"dropped: job is {job.status.value}"
        if message.version > job.version:
            raise EarlyMessage(f"message for version {message.version}, job is at {job.version}")
        if message.version < job.version or message.token != job.token:
            return "dropped: stale message"
        if job.status.terminal:
            return self._announce(job, delivery_id)
        now = self.ports.now()
        if _not_yet_due(job, now):
            # SQS delays a message 900 s at most: a longer wait goes on as a hop, the same message again,
            # with no AWS call and no write (a duplicate of it is harmless, like any duplicate delivery)
            self.ports.queue.send([(message, sqs_delay(self.settings.poll.hop(now, job.next_wake_at) - now))])
            return f"waiting {job.stage.value} until {job.next_wake_at:.0f}"
        return self._advance(job, delivery_id)

    def look_ahead(self, messages: list[JobMessage]) -> None:
        """One DescribeImages per account and region for the images this batch's jobs are due to look at, and
        one DescribeVolumes for the instances its jobs are about to image, instead of one per job (the poll grid
        brings many jobs' looks into one batch). Best effort: a job not served here looks for itself."""
        self._seen, self._read, self._volumes = {}, {}, {}
        due: dict[tuple[str, str] | None, dict[str, str]] = defaultdict(dict)  # where -> image -> job
        to_image: list[str] = []
        now = self.ports.now()
        once = {job_id for job_id, n in Counter(m.job_id for m in messages).items() if n == 1}
        for message in messages:
            try:
                job = self.ports.store.get(message.job_id)
            except AwsError:
                continue  # the table is throttled, say: the job's own step reads it again, and backs off if it must
            if job is not None and job.job_id in once:
                self._read[job.job_id] = job  # a job with two messages here reads afresh for the second
            if (job is None or job.status.terminal or (message.version, message.token) != (job.version, job.token)
                    or _not_yet_due(job, now)):
                continue
            if job.stage in (Stage.WAIT_LAUNCH, Stage.CREATE_IMAGE):  # a job past its launch images it next
                to_image.append(job.instance_id)
            elif job.stage is Stage.WAIT_IMAGE and job.source_image_id:
                due[None][job.source_image_id] = job.job_id
            elif job.stage is Stage.WAIT_COPY:
                for target in job.distribution.copy_targets:
                    copy = job.copy_for(target)
                    if copy.image_id and copy.state != "available":
                        due[(target.account_id, target.region)][copy.image_id] = job.job_id
        for where, images in due.items():
            any_job = next(iter(images.values()))
            try:
                ec2 = (self.ports.source_ec2 if where is None
                       else Ec2Images(self.ports.targets.ec2(where[0], where[1], any_job)))
                self._seen.update(ec2.images(sorted(images)))
            except AwsError:
                continue  # throttled or refused, say: each job's own step looks, and deals with it
        if len(to_image) > 1:
            try:
                self._volumes = self.ports.source_ec2.volumes_of(sorted(set(to_image)))
            except AwsError:
                pass  # each job's own step looks

    def forget_look_ahead(self) -> None:
        self._seen, self._read, self._volumes = {}, {}, {}

    def wake(self, job_id: str, image_id: str, state: str, request_id: str) -> str:
        """The fast path: the image the job waits on changed state, so its step runs now, in the event's
        invocation, instead of at its next poll. Its waiting message goes stale when this step is written;
        should this invocation die first, that message is still there: polling stays the backstop."""
        job = self.ports.store.get(job_id)
        if job is None or job.status.terminal or job.awaited_image_id != image_id:
            return "not waiting on it"
        # EC2's own event (no one else may put `aws.ec2` events) says what a copy's DescribeImages would
        self._reported = {image_id: state} if state in ("available", "failed") else {}
        try:
            return self._advance(job, f"{request_id}:{image_id}")
        finally:
            self._reported = {}

    def _advance(self, job: Job, delivery_id: str) -> str:
        """Steps until the job must wait (or ends), then SENDS its next message and only then WRITES it,
        conditional on the version read. Stages that need no waiting (SHARE after the image is ready, COPY,
        CLEANUP) run on in the same invocation: a few calls each, so the work stays bounded."""
        read_version = job.version
        self._freed = []
        delay = self._step(job)
        for _ in range(len(self._stages)):
            if delay != 0 or job.status.terminal:
                break
            delay = self._step(job)
        job.version += 1
        job.token = new_token(job.job_id, job.version, delivery_id)
        job.updated_at = self.ports.now()
        # a job that ends with events on keeps one message: the announcement (_announce), sent now
        job.announce_pending = job.status in (Status.DONE, Status.FAILED) and self.ports.events.enabled
        if delay is not None:
            job.next_wake_at = job.updated_at + delay
            send_at = self.settings.poll.hop(job.updated_at, job.next_wake_at)
            self.ports.queue.send([(JobMessage(job.job_id, job.version, job.token),
                                    sqs_delay(send_at - job.updated_at))])
        elif job.announce_pending:
            self.ports.queue.send([(JobMessage(job.job_id, job.version, job.token), 0)])
        try:
            self.ports.store.save(job, read_version)
        except StaleJob:
            return "dropped: lost the race to another consumer"
        self._record(job)
        freed, self._freed = self._freed, []
        for destination, waiter in freed:
            self._hand_on(destination, waiter, delivery_id)
        return f"{job.status.value} {job.stage.value}"

    def _hand_on(self, destination: str, waiter: str, delivery_id: str) -> None:
        """A slot just given back goes to the first copy in its line now, in this invocation, instead of at that
        copy's next ask (which stays its backstop, and goes stale when this step is written)."""
        job_id = waiter[: -len(destination) - 1]
        self._read.pop(job_id, None)  # look_ahead's read of it is older than this step
        try:
            job = self.ports.store.get(job_id)
            if job is None or job.status.terminal or job.stage is not Stage.COPY:
                self.ports.copy_slots.leave_line(destination, waiter)
                return
            outcome = self._advance(job, f"{delivery_id}:slot:{destination}")
        except AwsError as error:  # throttled, say: the waiter asks again on its own
            logger.warning("a freed copy slot was not handed on", extra={"error": str(error)})
            return
        logger.info("freed copy slot handed on", extra={"waiting_job": job_id, "outcome": outcome})

    def _step(self, job: Job) -> int | None:
        """One stage; returns the follow-up delay, or None once the job is terminal."""
        stage = job.stage
        try:
            return self._stages[stage](job)
        except AwsError as error:
            return self._on_error(job, error)

    def _on_error(self, job: Job, error: AwsError) -> int | None:
        now = self.ports.now()
        if error.kind in (Kind.THROTTLED, Kind.BUSY):
            # never a failure: AWS is pacing us or has no capacity yet
            metrics.add_metric(name="Throttled" if error.kind is Kind.THROTTLED else "WaitingForCapacity",
                               unit=MetricUnit.Count, value=1)
            job.attempt += 1
            delay = self.settings.retry.delay(job.attempt, self.ports.draw())
            if error.kind is Kind.BUSY:
                # the copy waits in its destination's line, and whoever gives a slot back hands it to the line's
                # first (_hand_on): this ask is only the backstop, after half a copy's expected time, doubling
                share = BUSY_SHARE_OF_COPY * 2 ** min(job.attempt - 1, 3)
                wait = max(delay, min(BUSY_WAIT_MAX_S, share * self.settings.expected_copy.seconds(job.size_gib)))
                delay = self.settings.poll.delay_on_grid(now, wait)
            return delay
        job.note_error(error.code, error.message, now)
        if error.kind is Kind.TRANSIENT and job.attempt < self.settings.max_stage_attempts:
            job.attempt += 1
            return self.settings.retry.delay(job.attempt, self.ports.draw())
        if error.kind is Kind.TRANSIENT:
            reason = Reason.RETRIES_EXHAUSTED
        elif error.operation == "sts:AssumeRole":
            reason = Reason.ASSUME_ROLE_DENIED
        else:
            reason = _STAGE_FAILURE[job.stage]
        job.fail(reason, error.code, f"{error.operation}: {error.message}", now)
        return None

    def _poll(self, job: Job, started_at: float | None, expected_s: float) -> int:
        """The delay until the next look at an operation AWS is still doing (see domain/polling.py)."""
        job.polls += 1
        now = self.ports.now()
        delay = self.settings.poll.delay(started_at if started_at is not None else job.updated_at, now, expected_s)
        return self.settings.poll.delay_on_grid(now, delay)

    def _poll_image(self, job: Job) -> int:
        return self._poll(job, job.image_started_at, self.settings.expected_create.seconds(job.size_gib))

    def _poll_copies(self, job: Job, pending: list[TargetCopy]) -> int:
        expected = self.settings.expected_copy.seconds(job.size_gib)
        return min(self._poll(job, copy.started_at, expected) for copy in pending)

    # stages -------------------------------------------------------------------------------
    def _wait_launch(self, job: Job) -> int | None:
        launch = self.ports.mgn.launch(job.mgn_job_id or "", job.source_server_id or "")
        if not launch.post_launch_actions_done:
            return self._poll(job, job.created_at, POST_LAUNCH_EXPECTED.seconds(0))
        job.move_to(Stage.CREATE_IMAGE, self.ports.now(), "post-launch actions finished")
        return 0

    def _create_image(self, job: Job) -> int | None:
        now = self.ports.now()
        try:
            volumes = self._volumes.get(job.instance_id) or self.ports.source_ec2.instance_volumes(job.instance_id)
        except AwsError as error:
            if error.kind is Kind.GONE:
                job.fail(Reason.INSTANCE_NOT_FOUND, error.code, f"instance {job.instance_id} no longer exists", now)
                return None
            raise
        aws_managed = [v for v in volumes if v.encrypted and (
            v.kms_key_id is None or self.ports.source_ec2.key_manager(v.kms_key_id) == "AWS")]
        reencrypt_key = job.distribution.reencrypt_key_id
        if aws_managed and not reencrypt_key:
            job.fail(Reason.AWS_MANAGED_KEY, "AwsManagedKey",
                     f"volume {aws_managed[0].volume_id} of {job.instance_id} is encrypted with the AWS-managed key "
                     f"aws/ebs, whose snapshots AWS cannot share with another account. Set a customer-managed "
                     f"KMS key in the MGN launch settings (EBS encryption) and launch again, or set "
                     f"DISTRIBUTION.reencryptSource to re-encrypt its AMI in this account first.", now)
            return None
        job.needs_reencrypt = bool(aws_managed)
        keys = {v.kms_key_id for v in volumes if v.encrypted and v not in aws_managed}
        unusable = self._source_key_problem(job, keys | ({reencrypt_key} if aws_managed else set()))
        if unusable:
            job.fail(Reason.SOURCE_KEY_UNUSABLE, "SourceKeyUnusable", unusable, now)
            return None
        job.source_image_id = self.ports.source_ec2.create_image(job.instance_id, job.image_name,
                                                                 job.provenance_tags)
        job.size_gib, job.image_started_at = sum(v.size_gib for v in volumes), now
        job.awaited_image_id = job.source_image_id
        job.move_to(Stage.WAIT_IMAGE, now, job.source_image_id)
        return self._poll_image(job)

    def _source_key_problem(self, job: Job, key_ids: set[str]) -> str | None:
        """Would a copy target be refused the key its snapshots are encrypted with? Checked before CreateImage:
        otherwise the copy fails an hour later, opaquely. Only a definite refusal fails the job: a statement
        whose condition cannot be known here (an organization, say) gives it the benefit of the doubt."""
        problems = []
        for key_id in sorted(key_ids):
            if key_id.split(":")[4:5] != [job.source_account]:
                continue  # another account's key: only that account may read its policy
            try:
                policy = self.ports.source_ec2.key_policy(key_id)
                grants = self.ports.source_ec2.key_grants(key_id)
            except AwsError as error:
                if error.kind is Kind.THROTTLED or error.kind is Kind.TRANSIENT:
                    raise
                logger.warning("key policy not readable; preflight skipped", extra={"key": key_id, "error": str(error)})
                continue
            for account in sorted({t.account_id for t in job.distribution.copy_targets}):
                caller = key_policy.Caller(account, self.ports.targets.role_arn(account),
                                           via_service=f"ec2.{job.region}.amazonaws.com")
                try:
                    verdict = key_policy.evaluate(policy, caller, grants)
                except key_policy.PolicyError as error:
                    return f"key {key_id}: {error}"
                if verdict.refused:
                    problems.append(verdict.explain(key_id))
        if not problems:
            return None
        return ("the snapshots would be encrypted with a key a target may not use, so its copy would fail: "
                + "; ".join(problems))

    def _wait_image(self, job: Job) -> int | None:
        image = (self._seen.get(job.source_image_id)
                 or self.ports.source_ec2.images([job.source_image_id])[job.source_image_id])
        now = self.ports.now()
        if image.state == "available":
            job.snapshot_ids = list(image.snapshot_ids)
            job.awaited_image_id = None
            job.move_to(Stage.REENCRYPT if job.needs_reencrypt else Stage.SHARE, now)
            return 0
        if image.state in ("pending", "transient"):
            return self._poll_image(job)
        job.fail(Reason.IMAGE_FAILED, f"Image.{image.state}", image.reason or f"source image is {image.state}", now)
        return None

    def _reencrypt(self, job: Job) -> int | None:
        """The source AMI has a volume under aws/ebs, which AWS will not share: copy it in this account and region
        with the customer-managed key (CopyImage re-encrypts every snapshot); that copy is what is shared."""
        now = self.ports.now()
        job.reencrypted_image_id = self.ports.source_ec2.copy_image(
            source_image_id=job.source_image_id, source_region=job.region, name=f"{job.image_name}-cmk",
            kms_key_id=job.distribution.reencrypt_key_id, client_token=new_token(job.job_id, "reencrypt"),
            description=f"{job.source_image_id} re-encrypted for sharing by ami-distributor (removed after the copies)",
            tags=job.provenance_tags)
        job.awaited_image_id = job.reencrypted_image_id
        job.move_to(Stage.WAIT_REENCRYPT, now, job.reencrypted_image_id)
        return self._poll(job, now, self.settings.expected_copy.seconds(job.size_gib))

    def _wait_reencrypt(self, job: Job) -> int | None:
        image = self.ports.source_ec2.images([job.reencrypted_image_id])[job.reencrypted_image_id]
        now = self.ports.now()
        if image.state == "available":
            job.reencrypted_snapshot_ids = list(image.snapshot_ids)
            job.awaited_image_id = None
            job.move_to(Stage.SHARE, now)
            return 0
        if image.state in ("pending", "transient"):
            started = job.history[-1].at if job.history else now
            return self._poll(job, started, self.settings.expected_copy.seconds(job.size_gib))
        job.fail(Reason.IMAGE_FAILED, f"Image.{image.state}",
                 image.reason or f"re-encrypted image {job.reencrypted_image_id} is {image.state}", now)
        return None

    def _share(self, job: Job) -> int | None:
        spec, ec2 = job.distribution, self.ports.source_ec2
        # the job was checked when it was taken in; the stage's allow-list may have shrunk since
        outside = spec.outside(self.settings.distribution)
        if outside:
            job.fail(Reason.NOT_ALLOWED, "NotInAllowList",
                     f"{outside} are no longer in this stage's allow-list: nothing was shared", self.ports.now())
            return None
        self._once(job, f"share:{job.shared_image_id}", lambda: ec2.share_image(
            job.shared_image_id, spec.share_accounts, spec.organization_arns, spec.organizational_unit_arns))
        if spec.share_accounts:
            for snapshot_id in job.shared_snapshot_ids:
                self._once(job, f"share:{snapshot_id}", lambda: ec2.share_snapshot(snapshot_id, spec.share_accounts))
        return self._after_targets(job, Stage.COPY if spec.copy_targets else None)

    @staticmethod
    def _once(job: Job, step: str, action: Callable[[], None]) -> None:
        """Run a side effect unless an earlier try of this stage already did (a throttled stage resumes)."""
        if step not in job.completed:
            action()
            job.completed.append(step)

    def _copy(self, job: Job) -> int | None:
        for target in job.distribution.copy_targets:
            copy = job.copy_for(target)
            if copy.image_id:
                continue  # made by an earlier (throttled) try of this stage
            self._take_copy_slot(job, target)
            copy.image_id = self._target_ec2(job, target).copy_image(
                source_image_id=job.shared_image_id, source_region=job.region, name=job.image_name,
                kms_key_id=target.kms_key_id, client_token=job.client_token(target),
                description=f"Copy of {job.source_image_id} ({job.instance_id}, wave {job.wave}) by ami-distributor",
                tags=publishing.copy_tags(job, target), completion_minutes=target.copy_minutes,
            )
            copy.state, copy.started_at = "pending", self.ports.now()
        pending = [c for c in job.copies.values() if c.state == "pending"]
        job.awaited_image_id = _last_started(pending).image_id
        job.move_to(Stage.WAIT_COPY, self.ports.now())
        return self._poll_copies(job, pending)

    def _take_copy_slot(self, job: Job, target: Target) -> None:
        """Admission: a copy starts only with one of the destination's slots, so that copies past EC2's limit
        wait in SQS instead of being refused (adapters/copy_slots.py)."""
        if not self.settings.copy_slots:
            return
        now = self.ports.now()
        expected = self.settings.expected_copy.seconds(job.size_gib)
        lease = now + COPY_SLOT_LEASE * expected
        if not self.ports.copy_slots.take(target.key, _slot_holder(job, target), lease, self.settings.copy_slots, now,
                                          claim=expected):
            raise AwsError("copy-slots:Take", "CopySlotsTaken",
                           f"all {self.settings.copy_slots} copy slots for {target.key} are held: the copy waits")

    def _give_back_copy_slot(self, job: Job, target: Target) -> None:
        if self.settings.copy_slots:
            waiter = self.ports.copy_slots.give_back(target.key, _slot_holder(job, target), self.ports.now())
            if waiter:
                self._freed.append((target.key, waiter))

    def _wait_copy(self, job: Job) -> int | None:
        now = self.ports.now()
        for target in job.distribution.copy_targets:
            copy = job.copy_for(target)
            if copy.state != "available":
                copy.state = self._copy_state(job, target, copy.image_id)
                if copy.state != "pending":
                    self._give_back_copy_slot(job, target)  # the copy ended: its slot is the next copy's
        failed = [t for t in job.distribution.copy_targets if job.copy_for(t).state not in ("pending", "available")]
        for target in failed:
            copy = job.copy_for(target)
            if copy.attempts + 1 >= self.settings.max_copy_attempts + job.copy_attempts_granted:
                job.fail(Reason.COPY_FAILED, f"Image.{copy.state}",
                         f"copy {copy.image_id} in {target.key} is {copy.state} after {copy.attempts + 1} attempts", now)
                return None
        if failed:
            for target in failed:
                copy = job.copy_for(target)
                self._target_ec2(job, target).deregister(copy.image_id)  # frees the name for the next attempt
                copy.attempts, copy.image_id, copy.state = copy.attempts + 1, None, None
            job.move_to(Stage.COPY, now, f"retrying {len(failed)} failed copies")
            return self.settings.retry.delay(1, self.ports.draw())
        pending = [c for c in job.copies.values() if c.state == "pending"]
        if pending:
            job.awaited_image_id = _last_started(pending).image_id
            return self._poll_copies(job, pending)
        job.awaited_image_id = None
        publishes = any(t.publishes for t in job.distribution.copy_targets)
        return self._after_targets(job, Stage.PUBLISH if publishes else None)

    def _copy_state(self, job: Job, target: Target, image_id: str) -> str:
        if image_id in self._reported:
            return self._reported[image_id]
        if image_id in self._seen:
            return self._seen[image_id].state
        return self._target_ec2(job, target).images([image_id])[image_id].state

    def _after_targets(self, job: Job, next_stage: Stage | None) -> int | None:
        now = self.ports.now()
        if next_stage is None:
            next_stage = Stage.CLEANUP if job.distribution.cleanup.any or job.reencrypted_image_id else None
        if next_stage is None:
            job.finish(now)
            return None
        job.move_to(next_stage, now)
        return 0

    def _publish(self, job: Job) -> int | None:
        """Every copy is available: protect it, make it its launch template's default, name it in an SSM
        parameter, in each target that asks. Each side effect is done once (a throttled stage resumes) and
        is idempotent anyway (protection and parameter overwrite, the launch template's ClientToken)."""
        for target in (t for t in job.distribution.copy_targets if t.publishes):
            copy = job.copy_for(target)
            image_id = copy.image_id
            if target.protection:
                ec2 = self._target_ec2(job, target)
                self._once(job, f"protect:{image_id}", lambda: ec2.protect(image_id, target.protection == "cooldown"))
            if target.launch_template:
                publisher = self._target_publisher(job, target)

                def new_default() -> None:
                    copy.launch_template_version = publisher.new_default_version(
                        target.launch_template, image_id, f"{image_id}: {job.instance_id}, wave {job.wave}",
                        publishing.client_token(job, target, "launch-template"))
                self._once(job, f"launch-template:{image_id}", new_default)
            if target.parameter_pattern:
                publisher = self._target_publisher(job, target)
                name = publishing.parameter_name(target, job)

                def put_parameter() -> None:
                    publisher.put_image_parameter(name, image_id, f"{job.instance_id} (wave {job.wave}) by ami-distributor",
                                                  publishing.parameter_tags(job, target))
                    copy.parameter_name = name
                self._once(job, f"parameter:{image_id}", put_parameter)
        return self._after_targets(job, None)

    def _announce(self, job: Job, delivery_id: str) -> str:
        """The job ended and its events are not yet put: put the job's event, and its wave's when this was the
        wave's last job, then record them as put. Put before written, like a message: a crash in between puts
        them again (consumers dedupe on eventId), never loses them. A job the operator cancelled has no event
        of its own (the operator knows), but may be the last of its wave (operations.cancel sends its message)."""
        read_version = job.version
        report = publishing.report_location(job.wave, self.settings.table_name, self.settings.stage_name)
        entries = []
        if job.status is not Status.CANCELLED:
            detail_type, detail = publishing.job_event(job, report)
            entries.append((detail_type, detail, [f"ami-distributor:job/{job.job_id}"]))
        counts = self._wave_counts(job) if self.ports.events.enabled else None
        if counts is not None:
            detail_type, detail = publishing.wave_event(job.wave, counts, report)
            entries.append((detail_type, detail, [f"ami-distributor:wave/{job.wave}"]))
        if entries and self.ports.events.enabled:
            self.ports.events.put(entries)
        job.announce_pending = False
        job.version += 1
        job.token = new_token(job.job_id, job.version, delivery_id)
        try:
            self.ports.store.save(job, read_version)
        except StaleJob:
            return "dropped: lost the race to another consumer"
        return f"announced {job.status.value}" + (" and its wave" if counts is not None else "")

    def _wave_counts(self, job: Job) -> dict[str, int] | None:
        """The wave's jobs by status when every one is terminal, else None. Read after this job's terminal state
        was written, each job the index shows running is read again (the index lags the table): of two jobs
        ending together, at least one sees the other's end. A wave named by an MGN job is complete only when
        that job has ended and each instance it launched has its job."""
        counts: dict[str, int] = defaultdict(int)
        for job_id, status in self.ports.store.wave_statuses(job.wave):
            status = job.status.value if job_id == job.job_id else status
            if status == Status.RUNNING.value:
                current = self.ports.store.get(job_id)
                if current is None or not current.status.terminal:
                    return None
                status = current.status.value
            counts[status] += 1
        if job.mgn_job_id and job.wave == job.mgn_job_id:
            ended, launched = self.ports.mgn.launched_all(job.mgn_job_id)
            if not ended or launched > sum(counts.values()):
                return None
        return dict(counts)

    def _cleanup(self, job: Job) -> int | None:
        # Only reached from WAIT_COPY once every copy was seen available (or with no copies at all).
        cleanup, ec2 = job.distribution.cleanup, self.ports.source_ec2
        intermediate = job.reencrypted_image_id
        if intermediate:  # removed whatever the cleanup settings: it exists only to be copied
            self._once(job, f"deregister:{intermediate}", lambda: ec2.deregister(intermediate))
            for snapshot_id in job.reencrypted_snapshot_ids:
                self._once(job, f"delete:{snapshot_id}", lambda: ec2.delete_snapshot(snapshot_id))
        if cleanup.deregister_image:
            self._once(job, f"deregister:{job.source_image_id}", lambda: ec2.deregister(job.source_image_id))
        if cleanup.delete_snapshots:
            for snapshot_id in job.snapshot_ids:
                self._once(job, f"delete:{snapshot_id}", lambda: ec2.delete_snapshot(snapshot_id))
        if cleanup.terminate_instance:
            self._once(job, f"terminate:{job.instance_id}", lambda: ec2.terminate(job.instance_id))
        job.finish(self.ports.now())
        return None

    def _target_ec2(self, job: Job, target: Target) -> Ec2Images:
        return Ec2Images(self.ports.targets.ec2(target.account_id, target.region, job.job_id))

    def _target_publisher(self, job: Job, target: Target) -> TargetPublisher:
        return TargetPublisher(self.ports.targets.ssm(target.account_id, target.region, job.job_id),
                               self.ports.targets.ec2(target.account_id, target.region, job.job_id))

    def _record(self, job: Job) -> None:
        if job.status is Status.DONE:
            metrics.add_metric(name="JobsDone", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="JobSeconds", unit=MetricUnit.Seconds, value=job.updated_at - job.created_at)
        elif job.status is Status.FAILED:
            metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
            logger.warning("job failed", extra={"reason": job.reason.value, "error": job.last_error.code})
        transitions = job.history[-2:]
        if len(transitions) == 2 and transitions[1].stage != transitions[0].stage:
            metrics.add_metric(name=f"{transitions[0].stage}Seconds", unit=MetricUnit.Seconds,
                               value=transitions[1].at - transitions[0].at)


def _not_yet_due(job: Job, now: float) -> bool:
    """The job's wait runs past now: its message only hops on."""
    return job.next_wake_at is not None and now < job.next_wake_at - HOP_SLACK_S


def _slot_holder(job: Job, target: Target) -> str:
    return f"{job.job_id}/{target.key}"


def _last_started(copies: list[TargetCopy]) -> TargetCopy:
    """The copy expected to finish last: its state-change event is the one worth waking for."""
    return max(copies, key=lambda c: c.started_at or 0.0)


_STAGE_FAILURE = {
    Stage.WAIT_LAUNCH: Reason.LAUNCH_NOT_FOUND,
    Stage.CREATE_IMAGE: Reason.IMAGE_FAILED,
    Stage.WAIT_IMAGE: Reason.IMAGE_FAILED,
    Stage.REENCRYPT: Reason.IMAGE_FAILED,
    Stage.WAIT_REENCRYPT: Reason.IMAGE_FAILED,
    Stage.SHARE: Reason.SHARE_REFUSED,
    Stage.COPY: Reason.COPY_REFUSED,
    Stage.WAIT_COPY: Reason.COPY_FAILED,
    Stage.PUBLISH: Reason.PUBLISH_REFUSED,
    Stage.CLEANUP: Reason.CLEANUP_REFUSED,
}


class Waker:
    """The fast path: an image changed state, so the job waiting on it takes its step now (Advancer.wake)."""

    def __init__(self, ports: Ports, advancer: Advancer) -> None:
        self.ports, self.advancer = ports, advancer

    def handle(self, event: Any, request_id: str = "") -> dict:
        try:
            change: AmiStateChange = parse_ami_event(event)
        except InvalidEvent as error:
            logger.error("event rejected", extra={"error": str(error)})
            metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
            return {"rejected": str(error)}
        woken = {}
        for job_id in self.ports.store.job_ids_awaiting(change.image_id):
            logger.append_keys(job_id=job_id)
            try:
                woken[job_id] = self.advancer.wake(job_id, change.image_id, change.state, request_id)
            finally:
                logger.remove_keys(["job_id"])
        return {"image_id": change.image_id, "state": change.state, "woken": woken}
