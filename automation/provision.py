"""Everything a stage needs in the sandbox: the table, the queues, keys, target roles and a wave of MGN servers.

The shapes mirror automation/templates/ (the stage's CloudFormation), so the service meets in the
sandbox what it meets in AWS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from automation.sandbox import SOURCE_ACCOUNT, Sandbox

EVENTS_QUEUE = "ami-distributor-local-events"  # stands in for EventBridge's Lambda targets, which moto lacks
MAX_RECEIVE_COUNT = 5
SOURCE_KEY_ALIAS = "alias/ami-distributor-source"
# a realistic mix of server disk layouts: (root GiB, [data GiB, ...])
DISK_LAYOUTS = [(30, []), (50, [100]), (80, [200]), (40, [20, 20]), (100, [500]), (60, [])]


@dataclass
class ProvisionedStage:
    env: dict[str, str]
    jobs_queue_url: str
    dlq_url: str
    events_queue_url: str
    source_key_arn: str

    @property
    def region(self) -> str:
        return self.env["JOBS_QUEUE_ARN"].split(":")[3]


def provision(sandbox: Sandbox, env: dict[str, str], visibility_timeout_s: int = 360) -> ProvisionedStage:
    region = env["JOBS_QUEUE_ARN"].split(":")[3]
    _create_table(sandbox.client("dynamodb", region=region), env["JOBS_TABLE"])
    sqs = sandbox.client("sqs", region=region)
    queue_name = env["JOBS_QUEUE_ARN"].split(":")[5]
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    jobs_url = sqs.create_queue(QueueName=queue_name, Attributes={
        "VisibilityTimeout": str(visibility_timeout_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
    })["QueueUrl"]
    events_url = _route_events_to_queue(sandbox, region)
    source_key = key(sandbox, SOURCE_ACCOUNT, region, SOURCE_KEY_ALIAS)
    distribution = json.loads(env["DISTRIBUTION"])
    _prepare_source_encryption(sandbox, region, source_key, [t["accountId"] for t in distribution["targets"]])
    for target in distribution["targets"]:
        if target.get("kmsKeyId"):
            key(sandbox, target["accountId"], target["region"], target["kmsKeyId"].split(":", 5)[5])
        _target_role(sandbox, target["accountId"], env["CROSS_ACCOUNT_ROLE_NAME"], env.get("CROSS_ACCOUNT_EXTERNAL_ID"))
        _forward_ami_events(sandbox, target["accountId"], target["region"], region)
    return ProvisionedStage(env, jobs_url, dlq_url, events_url, source_key)


def _create_table(dynamodb, name: str) -> None:
    try:
        _create_jobs_table(dynamodb, name)
    except dynamodb.exceptions.ResourceInUseException:
        return  # provisioned already (`sandbox --servers N`, then `demo --endpoint-url`)
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


def _create_jobs_table(dynamodb, name: str) -> None:
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              (("job_id", "S"), ("wave", "S"), ("created_at", "N"), ("awaited_image_id", "S"))],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-wave", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "wave", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}]},
            {"IndexName": "by-image", "Projection": {"ProjectionType": "KEYS_ONLY"},
             "KeySchema": [{"AttributeName": "awaited_image_id", "KeyType": "HASH"}]},
        ],
    )


def _route_events_to_queue(sandbox: Sandbox, region: str) -> str:
    """The two rules app.py declares, targeting a queue the local runner reads (moto has no Lambda targets)."""
    from app import AMI_EVENTS, MGN_AND_OPERATOR_EVENTS

    sqs, events = sandbox.client("sqs", region=region), sandbox.client("events", region=region)
    url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name, pattern in (("on_mgn_event", MGN_AND_OPERATOR_EVENTS), ("on_ami_event", AMI_EVENTS)):
        events.put_rule(Name=f"ami-distributor-{name}", EventPattern=json.dumps(pattern))
        events.put_targets(Rule=f"ami-distributor-{name}", Targets=[{"Id": name, "Arn": arn}])
    return url


def _forward_ami_events(sandbox: Sandbox, account: str, region: str, source_region: str) -> None:
    """Targets forward their AMI state changes to the source account's bus (the StackSet sets this up)."""
    events = sandbox.client("events", account_id=account, region=region)
    events.put_rule(Name="ami-distributor-forward", EventPattern=json.dumps(
        {"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"]}))
    events.put_targets(Rule="ami-distributor-forward", Targets=[{
        "Id": "source-bus", "Arn": f"arn:aws:events:{source_region}:{SOURCE_ACCOUNT}:event-bus/default"}])


def key(sandbox: Sandbox, account: str, region: str, alias: str) -> str:
    """The customer-managed key behind `alias`, made if it does not exist yet."""
    kms = sandbox.client("kms", account_id=account, region=region)
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    except kms.exceptions.NotFoundException:
        made = kms.create_key(Description=f"ami-distributor {alias}")["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=made["KeyId"])
        return made["Arn"]


def _prepare_source_encryption(sandbox: Sandbox, region: str, source_key: str, target_accounts: list[str]) -> None:
    """What source-key.yaml and the MGN settings give a real source account: the key lets every target
    account use it for the copy, MGN replicates (and so launches) with it, and it is the EBS default;
    and no AMI of the account can be made public."""
    from chalicelib.domain.key_policy import suggested_statement

    owner = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [owner, suggested_statement(target_accounts)]}
    sandbox.client("kms", region=region).put_key_policy(KeyId=source_key, PolicyName="default",
                                                       Policy=json.dumps(policy))
    ec2 = sandbox.client("ec2", region=region)
    ec2.modify_ebs_default_kms_key_id(KmsKeyId=source_key)
    ec2.enable_image_block_public_access(ImageBlockPublicAccessState="block-new-sharing")  # as doctor advises
    mgn = sandbox.client("mgn", region=region)
    [template] = mgn.describe_replication_configuration_templates()["items"]
    mgn.update_replication_configuration_template(
        replicationConfigurationTemplateID=template["replicationConfigurationTemplateID"],
        ebsEncryption="CUSTOM", ebsEncryptionKeyArn=source_key)


# the role's permissions, as target-account-role.yaml grants them
TARGET_ROLE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "CopyIntoThisAccount", "Effect": "Allow", "Action": ["ec2:CopyImage", "ec2:CreateTags"], "Resource": "*"},
    {"Sid": "ReadImages", "Effect": "Allow", "Action": ["ec2:DescribeImages", "ec2:DeregisterImage"], "Resource": "*"},
    {"Sid": "Publish", "Effect": "Allow", "Action": ["ssm:PutParameter", "ssm:AddTagsToResource",
                                                     "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
                                                     "ec2:EnableImageDeregistrationProtection"], "Resource": "*"},
    {"Sid": "UseKeys", "Effect": "Allow", "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
                                                     "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
     "Resource": "*"}]}


def _target_role(sandbox: Sandbox, account: str, role_name: str, external_id: str | None) -> None:
    iam = sandbox.client("iam", account_id=account)
    condition = {"StringEquals": {"sts:ExternalId": external_id}} if external_id else {}
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}, "Condition": condition}]}
    try:
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        pass  # two targets in one account share the role
    iam.put_role_policy(RoleName=role_name, PolicyName="copy-shared-amis", PolicyDocument=json.dumps(TARGET_ROLE_POLICY))


def seed_servers(sandbox: Sandbox, count: int, region: str, source_key_arn: str,
                 layouts: list[tuple[int, list[int]]] | None = None) -> list[str]:
    """`count` MGN source servers with mixed disk layouts (`layouts`, cycled; DISK_LAYOUTS by default),
    encrypted with the customer-managed source key."""
    from automation.sandbox.mgn import MgnService

    mgn = sandbox.extension(MgnService)
    layouts = layouts or DISK_LAYOUTS
    servers = []
    for index in range(count):
        root, data = layouts[index % len(layouts)]
        volumes = [{"device": "/dev/sda1", "size_gib": root, "kms_key_id": source_key_arn}]
        volumes += [{"device": f"/dev/sd{chr(ord('f') + n)}", "size_gib": size, "kms_key_id": source_key_arn}
                    for n, size in enumerate(data)]
        servers.append(mgn.add_source_server(SOURCE_ACCOUNT, region, f"app-{index:04d}.corp.example", volumes))
    return servers
