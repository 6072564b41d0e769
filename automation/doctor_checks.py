"""Doctor's checks: each reads AWS (the operator-side adapter: all of doctor's boto3 is here) and returns
PASS / WARN / FAIL with the exact fix. WARN means "could not prove it" or "works, but fragile"; only a
FAIL is certain to break a wave.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Callable, Iterable

import boto3
from botocore.exceptions import ClientError

from automation.deployment import StageSpec, check_mapping, consumer_batch_size
from automation.operator_aws import OPERATOR_CONFIG
from chalicelib.config import Settings
from chalicelib.domain import key_policy
from chalicelib.domain.model import Target

AWS_EBS_ALIAS = "alias/aws/ebs"
SESSION_NAME = "ami-distributor-doctor"
# the functions that assume the target role: advance_jobs, and on_ami_event when an AMI event wakes a job
COPYING_FUNCTIONS = ("advance_jobs", "on_ami_event")
SHOWN = 5  # resources named in one check's detail before "and N more"
# what the copying role does in a target (chalicelib/adapters/ec2.py): DryRun proves the permission
TARGET_ACTIONS = ("CopyImage", "DescribeImages", "CreateTags")
# and, for a target whose distribution names a launch template, what publishing the copy to it takes
LAUNCH_TEMPLATE_ACTIONS = ("CreateLaunchTemplateVersion", "ModifyLaunchTemplate")
# what CopyImage needs of the TARGET's key to encrypt the copy with it
TARGET_KEY_USE = {name: actions for name, actions in key_policy.CROSS_ACCOUNT_COPY.items()} | {
    "kms:Encrypt": ("kms:Encrypt",)}


class Status(str, Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    check: str  # stable ID, e.g. "mgn.replication-template"
    subject: str  # what was checked (a template, a key, a target)
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "Unknown")


def _some(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


@dataclass
class Doctor:
    """Everything doctor looks at, for one stage: the source account (the operator's session) and the targets."""

    settings: Settings
    spec: StageSpec
    session: boto3.Session  # the source account, in the stage's region
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        self.region = self.spec.region
        self._clients: dict[tuple[str, str, int], Any] = {}
        self._key_managers: dict[str, str | None] = {}
        self.source_keys: set[str] = set()  # customer-managed keys the MGN settings encrypt with

    def client(self, service: str, session: boto3.Session | None = None, region: str | None = None) -> Any:
        session = session or self.session
        key = (service, region or self.region, id(session))
        if key not in self._clients:
            self._clients[key] = session.client(service, region_name=region or self.region,
                                                endpoint_url=self.endpoint_url, config=OPERATOR_CONFIG)
        return self._clients[key]

    def run(self) -> list[Check]:
        checks: list[Check] = []
        steps: list[tuple[str, Callable[[], Iterable[Check]]]] = [
            ("mgn.replication-template", self.replication_templates),
            ("mgn.replication-servers", self.replication_servers),
            ("mgn.launch-templates", self.launch_templates),
            ("ebs.default-key", self.ebs_default_key),
            ("kms.source-key-policy", self.source_key_policies),
            ("target", self.targets),
            ("stage.table", self.table),
            ("stage.queue", self.queue),
            ("stage.event-source", self.event_source),
            ("stage.rules", self.rules),
            ("allow-list", self.allow_list),
        ]
        for name, step in steps:
            try:
                checks.extend(step())
            except ClientError as error:  # a read doctor may not make: it cannot tell, so it does not pass
                checks.append(Check(name, "-", Status.WARN, f"could not check: {error}",
                                    "give the operator read access to it (or run doctor with a role that has)"))
        # the key to suggest is known only once every MGN setting was read
        return [_with_key(c, self._suggested_key()) for c in checks]

    # keys -----------------------------------------------------------------------------------------
    def key_manager(self, key_id: str, kms: Any = None) -> str | None:
        """AWS or CUSTOMER; None when the key does not exist (or is not visible)."""
        if key_id not in self._key_managers:
            try:
                self._key_managers[key_id] = (kms or self.client("kms")).describe_key(KeyId=key_id)["KeyMetadata"].get(
                    "KeyManager", "CUSTOMER")
            except ClientError as error:
                if _error_code(error) not in ("NotFoundException", "AccessDeniedException"):
                    raise
                self._key_managers[key_id] = None
        return self._key_managers[key_id]

    def ebs_default(self) -> str:
        return self.client("ec2").get_ebs_default_kms_key_id()["KmsKeyId"]

    def _encryption(self, check: str, subject: str, encryption: str, key_arn: str | None, fix: str) -> Check:
        """One MGN replication setting: CUSTOM with a customer-managed key passes; anything ending at aws/ebs fails."""
        if encryption == "CUSTOM" and key_arn:
            manager = self.key_manager(key_arn)
            if manager == "CUSTOMER":
                self.source_keys.add(key_arn)
                return Check(check, subject, Status.PASS, f"EBS encryption CUSTOM with {key_arn}")
            if manager is None:
                return Check(check, subject, Status.FAIL, f"EBS encryption key {key_arn} does not exist", fix)
            return Check(check, subject, Status.FAIL, f"EBS encryption key {key_arn} is AWS-managed: its snapshots "
                         "can never be shared", fix)
        default = self.ebs_default()
        if default == AWS_EBS_ALIAS or self.key_manager(default) != "CUSTOMER":
            return Check(check, subject, Status.FAIL, f"EBS encryption DEFAULT, and the region's EBS default key is "
                         f"the AWS-managed aws/ebs ({default}): its snapshots can never be shared", fix)
        self.source_keys.add(self._key_arn(default))
        return Check(check, subject, Status.WARN, f"EBS encryption DEFAULT follows the region's EBS default key "
                     f"({default}, customer-managed today); a change of that default would silently break sharing",
                     fix)

    def _key_arn(self, key_id: str) -> str:
        return self.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]

    def _suggested_key(self) -> str:
        """A customer-managed key some MGN setting already uses (the one to standardize on), else a placeholder."""
        return next(iter(sorted(self.source_keys)), "<customer-managed key ARN>")

    # MGN --------------------------------------------------------------------------------------------
    def replication_templates(self) -> list[Check]:
        mgn, checks = self.client("mgn"), []
        for template in _pages(mgn, "describe_replication_configuration_templates"):
            template_id = template["replicationConfigurationTemplateID"]
            fix = (f"aws mgn update-replication-configuration-template --region {self.region} "
                   f"--replication-configuration-template-id {template_id} --ebs-encryption CUSTOM "
                   f"--ebs-encryption-key-arn {{KEY}}")
            checks.append(self._encryption("mgn.replication-template", template_id, template.get("ebsEncryption", ""),
                                           template.get("ebsEncryptionKeyArn"), fix))
        return checks or [Check(
            "mgn.replication-template", self.region, Status.WARN, "MGN has no replication template here "
            "(not initialized in this region?)", f"aws mgn initialize-service --region {self.region}")]

    def _servers(self) -> list[dict]:
        if not hasattr(self, "_server_list"):
            self._server_list = [s for s in _pages(self.client("mgn"), "describe_source_servers", filters={})
                                 if not s.get("isArchived")]
        return self._server_list

    def replication_servers(self) -> list[Check]:
        mgn, failed, warned = self.client("mgn"), [], []
        for server in self._servers():
            configuration = mgn.get_replication_configuration(sourceServerID=server["sourceServerID"])
            result = self._encryption("mgn.replication-servers", server["sourceServerID"],
                                      configuration.get("ebsEncryption", ""), configuration.get("ebsEncryptionKeyArn"), "")
            (failed if result.status is Status.FAIL else warned if result.status is Status.WARN else []).append(
                (server["sourceServerID"], result.detail))
        subject, total = f"{len(self._servers())} source servers", len(self._servers())
        fix = (f"for each: aws mgn update-replication-configuration --region {self.region} --source-server-id ID "
               "--ebs-encryption CUSTOM --ebs-encryption-key-arn {KEY}")
        if failed:
            return [Check("mgn.replication-servers", subject, Status.FAIL,
                          f"{len(failed)} of {total} replicate to AWS-managed encryption ({failed[0][1]}): "
                          f"{_some([i for i, _ in failed])}", fix)]
        if warned:
            return [Check("mgn.replication-servers", subject, Status.WARN,
                          f"{len(warned)} of {total} use DEFAULT EBS encryption: {_some([i for i, _ in warned])}", fix)]
        return [Check("mgn.replication-servers", subject, Status.PASS,
                      f"all {total} replicate with a customer-managed key" if total else "no source servers yet")]

    def launch_templates(self) -> list[Check]:
        mgn, ec2, bad = self.client("mgn"), self.client("ec2"), []
        for server in self._servers():
            launch = mgn.get_launch_configuration(sourceServerID=server["sourceServerID"])
            template_id = launch.get("ec2LaunchTemplateID")
            if not template_id:
                continue
            [version] = ec2.describe_launch_template_versions(LaunchTemplateId=template_id,
                                                              Versions=["$Default"])["LaunchTemplateVersions"]
            for mapping in version["LaunchTemplateData"].get("BlockDeviceMappings", []):
                key = (mapping.get("Ebs") or {}).get("KmsKeyId")
                if key and self.key_manager(key) != "CUSTOMER":
                    bad.append(f"{server['sourceServerID']} ({template_id} {mapping.get('DeviceName')}: {key})")
        subject = f"{len(self._servers())} launch templates"
        if bad:
            return [Check("mgn.launch-templates", subject, Status.FAIL,
                          f"launch settings encrypt volumes with an AWS-managed or missing key: {_some(bad)}",
                          "in each server's EC2 launch template (MGN > Launch settings), set the EBS volumes' KMS key "
                          "to {KEY} and make that version the default")]
        return [Check("mgn.launch-templates", subject, Status.PASS,
                      "no launch template names an AWS-managed key (volumes keep the replication key)")]

    def ebs_default_key(self) -> list[Check]:
        # the stage's region is its only source region: the consumer images instances with its own region's EC2
        # client (chalicelib/bootstrap.py), its policy and EventBridge rules are in that region; targets elsewhere
        # only receive copies, re-encrypted with their own key, so their EBS default never touches a snapshot
        default = self.ebs_default()
        by_default = self.client("ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"]
        fix = f"aws ec2 modify-ebs-default-kms-key-id --region {self.region} --kms-key-id {{KEY}}"
        if default == AWS_EBS_ALIAS or self.key_manager(default) != "CUSTOMER":
            return [Check("ebs.default-key", self.region, Status.WARN,
                          f"the EBS default key is the AWS-managed aws/ebs (encryption by default "
                          f"{'on' if by_default else 'off'}): any MGN setting left at DEFAULT makes unshareable "
                          "snapshots", fix)]
        return [Check("ebs.default-key", self.region, Status.PASS, f"EBS default key {default} is customer-managed")]

    # the source key's policy ------------------------------------------------------------------------
    def _organization_id(self) -> str | None:
        try:
            return self.client("organizations").describe_organization()["Organization"]["Id"]
        except ClientError:
            return None  # no organization, or not allowed to ask: aws:PrincipalOrgID cannot be evaluated

    def source_key_policies(self) -> list[Check]:
        kms, checks = self.client("kms"), []
        if not self.source_keys:
            return [Check("kms.source-key-policy", "-", Status.FAIL, "no customer-managed key in the MGN settings, "
                          "so there is no key whose policy could let the targets copy",
                          "fix the mgn.* checks first (set a customer-managed key), then run doctor again")]
        organization = self._organization_id()
        for key_arn in sorted(self.source_keys):
            policy = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
            grants = _pages(kms, "list_grants", "Grants", token="Marker", next_token="NextMarker", KeyId=key_arn)
            refused, unsure = [], []
            for account in self.settings.distribution.share_accounts:
                caller = key_policy.Caller(account, f"arn:aws:iam::{account}:role/{self.settings.role_name}",
                                           organization, f"ec2.{self.region}.amazonaws.com")
                try:
                    verdict = key_policy.evaluate(policy, caller, grants)
                except key_policy.PolicyError as error:
                    refused.append(key_policy.Verdict(account, tuple(key_policy.CROSS_ACCOUNT_COPY), notes=(str(error),)))
                    continue
                if verdict.refused:
                    refused.append(verdict)
                elif not verdict.ok:
                    unsure.append(verdict)
            if refused:
                accounts = [v.account_id for v in refused]
                missing = sorted({m for v in refused for m in v.missing})
                denied = sorted({d for v in refused for d in v.denied_by})
                detail = f"accounts {', '.join(accounts)} may not use {', '.join(missing)}"
                fix = (f"remove or narrow the Deny statement(s) {', '.join(denied)}; " if denied else "") + (
                    f"add this statement to the key policy: "
                    f"{json.dumps(key_policy.suggested_statement(accounts, missing), sort_keys=True)}")
                checks.append(Check("kms.source-key-policy", key_arn, Status.FAIL, detail, fix))
            elif unsure:
                notes = sorted({n for v in unsure for n in v.notes})
                checks.append(Check("kms.source-key-policy", key_arn, Status.WARN,
                                    f"could not prove accounts {', '.join(v.account_id for v in unsure)} may copy: "
                                    f"{'; '.join(notes)}",
                                    "grant the target accounts directly (statement "
                                    f"{key_policy.SUGGESTED_SID}) or run doctor where the organization is visible"))
            else:
                checks.append(Check("kms.source-key-policy", key_arn, Status.PASS,
                                    f"every target account may use it for the copy "
                                    f"({', '.join(self.settings.distribution.share_accounts)})"))
        return checks

    # targets ------------------------------------------------------------------------------------------
    def _distributor_sessions(self) -> list[tuple[boto3.Session, str]]:
        """Assume the target roles as each function role that copies (those the target's trust policy must name),
        where the operator may assume it; otherwise as the operator, and say so."""
        sts, found = self.client("sts"), []
        for function in COPYING_FUNCTIONS:
            role_arn = f"arn:aws:iam::{self.spec.account}:role/{self.spec.function_name(function)}"
            try:
                credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
            except ClientError:
                continue
            found.append((_session(credentials, self.region), role_arn))
        return found or [(self.session, sts.get_caller_identity()["Arn"])]

    def targets(self) -> list[Check]:
        distributors = self._distributor_sessions()
        checks, sessions = [], {}
        for target in self.settings.distribution.targets:
            role_arn = f"arn:aws:iam::{target.account_id}:role/{self.settings.role_name}"
            if target.account_id not in sessions:
                # every copying role must be trusted; the first one's session runs the checks below
                assumed = [self._assume_target_role(target, session, identity, role_arn)
                           for session, identity in distributors]
                checks += [check for _, check in assumed]
                sessions[target.account_id] = assumed[0][0] if all(s for s, _ in assumed) else None
            session = sessions[target.account_id]
            if session is None:
                continue
            checks.append(self._target_permissions(target, session, role_arn))
            if target.copy:
                checks.append(self._target_key(target, session, role_arn))
        return checks

    def _assume_target_role(self, target: Target, distributor: boto3.Session, identity: str,
                            role_arn: str) -> tuple[boto3.Session | None, Check]:
        request = {"RoleArn": role_arn, "RoleSessionName": SESSION_NAME}
        if self.settings.external_id:
            request["ExternalId"] = self.settings.external_id
        try:
            credentials = self.client("sts", distributor).assume_role(**request)["Credentials"]
        except ClientError as error:
            roles = ",".join(f"arn:aws:iam::{self.spec.account}:role/{self.spec.function_name(f)}"
                             for f in COPYING_FUNCTIONS)
            return None, Check("target.assume-role", target.key, Status.FAIL,
                               f"{identity} cannot assume {role_arn} with ExternalId "
                               f"{self.settings.external_id!r}: {_error_code(error)}",
                               f"in account {target.account_id}, deploy automation/templates/target-account-role.yaml "
                               f"with RoleName={self.settings.role_name} ExternalId={self.settings.external_id} "
                               f"DistributorRoleArns={roles} (the trust policy must allow them "
                               "with sts:ExternalId equal to CROSS_ACCOUNT_EXTERNAL_ID)")
        return _session(credentials, target.region), Check(
            "target.assume-role", target.key, Status.PASS, f"{identity} assumes {role_arn} with the configured ExternalId")

    def _target_permissions(self, target: Target, session: boto3.Session, role_arn: str) -> Check:
        ec2 = self.client("ec2", session, target.region)
        template = target.launch_template if target.copy else None
        probes = {
            "CopyImage": lambda: ec2.copy_image(DryRun=True, SourceImageId="ami-0123456789abcdef0",
                                                SourceRegion=self.region, Name="ami-distributor-doctor"),
            "DescribeImages": lambda: ec2.describe_images(DryRun=True, Owners=["self"]),
            "CreateTags": lambda: ec2.create_tags(DryRun=True, Resources=["ami-0123456789abcdef0"],
                                                  Tags=[{"Key": "ami-distributor:doctor", "Value": "dry-run"}]),
            # on the named template itself: the role may only touch templates their owners tagged for it
            "CreateLaunchTemplateVersion": lambda: ec2.create_launch_template_version(
                DryRun=True, LaunchTemplateName=template, SourceVersion="$Default",
                LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}),
            "ModifyLaunchTemplate": lambda: ec2.modify_launch_template(DryRun=True, LaunchTemplateName=template,
                                                                       DefaultVersion="1"),
        }
        actions = TARGET_ACTIONS + (LAUNCH_TEMPLATE_ACTIONS if template else ())
        denied = []
        for action in actions:
            try:
                probes[action]()
            except ClientError as error:
                if _error_code(error) == "DryRunOperation":
                    continue
                if _error_code(error) in ("UnauthorizedOperation", "AccessDenied"):
                    denied.append(f"ec2:{action}")
                    continue
                raise
        if denied:
            fix = (f"allow {', '.join(denied)} in the role's policy (target-account-role.yaml, policy "
                   "copy-shared-amis)")
            if any(action.removeprefix("ec2:") in LAUNCH_TEMPLATE_ACTIONS for action in denied):
                fix += (f"; for launch template {template}: deploy the role with UpdateLaunchTemplates=true and tag "
                        "the template ami-distributor:managed=true")
            return Check("target.permissions", target.key, Status.FAIL, f"{role_arn} may not call {', '.join(denied)}",
                         fix)
        return Check("target.permissions", target.key, Status.PASS,
                     f"{role_arn} may call {', '.join('ec2:' + a for a in actions)} (DryRun)")

    def _target_key(self, target: Target, session: boto3.Session, role_arn: str) -> Check:
        kms = self.client("kms", session, target.region)
        try:
            metadata = kms.describe_key(KeyId=target.kms_key_id)["KeyMetadata"]
        except ClientError as error:
            return Check("target.kms-key", target.key, Status.FAIL,
                         f"{target.kms_key_id} is not usable by {role_arn}: {_error_code(error)}",
                         f"create the key in {target.account_id}/{target.region} (alias as configured) and let the "
                         "role use it, or fix kmsKeyId in the stage's DISTRIBUTION")
        if metadata.get("KeyState") != "Enabled" or metadata.get("KeyManager") != "CUSTOMER":
            return Check("target.kms-key", target.key, Status.FAIL,
                         f"{metadata['Arn']} is {metadata.get('KeyState')}, {metadata.get('KeyManager')}-managed",
                         "use an enabled customer-managed key for the copies")
        try:
            policy = kms.get_key_policy(KeyId=metadata["Arn"], PolicyName="default")["Policy"]
        except ClientError as error:
            return Check("target.kms-key", target.key, Status.WARN,
                         f"{metadata['Arn']} exists and is enabled; its policy is not readable by the role "
                         f"({_error_code(error)})", "allow kms:GetKeyPolicy to the role, or check the policy by hand")
        verdict = key_policy.evaluate(policy, key_policy.Caller(target.account_id, role_arn), required=TARGET_KEY_USE)
        if verdict.refused:
            return Check("target.kms-key", target.key, Status.FAIL, verdict.explain(metadata["Arn"]),
                         "add to the target key's policy: "
                         + json.dumps(key_policy.suggested_statement([target.account_id], verdict.missing)
                                      | {"Principal": {"AWS": [role_arn]}}, sort_keys=True))
        if not verdict.ok:
            return Check("target.kms-key", target.key, Status.WARN, f"could not prove {role_arn} may use "
                         f"{metadata['Arn']}: {'; '.join(verdict.notes)}", "grant the role directly in the key policy")
        return Check("target.kms-key", target.key, Status.PASS, f"{role_arn} may encrypt copies with {metadata['Arn']}")

    # the deployed stage -----------------------------------------------------------------------------------
    def table(self) -> list[Check]:
        try:
            table = self.client("dynamodb").describe_table(TableName=self.settings.table_name)["Table"]
        except ClientError as error:
            if _error_code(error) != "ResourceNotFoundException":
                raise
            return [Check("stage.table", self.settings.table_name, Status.FAIL, "the jobs table does not exist",
                          f"python -m automation deploy --stage {self.spec.name}")]
        indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        missing = {"by-wave", "by-image"} - indexes
        if missing:
            return [Check("stage.table", self.settings.table_name, Status.FAIL,
                          f"the jobs table lacks the indexes {sorted(missing)}", "redeploy the stage's resources stack")]
        return [Check("stage.table", self.settings.table_name, Status.PASS,
                      f"{table['TableStatus']}, indexes by-wave and by-image")]

    def queue(self) -> list[Check]:
        sqs, queue_url = self.client("sqs"), self.settings.queue_url
        name, account = self.settings.queue_arn.split(":")[5], self.settings.queue_arn.split(":")[4]
        deploy = f"python -m automation deploy --stage {self.spec.name}"
        try:
            queue_url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        except ClientError as error:
            if "NonExistentQueue" not in _error_code(error) and _error_code(error) != "QueueDoesNotExist":
                raise
            return [Check("stage.queue", name, Status.FAIL, "the jobs queue does not exist", deploy)]
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        checks = [Check("stage.queue", name, Status.PASS, "the jobs queue exists")]
        redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        if not redrive.get("deadLetterTargetArn"):
            checks.append(Check("stage.dlq", name, Status.FAIL, "the jobs queue has no redrive policy: a poisoned "
                                "message would be retried until it expires", deploy))
        else:
            dlq_name = redrive["deadLetterTargetArn"].split(":")[5]
            try:
                sqs.get_queue_url(QueueName=dlq_name, QueueOwnerAWSAccountId=account)
                checks.append(Check("stage.dlq", dlq_name, Status.PASS,
                                    f"redrive to {dlq_name} after {redrive.get('maxReceiveCount')} receives"))
            except ClientError:
                checks.append(Check("stage.dlq", dlq_name, Status.FAIL,
                                    "the redrive policy names a dead-letter queue that does not exist", deploy))
        visibility, needed = int(attributes.get("VisibilityTimeout", "30")), 6 * self.spec.consumer_timeout_s
        if visibility < needed:
            checks.append(Check("stage.visibility", name, Status.FAIL,
                                f"visibility timeout {visibility} s < 6 × the consumer's {self.spec.consumer_timeout_s} s "
                                "timeout: messages are redelivered while still being worked on",
                                f"aws sqs set-queue-attributes --queue-url {queue_url} "
                                f"--attributes VisibilityTimeout={needed}"))
        else:
            checks.append(Check("stage.visibility", name, Status.PASS,
                                f"visibility timeout {visibility} s ≥ 6 × {self.spec.consumer_timeout_s} s"))
        return checks

    def event_source(self) -> list[Check]:
        function = self.spec.function_name("advance_jobs")
        try:
            mappings = self.client("lambda").list_event_source_mappings(
                FunctionName=function, EventSourceArn=self.settings.queue_arn)["EventSourceMappings"]
        except ClientError as error:
            if _error_code(error) != "ResourceNotFoundException":
                raise
            mappings = []
        if not mappings:
            return [Check("stage.event-source", function, Status.WARN,
                          f"not deployed: no event source mapping from the jobs queue to {function} (in the sandbox "
                          "the local runner stands in for Lambda)", f"python -m automation deploy --stage {self.spec.name}")]
        problems = check_mapping(self.spec, mappings[0], consumer_batch_size())
        if problems:
            return [Check("stage.event-source", function, Status.FAIL, "; ".join(problems),
                          f"python -m automation deploy --stage {self.spec.name} (it sets ReportBatchItemFailures "
                          "after chalice deploy)")]
        return [Check("stage.event-source", function, Status.PASS, "ReportBatchItemFailures, batch size and "
                      "maximum concurrency as configured")]

    def rules(self) -> list[Check]:
        from app import AMI_EVENTS, MGN_AND_OPERATOR_EVENTS

        events, found = self.client("events"), {}
        for rule in _pages(events, "list_rules", "Rules", token="NextToken"):
            pattern = json.loads(rule.get("EventPattern") or "null")
            for name, wanted in (("on_mgn_event", MGN_AND_OPERATOR_EVENTS), ("on_ami_event", AMI_EVENTS)):
                if pattern == wanted:
                    found.setdefault(name, []).append(rule)
        checks = []
        for name in ("on_mgn_event", "on_ami_event"):
            rules = found.get(name, [])
            enabled = [r for r in rules if r.get("State") == "ENABLED"
                       and events.list_targets_by_rule(Rule=r["Name"])["Targets"]]
            if enabled:
                checks.append(Check("stage.rules", name, Status.PASS, f"rule {enabled[0]['Name']} is enabled, with a target"))
            elif rules:
                checks.append(Check("stage.rules", name, Status.FAIL, f"rule {rules[0]['Name']} is disabled or has no "
                                    "target: its events are dropped", f"aws events enable-rule --name {rules[0]['Name']}"))
            else:
                checks.append(Check("stage.rules", name, Status.FAIL, f"no EventBridge rule with app.py's pattern for "
                                    f"{name}", f"python -m automation deploy --stage {self.spec.name}"))
        return checks

    # the allow-list -----------------------------------------------------------------------------------------
    def allow_list(self) -> list[Check]:
        distribution = self.settings.distribution
        checks = []
        no_key = [t.key for t in distribution.copy_targets if not t.kms_key_id]
        if no_key:
            checks.append(Check("allow-list.targets", "DISTRIBUTION", Status.FAIL,
                                f"targets {no_key} copy without a KMS key of their own", "set kmsKeyId for each"))
        else:
            names = [t.key for t in distribution.targets] + list(distribution.organization_arns) + list(
                distribution.organizational_unit_arns)
            checks.append(Check("allow-list.targets", "DISTRIBUTION", Status.PASS,
                                f"every configured target is in the stage's allow-list: {', '.join(names)}"))
        try:
            state = self.client("ec2").get_image_block_public_access_state()["ImageBlockPublicAccessState"]
        except ClientError:
            state = None
        detail = "the distribution shares with accounts, organizations and OUs only, never 'all'"
        fix = f"aws ec2 enable-image-block-public-access --region {self.region} --image-block-public-access-state block-new-sharing"
        if state == "block-new-sharing":
            checks.append(Check("allow-list.public", self.region, Status.PASS, detail + "; AMI block public access is on"))
        else:
            checks.append(Check("allow-list.public", self.region, Status.WARN,
                                detail + f"; AMI block public access is {state or 'unknown'} in the account", fix))
        return checks


def _with_key(check: Check, key: str) -> Check:
    return Check(check.check, check.subject, check.status, check.detail, check.fix.replace("{KEY}", key))


def _session(credentials: dict, region: str) -> boto3.Session:
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"], region_name=region)


def _pages(client: Any, operation: str, items: str = "items", token: str = "nextToken",
           next_token: str | None = None, **request: Any) -> list[dict]:
    """Every page of a list call (some sandbox services ignore page sizes, so never assume one page)."""
    found, request = [], dict(request)
    while True:
        page = getattr(client, operation)(**request)
        found += page.get(items, [])
        following = page.get(next_token or token)
        if not following:
            return found
        request[token] = following
