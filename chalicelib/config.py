"""The stage's settings, read from the environment Chalice sets from .chalice/config.json.

Parsed and validated once per cold start; every problem is reported at once, at start, so a bad
deploy fails loudly before it touches a wave rather than halfway through one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Mapping

from .domain.backoff import Backoff
from .domain import publishing
from .domain.model import DEFAULT_PARAMETER_PATTERN, Cleanup, Distribution, Target
from .domain.polling import Expected, PollPlan

DEFAULT_POLL_MIN_S = 30  # the shortest wait between two looks at an image
DEFAULT_POLL_GRID_S = 60  # looks fall on multiples of this, so a batch holds many jobs' looks
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
ORGANIZATION_ARN = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_ARN = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
KMS_KEY = re.compile(r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+))$")
QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[\w-]{1,80}(\.fifo)?$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
LAUNCH_TYPES = {"CUTOVER", "TEST"}
EVENT_BUS = re.compile(r"^([A-Za-z0-9._\-/]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[A-Za-z0-9._\-/]{1,256})$")
# CreateLaunchTemplate: "LaunchTemplateName: 3-128 characters, letters, numbers and ( ) . / _" (EC2 API Reference)
LAUNCH_TEMPLATE_NAME = re.compile(r"^[a-zA-Z0-9().\-/_]{3,128}$")
# CopyImage SnapshotCopyCompletionDurationMinutes: a time-based copy, "in 15 minute increments" (EC2 API
# Reference), from 15 to 2880 minutes (48 hours; "Time-based copies", Amazon EBS User Guide)
COPY_MINUTES_STEP, COPY_MINUTES_MAX = 15, 2880
PROTECTION = {"on", "cooldown"}  # EnableImageDeregistrationProtection, WithCooldown false / true
TAG_KEY = re.compile(r"^(?!aws:)[\w .:/=+\-@]{1,128}$")
FUNCTION_NAME = re.compile(r"^ami-distributor-(?P<stage>.+)-(advance_jobs|on_ami_event|on_mgn_event)$")  # Chalice's naming


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    table_name: str
    queue_url: str
    queue_arn: str
    distribution: Distribution  # the default distribution, and the allow-list events are held to
    role_name: str
    external_id: str | None
    launch_types: frozenset[str]
    wait_for_post_launch_actions: bool
    poll: PollPlan
    expected_create: Expected  # how long CreateImage takes, by size: when its first poll is due
    expected_copy: Expected
    retry: Backoff
    max_copy_attempts: int
    max_stage_attempts: int
    job_ttl_days: int
    copy_slots: int  # our copies in flight per destination account and region (0: no admission, EC2 refuses)
    event_bus: str = ""  # where job and wave events go; empty: none are put
    stage_name: str | None = None  # named in the events' report location

    @property
    def home(self) -> tuple[str, str]:
        """The account and region the stage runs in (its queue's): the only ones it takes launches and requests from."""
        _, _, _, region, account, _ = self.queue_arn.split(":")
        return account, region

    def allows(self, target: Target) -> bool:
        return any(t.account_id == target.account_id and t.region == target.region for t in self.distribution.targets)


def load(env: Mapping[str, str]) -> Settings:
    problems: list[str] = []

    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            problems.append(f"{name} is not set")
        return value

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = env.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not a whole number")
            return default
        if not low <= value <= high:
            problems.append(f"{name}={value} is outside {low}..{high}")
        return value

    table = required("JOBS_TABLE")
    queue_url = required("JOBS_QUEUE_URL")
    queue_arn = required("JOBS_QUEUE_ARN")
    if queue_arn and not QUEUE_ARN.match(queue_arn):
        problems.append(f"JOBS_QUEUE_ARN={queue_arn!r} is not an SQS queue ARN")
    role_name = required("CROSS_ACCOUNT_ROLE_NAME")
    if role_name and not ROLE_NAME.match(role_name):
        problems.append(f"CROSS_ACCOUNT_ROLE_NAME={role_name!r} is not an IAM role name")
    distribution = _distribution(env.get("DISTRIBUTION", ""), problems)
    key = distribution.reencrypt_key_id
    if key and queue_arn.count(":") == 5 and key.split(":")[3:5] != queue_arn.split(":")[3:5]:
        problems.append(f"DISTRIBUTION.reencryptSource.kmsKeyId must be a key of the source account in the stage's "
                        f"region ({':'.join(queue_arn.split(':')[3:5])}), not {':'.join(key.split(':')[3:5])}")
    launch_types = frozenset(t.strip().upper() for t in env.get("LAUNCH_TYPES", "CUTOVER").split(",") if t.strip())
    if not launch_types or not launch_types <= LAUNCH_TYPES:
        problems.append(f"LAUNCH_TYPES={env.get('LAUNCH_TYPES')!r}: use CUTOVER and/or TEST")
    wait_flag = env.get("WAIT_FOR_POST_LAUNCH_ACTIONS", "false").lower()
    if wait_flag not in ("true", "false"):
        problems.append("WAIT_FOR_POST_LAUNCH_ACTIONS must be true or false")
    poll_min = number("POLL_MIN_SECONDS", DEFAULT_POLL_MIN_S, 1, 900)
    poll_max = number("POLL_MAX_SECONDS", 900, 1, 900)
    poll_grid = number("POLL_GRID_SECONDS", DEFAULT_POLL_GRID_S, 1, 300)
    if poll_min > poll_max:
        problems.append(f"POLL_MIN_SECONDS={poll_min} is more than POLL_MAX_SECONDS={poll_max}")

    def expected(name: str, default: str) -> Expected:
        try:
            return Expected.parse(env.get(name, default))
        except ValueError as error:
            problems.append(f"{name}: {error}")
            return Expected.parse(default)

    # AWS publishes no duration; these follow the sandbox's model (automation/sandbox/settings.py). A wrong
    # guess costs a few polls, or (only when an AMI event is lost) a later look.
    expected_create = expected("EXPECTED_CREATE_SECONDS", "120+6/GiB")
    expected_copy = expected("EXPECTED_COPY_SECONDS", "300+12/GiB")
    retry_base = number("RETRY_BASE_SECONDS", 2, 1, 900)
    retry_max = number("RETRY_MAX_SECONDS", 120, 1, 900)
    max_copy_attempts = number("MAX_COPY_ATTEMPTS", 3, 1, 10)
    max_stage_attempts = number("MAX_STAGE_ATTEMPTS", 8, 1, 100)
    ttl_days = number("JOB_TTL_DAYS", 90, 1, 3650)
    # EC2's limit on concurrent copies into one destination region is 300 ("Copy an AMI"); set it lower when
    # others copy into the same accounts: a copy past the real limit is refused, and asked again later
    copy_slots = number("COPY_SLOTS_PER_DESTINATION", 300, 0, 10000)
    event_bus = env.get("EVENT_BUS_NAME", "").strip()
    if event_bus and not EVENT_BUS.match(event_bus):
        problems.append(f"EVENT_BUS_NAME={event_bus!r} is not an event bus name or ARN")
    function = FUNCTION_NAME.match(env.get("AWS_LAMBDA_FUNCTION_NAME", ""))
    stage_name = env.get("STAGE_NAME") or (function.group("stage") if function else None)
    if problems:
        raise ConfigError("invalid stage configuration:\n  - " + "\n  - ".join(problems))
    return Settings(
        table_name=table, queue_url=queue_url, queue_arn=queue_arn, distribution=distribution,
        role_name=role_name, external_id=env.get("CROSS_ACCOUNT_EXTERNAL_ID") or None,
        launch_types=launch_types, wait_for_post_launch_actions=wait_flag == "true",
        poll=PollPlan(poll_min, poll_max, poll_grid), expected_create=expected_create, expected_copy=expected_copy,
        retry=Backoff(retry_base, retry_max),
        max_copy_attempts=max_copy_attempts, max_stage_attempts=max_stage_attempts, job_ttl_days=ttl_days,
        copy_slots=copy_slots,
        event_bus=event_bus, stage_name=stage_name,
    )


def _publishing(target: Target, item: dict, where: str, problems: list[str]) -> Target:
    """A target's publishing options: `publish` (an SSM parameter, a launch template, tags), `copyMinutes`
    (a time-based copy) and `deregistrationProtection`. Each needs the copy: a shared-only target has none."""
    spec = item.get("publish")
    minutes, protection = item.get("copyMinutes"), item.get("deregistrationProtection")
    options = {}
    if (spec or minutes or protection) and not target.copy:
        problems.append(f"{where}: publish, copyMinutes and deregistrationProtection need a copy (copy is false)")
        return target
    if spec is True:
        spec = {}
    if spec is not None and spec is not False:
        if not isinstance(spec, dict):
            problems.append(f"{where}.publish must be true or an object")
            spec = {}
        unknown = sorted(set(spec) - {"ssmParameter", "launchTemplateName", "tags"})
        if unknown:
            problems.append(f"{where}.publish: unknown setting(s) {unknown}")
        pattern = spec.get("ssmParameter", DEFAULT_PARAMETER_PATTERN)
        if pattern is not None and pattern is not False:
            try:
                publishing.check_parameter_pattern(str(pattern))
                options["parameter_pattern"] = str(pattern)
            except publishing.PatternError as error:
                problems.append(f"{where}.publish.ssmParameter: {error}")
        template = spec.get("launchTemplateName")
        if template is not None:
            if isinstance(template, str) and LAUNCH_TEMPLATE_NAME.match(template):
                options["launch_template"] = template
            else:
                problems.append(f"{where}.publish.launchTemplateName={template!r} is not a launch template name")
        tags = spec.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(k, str) and TAG_KEY.match(k) and isinstance(v, str)
                                                  and len(v) <= 256 for k, v in tags.items()):
            problems.append(f"{where}.publish.tags must map tag keys (not aws:) to values of 256 characters at most")
        elif any(k.startswith("ami-distributor:") for k in tags):
            problems.append(f"{where}.publish.tags: ami-distributor:* tags are the service's own (provenance)")
        else:
            options["tags"] = tuple(sorted(tags.items()))
    if minutes is not None:
        if (isinstance(minutes, bool) or not isinstance(minutes, int) or not COPY_MINUTES_STEP <= minutes <= COPY_MINUTES_MAX
                or minutes % COPY_MINUTES_STEP):
            problems.append(f"{where}.copyMinutes={minutes!r}: a time-based copy takes {COPY_MINUTES_STEP} to "
                            f"{COPY_MINUTES_MAX} minutes, in steps of {COPY_MINUTES_STEP}")
        else:
            options["copy_minutes"] = minutes
    if protection is not None and protection is not False:
        if protection is True:
            protection = "on"
        if protection not in PROTECTION:
            problems.append(f"{where}.deregistrationProtection={protection!r}: use true, \"on\" or \"cooldown\"")
        else:
            options["protection"] = protection
    return replace(target, **options)


def _distribution(raw: str, problems: list[str]) -> Distribution:
    if not raw.strip():
        problems.append("DISTRIBUTION is not set")
        return Distribution(targets=())
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as error:
        problems.append(f"DISTRIBUTION is not JSON: {error}")
        return Distribution(targets=())
    if not isinstance(spec, dict):
        problems.append("DISTRIBUTION must be a JSON object")
        return Distribution(targets=())
    targets = []
    for index, item in enumerate(spec.get("targets") or []):
        where = f"DISTRIBUTION.targets[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object")
            continue
        account, region, key = str(item.get("accountId", "")), str(item.get("region", "")), item.get("kmsKeyId")
        if not ACCOUNT_ID.match(account):
            problems.append(f"{where}.accountId={account!r} is not a 12-digit account ID")
        if not REGION.match(region):
            problems.append(f"{where}.region={region!r} is not a region")
        copy = item.get("copy", True)
        if copy and not (isinstance(key, str) and KMS_KEY.match(key)):
            problems.append(f"{where}.kmsKeyId must be the target's KMS key ARN (a copy is re-encrypted with it)")
        if isinstance(key, str) and KMS_KEY.match(key) and (key.split(":")[4] != account or key.split(":")[3] != region):
            problems.append(f"{where}.kmsKeyId must be a key of account {account} in {region}")
        targets.append(_publishing(Target(account, region, key, bool(copy)), item, where, problems))
    if not targets:
        problems.append("DISTRIBUTION.targets must name at least one target account and region")
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        problems.append("DISTRIBUTION.targets names an account and region twice")
    orgs = tuple(spec.get("organizationArns") or ())
    units = tuple(spec.get("organizationalUnitArns") or ())
    problems.extend(f"DISTRIBUTION.organizationArns: {a!r} is not an organization ARN" for a in orgs if not ORGANIZATION_ARN.match(str(a)))
    problems.extend(f"DISTRIBUTION.organizationalUnitArns: {a!r} is not an OU ARN" for a in units if not OU_ARN.match(str(a)))
    if "all" in {str(a).lower() for a in orgs + units} or spec.get("public"):
        problems.append("DISTRIBUTION may never make an image public")
    cleanup_spec = spec.get("cleanup") or {}
    cleanup = Cleanup(
        deregister_image=bool(cleanup_spec.get("deregisterImage", False)),
        delete_snapshots=bool(cleanup_spec.get("deleteSnapshots", False)),
        terminate_instance=bool(cleanup_spec.get("terminateInstance", False)),
    )
    shared_only = [t.key for t in targets if not t.copy]
    reencrypt_key = _reencrypt_key(spec.get("reencryptSource"), problems)
    if reencrypt_key and (shared_only or orgs or units):
        problems.append("DISTRIBUTION.reencryptSource removes the re-encrypted AMI once the copies are made: "
                        "it cannot go with share-only targets, organizationArns or organizationalUnitArns")
    if cleanup.any and shared_only:
        problems.append(f"DISTRIBUTION.cleanup would remove the AMI shared with {shared_only} (they get no copy)")
    if cleanup.delete_snapshots and not cleanup.deregister_image:
        problems.append("DISTRIBUTION.cleanup.deleteSnapshots needs deregisterImage (a registered AMI keeps its snapshots in use)")
    return Distribution(tuple(targets), orgs, units, cleanup, reencrypt_key)


def _reencrypt_key(spec: object, problems: list[str]) -> str | None:
    """`reencryptSource: {"kmsKeyId": ARN}`: the source account's customer-managed key an aws/ebs AMI is re-encrypted
    with (the targets must be allowed to use it, as for the MGN launch key: source-key.yaml)."""
    if spec is None or spec is False:
        return None
    key = spec.get("kmsKeyId") if isinstance(spec, dict) else None
    if not (isinstance(key, str) and KMS_KEY.match(key)) or ":alias/" in key:
        problems.append("DISTRIBUTION.reencryptSource.kmsKeyId must be a customer-managed KMS key ARN (key/...) "
                        "of the source account in the stage's region")
        return None
    return key
