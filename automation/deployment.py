"""python -m automation deploy / package: a stage that works, by either deploy path.

Chalice deploys the functions and their EventBridge rules, but not the jobs queue, its DLQ, the
jobs table or alarms, and (1.34) never sets `FunctionResponseTypes: [ReportBatchItemFailures]` on
the SQS event source, so a plain `chalice deploy` retries whole batches. Two paths close the gap:

- `deploy --stage S`: the stage's resource stack (templates/stage-resources.yaml), its outputs into
  .chalice/config.json and the stage's policy files, `chalice deploy --stage S`, then the event
  source mapping updated to ReportBatchItemFailures and read back.
- `package --stage S --out DIR`: `chalice package --merge-template`, so that one SAM stack holds the
  functions, rules, queue, DLQ, alarm, table and ReportBatchItemFailures.

Each function gets its own role and least-privilege policy (.chalice/policy-<stage>-<function>.json,
rendered here from FUNCTION_CALLS; tests/deploy derives the same calls from the adapters' code and
fails when the two disagree). boto3 is used only by `AwsDeployer`, the operator-side adapter.
"""
from __future__ import annotations

import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import typer

from automation import stages

APP_NAME = "ami-distributor"
TEMPLATES = stages.PROJECT_ROOT / "automation" / "templates"
STAGE_TEMPLATE = TEMPLATES / "stage-resources.yaml"
CHALICE_DIR = stages.PROJECT_ROOT / ".chalice"
FUNCTIONS = ("on_mgn_event", "advance_jobs", "on_ami_event")
CONSUMER = "advance_jobs"
VISIBILITY_FACTOR = 6  # AWS: an SQS event source's queue visibility >= 6 x the function's timeout
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
DEFAULT_TIMEOUT_S = 60  # Chalice's default lambda_timeout
# the stage settings the resource stack decides, by the stack output that holds each
OUTPUT_SETTINGS = {"JOBS_TABLE": "JobsTableName", "JOBS_QUEUE_URL": "JobsQueueUrl", "JOBS_QUEUE_ARN": "JobsQueueArn"}

# The AWS calls each function's code makes ("service:Operation", as the adapters label them in
# aws_call). Reviewed by hand: tests/deploy/test_policies.py derives the same sets from the code.
FUNCTION_CALLS: dict[str, tuple[str, ...]] = {
    "on_mgn_event": ("dynamodb:GetItem", "dynamodb:PutItem", "mgn:DescribeJobs", "sqs:SendMessageBatch"),
    "advance_jobs": (
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "mgn:DescribeJobs", "sqs:SendMessageBatch",
        "ec2:DescribeInstances", "ec2:DescribeVolumes", "kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListGrants",
        "ec2:CreateImage", "ec2:DescribeImages",
        "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "sts:AssumeRole",
        "ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:TerminateInstances",
        "dynamodb:Query", "events:PutEvents",  # the announcement: a wave's jobs by its index, the events
        "ec2:CopyImage",  # reencryptSource: an aws/ebs AMI copied in the source account with a customer-managed key
    ),
}
# on_ami_event wakes the job waiting on the image and takes its step there (service.Advancer.wake)
FUNCTION_CALLS["on_ami_event"] = tuple(sorted(set(FUNCTION_CALLS["advance_jobs"]) | {"dynamodb:Query"}))
# Made with the target role's credentials: templates/target-account-role.yaml grants these, the publishing
# ones only when the StackSet's parameter for them is true (a target that does not publish is not granted them).
TARGET_ROLE_OPTIONAL_CALLS: dict[str, tuple[str, ...]] = {
    "PublishParameters": ("ssm:PutParameter", "ssm:AddTagsToResource"),
    "UpdateLaunchTemplates": ("ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"),
    "ProtectCopies": ("ec2:EnableImageDeregistrationProtection",),
}
TARGET_ROLE_CALLS = ("ec2:CopyImage", "ec2:DescribeImages", "ec2:DeregisterImage",
                     *(call for calls in TARGET_ROLE_OPTIONAL_CALLS.values() for call in calls))
# What Lambda itself calls with the function's role.
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
CONSUMER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
# API operations authorized under another IAM action name
IAM_ACTION = {"sqs:SendMessageBatch": "sqs:SendMessage"}
# Tagging on create (TagSpecifications) is authorized as ec2:CreateTags for that create action.
TAG_ON_CREATE = {"ec2:CreateImage": "CreateImage", "ec2:CopyImage": "CopyImage"}
# A copy in the source account (reencryptSource) decrypts and re-encrypts through EC2 with the caller's rights
# on the source account's keys ("Amazon EBS encryption", KMS permissions for CopyImage / CopySnapshot).
KMS_FOR_SOURCE_COPY = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                       "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo")
OWN_RESOURCE_TAG = "ami-distributor:job-id"  # every image and snapshot we make carries it (provenance tags)

P, R, A = "${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}"


class DeployError(RuntimeError):
    """A step failed or an input is wrong: the message says which and what to do."""


# --- a stage, as the config describes it -------------------------------------------------------
@dataclass(frozen=True)
class StageSpec:
    name: str
    region: str
    account: str
    partition: str
    table: str
    queue_name: str
    consumer_timeout_s: int
    max_concurrency: int
    role_name: str
    target_accounts: tuple[str, ...]
    event_bus: str = "default"  # EVENT_BUS_NAME; the policy names the default bus when events are off

    @classmethod
    def load(cls, name: str) -> "StageSpec":
        env = stages.function_environment(name, CONSUMER)  # raises UnknownStage with the stage list
        problems = [f"{key} is not set" for key in ("JOBS_TABLE", "JOBS_QUEUE_ARN", "CROSS_ACCOUNT_ROLE_NAME",
                                                    "DISTRIBUTION") if not env.get(key)]
        if problems:
            raise DeployError(f"stage {name!r} in {stages.CONFIG_FILE.name}: " + "; ".join(problems))
        arn = env["JOBS_QUEUE_ARN"].split(":")
        if len(arn) != 6 or arn[2] != "sqs":
            raise DeployError(f"stage {name!r}: JOBS_QUEUE_ARN={env['JOBS_QUEUE_ARN']!r} is not an SQS queue ARN")
        try:
            targets = json.loads(env["DISTRIBUTION"]).get("targets") or []
        except (json.JSONDecodeError, AttributeError) as error:
            raise DeployError(f"stage {name!r}: DISTRIBUTION is not a JSON object: {error}") from None
        return cls(
            name=name, region=arn[3], account=arn[4], partition=arn[1], table=env["JOBS_TABLE"], queue_name=arn[5],
            consumer_timeout_s=int(stages.function_setting(name, CONSUMER, "lambda_timeout", DEFAULT_TIMEOUT_S)),
            max_concurrency=int(env.get("CONSUMER_MAX_CONCURRENCY", "20")),
            role_name=env["CROSS_ACCOUNT_ROLE_NAME"],
            target_accounts=tuple(sorted({str(t["accountId"]) for t in targets if t.get("copy", True)})),
            event_bus=env.get("EVENT_BUS_NAME") or "default",
        )

    @property
    def stack_name(self) -> str:
        return f"{APP_NAME}-{self.name}-resources"

    @property
    def visibility_timeout_s(self) -> int:
        return VISIBILITY_FACTOR * self.consumer_timeout_s

    def function_name(self, function: str) -> str:
        return f"{APP_NAME}-{self.name}-{function}"  # Chalice's naming

    def stack_parameters(self, alarm_topic_arn: str = "") -> dict[str, str]:
        params = {"StageName": self.name, "VisibilityTimeoutSeconds": str(self.visibility_timeout_s)}
        if alarm_topic_arn:
            params["AlarmTopicArn"] = alarm_topic_arn
        return params


def policy_file(stage: str, function: str | None = None) -> str:
    return f"policy-{stage}-{function}.json" if function else f"policy-{stage}.json"


# --- least-privilege policies -------------------------------------------------------------------
def _statement_of(call: str, stage: StageSpec) -> tuple[str, list[str], dict | None]:
    """(Sid, resources, condition) for one API call; ARNs use CloudFormation's pseudo parameters."""
    table = f"arn:{P}:dynamodb:{R}:{A}:table/{stage.table}"
    queue = f"arn:{P}:sqs:{R}:{A}:{stage.queue_name}"
    image, snapshot, instance = f"arn:{P}:ec2:{R}::image/*", f"arn:{P}:ec2:{R}::snapshot/*", f"arn:{P}:ec2:{R}:{A}:instance/*"
    ours = {"Null": {f"aws:ResourceTag/{OWN_RESOURCE_TAG}": "false"}}  # only what this service created
    # ... and shared with accounts only: a request that adds a group (`all`: public) is denied whatever the code does
    ours_to_accounts = {"Null": {f"aws:ResourceTag/{OWN_RESOURCE_TAG}": "false", "ec2:Add/group": "true"}}
    table_of = {
        "dynamodb:GetItem": ("JobsTable", [table], None),
        "dynamodb:PutItem": ("JobsTable", [table], None),
        "dynamodb:UpdateItem": ("JobsTable", [table], None),  # copy slots (adapters/copy_slots.py)
        "dynamodb:Query": ("JobsTableIndexes", [f"{table}/index/*"], None),
        "sqs:SendMessageBatch": ("SendToJobsQueue", [queue], None),
        "mgn:DescribeJobs": ("ReadOnlyNoResourceLevel", ["*"], None),  # neither supports resource ARNs
        "ec2:DescribeInstances": ("ReadOnlyNoResourceLevel", ["*"], None),
        "ec2:DescribeVolumes": ("ReadOnlyNoResourceLevel", ["*"], None),
        "ec2:DescribeImages": ("ReadOnlyNoResourceLevel", ["*"], None),
        "kms:DescribeKey": ("SourceAccountKeys", [f"arn:{P}:kms:{R}:{A}:key/*"], None),
        "kms:GetKeyPolicy": ("SourceAccountKeys", [f"arn:{P}:kms:{R}:{A}:key/*"], None),
        "kms:ListGrants": ("SourceAccountKeys", [f"arn:{P}:kms:{R}:{A}:key/*"], None),
        "ec2:CreateImage": ("CreateImage", [instance, image, snapshot], None),
        "ec2:CopyImage": ("CopyImageInSource", [image, snapshot], None),
        "ec2:ModifyImageAttribute": ("OwnImages", [image], ours),
        "ec2:DeregisterImage": ("OwnImages", [image], ours),
        "ec2:ModifySnapshotAttribute": ("ShareOwnSnapshotsWithAccounts", [snapshot], ours_to_accounts),
        "ec2:DeleteSnapshot": ("OwnSnapshots", [snapshot], ours),
        "ec2:TerminateInstances": ("TerminateSourceInstances", [instance], None),
        # only the service's own events, on the stage's bus
        "events:PutEvents": ("PutDistributionEvents", [_event_bus_arn(stage)], {"StringEquals": {"events:source": "ami-distributor"}}),
        "sts:AssumeRole": ("AssumeTargetRoles",
                           [f"arn:{P}:iam::{account}:role/{stage.role_name}" for account in stage.target_accounts], None),
    }
    if call not in table_of:
        raise DeployError(f"no IAM mapping for {call}: add it to automation/deployment.py _statement_of")
    return table_of[call]


def _event_bus_arn(stage: StageSpec) -> str:
    return stage.event_bus if stage.event_bus.startswith("arn:") else f"arn:{P}:events:{R}:{A}:event-bus/{stage.event_bus}"


def policy_document(stage: StageSpec, function: str | None, *, cloudformation: bool = False) -> dict:
    """The function's policy (None: the stage's fail-closed default, logs only). With `cloudformation`,
    ARNs are Fn::Sub strings for the single-stack package; otherwise they name the config's account."""
    log_group = f"arn:{P}:logs:{R}:{A}:log-group:/aws/lambda/{stage.function_name(function or '*')}"
    groups: dict[tuple, list[str]] = {("Logs", (log_group, log_group + ":*"), "null"): list(LOG_ACTIONS)}
    if function == CONSUMER:
        groups[("ConsumeJobsQueue", (f"arn:{P}:sqs:{R}:{A}:{stage.queue_name}",), "null")] = list(CONSUMER_ACTIONS)
    for call in FUNCTION_CALLS[function] if function else ():
        sid, resources, condition = _statement_of(call, stage)
        groups.setdefault((sid, tuple(resources), json.dumps(condition, sort_keys=True)), []).append(
            IAM_ACTION.get(call, call))
        if call == "ec2:CopyImage":
            key = ("KeysForSourceCopies", (f"arn:{P}:kms:{R}:{A}:key/*",),
                   json.dumps({"StringEquals": {"kms:ViaService": f"ec2.{R}.amazonaws.com"}}))
            groups.setdefault(key, []).extend(KMS_FOR_SOURCE_COPY)
    creating = sorted(TAG_ON_CREATE[c] for c in (FUNCTION_CALLS[function] if function else ()) if c in TAG_ON_CREATE)
    if creating:  # one statement: tagging only while creating one of these, never on its own
        key = ("TagOnCreate", (f"arn:{P}:ec2:{R}::image/*", f"arn:{P}:ec2:{R}::snapshot/*"),
               json.dumps({"StringEquals": {"ec2:CreateAction": creating[0] if len(creating) == 1 else creating}}))
        groups[key] = ["ec2:CreateTags"]
    statements = []
    for (sid, resources, condition), actions in groups.items():
        statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)),
                     "Resource": [_arn(r, stage, cloudformation) for r in resources]}
        if condition != "null":
            statement["Condition"] = {operator: {key: _arn(value, stage, cloudformation) if isinstance(value, str) else value
                                                 for key, value in tests.items()}
                                      for operator, tests in json.loads(condition).items()}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def _arn(template: str, stage: StageSpec, cloudformation: bool) -> Any:
    if "${" not in template:
        return template
    if cloudformation:
        return {"Fn::Sub": template}
    return template.replace(P, stage.partition).replace(R, stage.region).replace(A, stage.account)


def render_policies(stage: StageSpec) -> dict[str, dict]:
    files = {policy_file(stage.name): policy_document(stage, None)}
    files.update({policy_file(stage.name, f): policy_document(stage, f) for f in FUNCTIONS})
    return files


def write_policies(stage: StageSpec) -> list[Path]:
    written = []
    for name, document in render_policies(stage).items():
        written.append(_write_atomically(CHALICE_DIR / name, json.dumps(document, indent=2) + "\n"))
    return written


def _write_atomically(path: Path, text: str) -> Path:
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(text)
    os.replace(scratch, path)  # readers (chalice, a parallel test) never see half a file
    return path


def record_outputs(stage_name: str, outputs: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Write the stack's outputs into the stage's environment in .chalice/config.json; returns what changed."""
    missing = [o for o in OUTPUT_SETTINGS.values() if o not in outputs]
    if missing:
        raise DeployError(f"the stage stack has no output {', '.join(missing)}: is it from {STAGE_TEMPLATE.name}?")
    raw = stages.CONFIG_FILE.read_text()
    config = json.loads(raw)
    env = config["stages"][stage_name].setdefault("environment_variables", {})
    changed = {}
    for setting, output in OUTPUT_SETTINGS.items():
        if env.get(setting) != outputs[output]:
            changed[setting] = (env.get(setting), outputs[output])
            env[setting] = outputs[output]
    if changed:
        _write_atomically(stages.CONFIG_FILE, json.dumps(config, indent=2) + ("\n" if raw.endswith("\n") else ""))
    return changed


# --- the single-stack package -------------------------------------------------------------------
def _logical_id(function: str) -> str:
    return "".join(part.capitalize() for part in function.split("_"))  # Chalice's: advance_jobs -> AdvanceJobs


def load_template(path: Path) -> dict:
    import yaml  # the templates use only long-form intrinsics, so plain YAML reads them

    return yaml.safe_load(path.read_text())


def merge_template(stage: StageSpec) -> dict:
    """What `chalice package --merge-template` lays over Chalice's SAM template: the stage's resources,
    the functions pointed at them, per-function policies, and ReportBatchItemFailures."""
    resources_template = load_template(STAGE_TEMPLATE)
    parameters = json.loads(json.dumps(resources_template["Parameters"]))
    for key, value in stage.stack_parameters().items():
        parameters[key]["Default"] = int(value) if parameters[key]["Type"] == "Number" else value
    resources = dict(resources_template["Resources"])
    environment = {"JOBS_TABLE": {"Ref": "JobsTable"}, "JOBS_QUEUE_URL": {"Ref": "JobsQueue"},
                   "JOBS_QUEUE_ARN": {"Fn::GetAtt": ["JobsQueue", "Arn"]}}
    for function in FUNCTIONS:
        logical = _logical_id(function)
        resources[logical] = {"Properties": {"Environment": {"Variables": environment}}}
        # the role names chalice deploy gives, so target accounts trust one ARN whichever path deployed
        resources[f"{logical}Role"] = {"Properties": {"RoleName": stage.function_name(function), "Policies": [{
            "PolicyName": f"{logical}RolePolicy",
            "PolicyDocument": policy_document(stage, function, cloudformation=True)}]}}
    # app.py binds the queue with queue_arn= (a plain string), so this override replaces it whole
    resources[_logical_id(CONSUMER)]["Properties"]["Events"] = {f"{_logical_id(CONSUMER)}SqsEventSource": {
        "Properties": {"Queue": {"Fn::GetAtt": ["JobsQueue", "Arn"]},
                       "FunctionResponseTypes": [REPORT_BATCH_ITEM_FAILURES]}}}
    return {"Parameters": parameters, "Conditions": resources_template.get("Conditions", {}),
            "Resources": resources, "Outputs": resources_template.get("Outputs", {})}


def chalice_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("chalice")
    return [str(script) if script.exists() else (shutil.which("chalice") or "chalice"), *args]


def precompile_lambda_code(root: Path = stages.PROJECT_ROOT) -> None:
    """Bytecode for chalicelib/, which Chalice packages with the sources: Lambda's /var/task is read-only, so
    without it every cold start compiles every module of ours. Hash-checked .pyc files stay valid whatever
    timestamps the zip gives them, and are never used for a source they were not compiled from."""
    if not compileall.compile_dir(str(root / "chalicelib"), quiet=1, force=True,  # over a dev run's timestamped .pyc
                                  invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH):
        raise DeployError("chalicelib does not compile")


def package(stage: StageSpec, out: Path, run: Callable[..., Any] = subprocess.run) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    precompile_lambda_code()
    merge_file = out / "merge-template.json"
    merge_file.write_text(json.dumps(merge_template(stage), indent=2))
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", stage.region)}
    command = chalice_command("package", "--stage", stage.name, "--merge-template", str(merge_file), str(out))
    result = run(command, cwd=stages.PROJECT_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(f"chalice package failed ({result.returncode}):\n{result.stderr or result.stdout}")
    return out / "sam.json"


# --- offline checks of a package (also run by `package`) ---------------------------------------
def consumer_event(sam: dict) -> dict:
    events = sam["Resources"][_logical_id(CONSUMER)]["Properties"]["Events"]
    return next(e["Properties"] for e in events.values() if e["Type"] == "SQS")


def sam_to_cloudformation(sam: dict, region: str) -> dict:
    """The SAM transform, offline: no managed-policy lookups, local CodeUri rewritten to S3."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    template = json.loads(json.dumps(sam))
    for resource in template["Resources"].values():
        code = resource.get("Properties", {}).get("CodeUri")
        if resource["Type"] == "AWS::Serverless::Function" and isinstance(code, str) and not code.startswith("s3://"):
            resource["Properties"]["CodeUri"] = f"s3://{APP_NAME}-packages/{Path(code).name}"
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator reads the region from boto3's default session
    try:
        return transform(template, {}, NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def lint_errors(template: dict | str, region: str = "us-east-1") -> list[str]:
    """cfn-lint's errors (E rules) for a template; warnings are left to the reader of the full report."""
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    text = template if isinstance(template, str) else json.dumps(template)
    matches = lint(text, config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id.startswith("E")]


def check_package(stage: StageSpec, sam: dict, lint: bool = True) -> list[str]:
    """What must hold of a stage's single stack; an empty list when it does."""
    problems = []
    source = consumer_event(sam)
    if REPORT_BATCH_ITEM_FAILURES not in (source.get("FunctionResponseTypes") or []):
        problems.append("the SQS event source lacks FunctionResponseTypes: [ReportBatchItemFailures]")
    if source.get("ScalingConfig", {}).get("MaximumConcurrency") != stage.max_concurrency:
        problems.append(f"maximum concurrency is not CONSUMER_MAX_CONCURRENCY={stage.max_concurrency}")
    queue = sam["Resources"].get("JobsQueue", {}).get("Properties", {})
    timeout = sam["Resources"][_logical_id(CONSUMER)]["Properties"]["Timeout"]
    visibility = sam.get("Parameters", {}).get("VisibilityTimeoutSeconds", {}).get("Default")
    if queue.get("VisibilityTimeout") != {"Ref": "VisibilityTimeoutSeconds"} or not visibility \
            or int(visibility) < VISIBILITY_FACTOR * timeout:
        problems.append(f"queue visibility {visibility} is under {VISIBILITY_FACTOR} x the consumer's {timeout} s")
    if lint:
        problems += [f"cfn-lint: {e}" for e in lint_errors(sam_to_cloudformation(sam, stage.region), stage.region)]
    return problems


# --- the operator-side AWS adapter --------------------------------------------------------------
class AwsDeployer:
    """CloudFormation and Lambda calls of `deploy`. Clients are passed in (tests give sandbox ones)."""

    def __init__(self, cloudformation: Any, lambda_client: Any, sleep: Callable[[float], None] = time.sleep,
                 poll_s: float = 5.0, max_polls: int = 360) -> None:
        self.cloudformation, self.lambda_client = cloudformation, lambda_client
        self.sleep, self.poll_s, self.max_polls = sleep, poll_s, max_polls

    @classmethod
    def for_region(cls, region: str) -> "AwsDeployer":
        import boto3

        session = boto3.Session(region_name=region)
        return cls(session.client("cloudformation"), session.client("lambda"))

    def deploy_stack(self, name: str, template_body: str, parameters: dict[str, str]) -> dict[str, str]:
        """Create or update the stack and wait for it; returns its outputs."""
        from botocore.exceptions import ClientError

        request = {"StackName": name, "TemplateBody": template_body,
                   "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                   "Tags": [{"Key": "app", "Value": APP_NAME}]}
        try:
            self.cloudformation.describe_stacks(StackName=name)
            exists = True
        except ClientError as error:
            if "does not exist" not in str(error):
                raise
            exists = False
        try:
            if exists:
                self.cloudformation.update_stack(**request)
            else:
                self.cloudformation.create_stack(**request)
        except ClientError as error:
            if "No updates are to be performed" not in str(error):
                raise DeployError(f"stack {name}: {error}") from None
        stack = self._settled_stack(name)
        if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise DeployError(f"stack {name} is {stack['StackStatus']}: {stack.get('StackStatusReason', '')} "
                              f"(see its events in the CloudFormation console)")
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def _settled_stack(self, name: str) -> dict:
        for _ in range(self.max_polls):
            stack = self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
            if not stack["StackStatus"].endswith("_IN_PROGRESS"):
                return stack
            self.sleep(self.poll_s)
        raise DeployError(f"stack {name} still in progress after {self.max_polls * self.poll_s:.0f} s")

    def report_batch_item_failures(self, function_name: str, queue_arn: str) -> dict:
        """Turn on partial batch responses on the function's mapping for the queue; returns it as read back."""
        mapping = self._settled_mapping(function_name, queue_arn)
        if REPORT_BATCH_ITEM_FAILURES not in (mapping.get("FunctionResponseTypes") or []):
            self.lambda_client.update_event_source_mapping(
                UUID=mapping["UUID"], FunctionResponseTypes=[REPORT_BATCH_ITEM_FAILURES])
            mapping = self._settled_mapping(function_name, queue_arn)
        return mapping

    def _settled_mapping(self, function_name: str, queue_arn: str) -> dict:
        for _ in range(self.max_polls):
            mappings = self.lambda_client.list_event_source_mappings(
                FunctionName=function_name, EventSourceArn=queue_arn)["EventSourceMappings"]
            if len(mappings) != 1:
                raise DeployError(f"{function_name} has {len(mappings)} event source mappings for {queue_arn}, "
                                  f"expected 1: did chalice deploy bind the stage's JOBS_QUEUE_ARN?")
            if mappings[0].get("State") not in ("Creating", "Updating", "Enabling"):
                return mappings[0]
            self.sleep(self.poll_s)
        raise DeployError(f"the event source mapping of {function_name} did not settle")


def check_mapping(stage: StageSpec, mapping: dict, batch_size: int) -> list[str]:
    problems = []
    if REPORT_BATCH_ITEM_FAILURES not in (mapping.get("FunctionResponseTypes") or []):
        problems.append("FunctionResponseTypes lacks ReportBatchItemFailures")
    if mapping.get("BatchSize") != batch_size:
        problems.append(f"BatchSize is {mapping.get('BatchSize')}, app.py asks for {batch_size}")
    if (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency") != stage.max_concurrency:
        problems.append(f"MaximumConcurrency is {(mapping.get('ScalingConfig') or {}).get('MaximumConcurrency')}, "
                        f"the stage asks for {stage.max_concurrency}")
    return problems


def consumer_batch_size() -> int:
    """The batch size app.py declares (the same in every stage)."""
    from app import app as chalice_app

    return next(s.batch_size for s in chalice_app.event_sources if s.name == CONSUMER)


# --- deploy -------------------------------------------------------------------------------------
def deploy_plan(stage: StageSpec, alarm_topic_arn: str = "") -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in stage.stack_parameters(alarm_topic_arn).items())
    return [
        f"deploy CloudFormation stack {stage.stack_name} in {stage.region} from "
        f"automation/templates/{STAGE_TEMPLATE.name} ({params}; MaxReceiveCount=5)",
        f"write its outputs {', '.join(OUTPUT_SETTINGS.values())} into .chalice/config.json stages.{stage.name} "
        f"({', '.join(OUTPUT_SETTINGS)}) and re-render .chalice/{policy_file(stage.name)} and "
        + ", ".join(policy_file(stage.name, f) for f in FUNCTIONS),
        f"run: chalice deploy --stage {stage.name}",
        f"set FunctionResponseTypes=[{REPORT_BATCH_ITEM_FAILURES}] on the event source mapping "
        f"{stage.function_name(CONSUMER)} <- the stage's jobs queue",
        f"check the mapping: {REPORT_BATCH_ITEM_FAILURES}, BatchSize {consumer_batch_size()}, "
        f"MaximumConcurrency {stage.max_concurrency}",
    ]


def deploy(stage: StageSpec, aws: AwsDeployer, say: Callable[[str], None], alarm_topic_arn: str = "",
           run: Callable[..., Any] = subprocess.run) -> dict:
    say(f"1/5 stack {stage.stack_name}")
    outputs = aws.deploy_stack(stage.stack_name, STAGE_TEMPLATE.read_text(), stage.stack_parameters(alarm_topic_arn))
    say("2/5 outputs into .chalice/config.json")
    for setting, (old, new) in record_outputs(stage.name, outputs).items():
        say(f"    {setting}: {old} -> {new}")
    stage = StageSpec.load(stage.name)  # the recorded account/ARNs now name the real resources
    for path in write_policies(stage):
        say(f"    wrote .chalice/{path.name}")
    say(f"3/5 chalice deploy --stage {stage.name}")
    precompile_lambda_code()
    result = run(chalice_command("deploy", "--stage", stage.name), cwd=stages.PROJECT_ROOT)
    if result.returncode != 0:
        raise DeployError(f"chalice deploy failed ({result.returncode}); the resource stack stays (re-run deploy)")
    say(f"4/5 {REPORT_BATCH_ITEM_FAILURES} on {stage.function_name(CONSUMER)}")
    mapping = aws.report_batch_item_failures(stage.function_name(CONSUMER), outputs["JobsQueueArn"])
    say("5/5 check")
    problems = check_mapping(stage, mapping, consumer_batch_size())
    if problems:
        raise DeployError("the deployed event source mapping is wrong: " + "; ".join(problems))
    return mapping


# --- CLI ----------------------------------------------------------------------------------------
def _stage_or_exit(name: str) -> StageSpec:
    try:
        return StageSpec.load(name)
    except (stages.UnknownStage, DeployError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy_command(
        stage: str = typer.Option(..., "--stage", help="A stage in .chalice/config.json"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be done; change nothing"),
        alarm_topic_arn: str = typer.Option("", help="SNS topic the dead-letter alarm notifies"),
    ) -> None:
        """Deploy a stage: its resource stack, chalice deploy, then ReportBatchItemFailures on the consumer."""
        spec = _stage_or_exit(stage)
        if dry_run:
            typer.echo(f"deploy --stage {spec.name} would (nothing done):")
            for number, step in enumerate(deploy_plan(spec, alarm_topic_arn), 1):
                typer.echo(f"  {number}. {step}")
            return
        try:
            mapping = deploy(spec, AwsDeployer.for_region(spec.region), typer.echo, alarm_topic_arn)
        except DeployError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"stage {spec.name} deployed; consumer mapping {mapping['UUID']}: "
                   f"{mapping.get('FunctionResponseTypes')}, BatchSize {mapping.get('BatchSize')}")

    @app.command("package")
    def package_command(
        stage: str = typer.Option(..., "--stage", help="A stage in .chalice/config.json"),
        out: Path = typer.Option(..., "--out", help="Directory for sam.json, deployment.zip and merge-template.json"),
        check: bool = typer.Option(True, help="Transform with aws-sam-translator and cfn-lint the result"),
    ) -> None:
        """One SAM stack for a stage: chalice package with the stage's resources merged in."""
        spec = _stage_or_exit(stage)
        try:
            sam_file = package(spec, out)
            problems = check_package(spec, json.loads(sam_file.read_text())) if check else []
        except DeployError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo(f"{sam_file}: one stack for stage {spec.name}" + (" (transformed and linted: no errors)" if check else ""))
        typer.echo(f"deploy it: sam deploy --template-file {sam_file} --stack-name {APP_NAME}-{spec.name} "
                   f"--capabilities CAPABILITY_NAMED_IAM --resolve-s3  (or aws cloudformation package + deploy)")


