"""doctor against the sandbox: each check passes on the provisioned (demo) stage and fails on a broken one."""
import json

from automation import provision
from automation.doctor_checks import Status
from automation.sandbox.mgn import MgnService
from automation.sandbox import SOURCE_ACCOUNT

REGION = "us-east-1"
TARGET_A, TARGET_B = "222222222222", "333333333333"


def by_check(checks, name):
    return [c for c in checks if c.check == name]


def statuses(checks):
    return {(c.check, c.subject): c.status.value for c in checks}


def test_the_demo_stage_passes(stage, diagnose):
    _, checks = diagnose()
    failed = [c for c in checks if c.status is Status.FAIL]
    assert failed == []
    warned = {c.check for c in checks if c.status is Status.WARN}
    # no Lambda in the sandbox: said, not pretended
    assert warned == {"stage.event-source"}
    assert by_check(checks, "stage.event-source")[0].detail.startswith("not deployed")
    names = {c.check for c in checks}
    assert names >= {"mgn.replication-template", "mgn.replication-servers", "mgn.launch-templates", "ebs.default-key",
                     "kms.source-key-policy", "target.assume-role", "target.permissions", "target.kms-key",
                     "stage.table", "stage.queue", "stage.dlq", "stage.visibility", "stage.rules", "allow-list.targets"}


def test_aws_ebs_default_fails_the_mgn_checks(stage, sandbox, diagnose):
    mgn = sandbox.client("mgn")
    [template] = mgn.describe_replication_configuration_templates()["items"]
    mgn.update_replication_configuration_template(
        replicationConfigurationTemplateID=template["replicationConfigurationTemplateID"], ebsEncryption="DEFAULT")
    sandbox.extension(MgnService).add_source_server(
        SOURCE_ACCOUNT, REGION, "legacy.corp.example", [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": "aws/ebs"}])
    ec2 = sandbox.client("ec2")
    ebs = sandbox.client("kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    ec2.modify_ebs_default_kms_key_id(KmsKeyId=ebs)
    _, checks = diagnose()
    [template_check] = by_check(checks, "mgn.replication-template")
    assert template_check.status is Status.FAIL and "aws/ebs" in template_check.detail
    assert "--ebs-encryption CUSTOM --ebs-encryption-key-arn arn:aws:kms:" in template_check.fix
    [servers] = by_check(checks, "mgn.replication-servers")
    assert servers.status is Status.FAIL and "1 of 4" in servers.detail
    [launch] = by_check(checks, "mgn.launch-templates")
    assert launch.status is Status.FAIL and ebs in launch.detail
    [default] = by_check(checks, "ebs.default-key")
    assert default.status is Status.WARN and "modify-ebs-default-kms-key-id" in default.fix


def test_a_key_policy_without_a_target_fails_naming_the_statement(stage, sandbox, diagnose):
    kms = sandbox.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=stage.source_key_arn)["Policy"])
    policy["Statement"] = policy["Statement"][:1]  # only the owner's statement is left
    kms.put_key_policy(KeyId=stage.source_key_arn, Policy=json.dumps(policy))
    _, checks = diagnose()
    [check] = by_check(checks, "kms.source-key-policy")
    assert check.status is Status.FAIL and TARGET_A in check.detail and TARGET_B in check.detail
    statement = json.loads(check.fix.split("key policy: ", 1)[1])
    assert statement["Principal"]["AWS"] == [f"arn:aws:iam::{TARGET_A}:root", f"arn:aws:iam::{TARGET_B}:root"]
    assert "kms:CreateGrant" in statement["Action"]


def test_a_grant_can_stand_for_the_statement(stage, sandbox, diagnose):
    kms = sandbox.client("kms")
    kms.put_key_policy(KeyId=stage.source_key_arn, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]}))
    for account in (TARGET_A, TARGET_B):
        kms.create_grant(KeyId=stage.source_key_arn, GranteePrincipal=f"arn:aws:iam::{account}:root",
                         Operations=["Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                                     "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant"])
    _, checks = diagnose()
    assert by_check(checks, "kms.source-key-policy")[0].status is Status.PASS


def test_a_role_with_another_external_id_fails(stage, sandbox, diagnose):
    iam = sandbox.client("iam", account_id=TARGET_B)
    iam.update_assume_role_policy(RoleName="AmiDistributorCopyRole", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"},
        "Condition": {"StringEquals": {"sts:ExternalId": "someone-else"}}}]}))
    _, checks = diagnose()
    results = statuses(checks)
    assert results[("target.assume-role", f"{TARGET_A}/us-east-1")] == "PASS"
    [failed] = [c for c in by_check(checks, "target.assume-role") if c.status is Status.FAIL]
    assert failed.subject == f"{TARGET_B}/us-west-2" and "'ami-distributor-local'" in failed.detail
    assert "ExternalId=ami-distributor-local" in failed.fix and "target-account-role.yaml" in failed.fix
    # nothing more is checked through a role that cannot be assumed
    assert not [c for c in checks if c.subject == f"{TARGET_B}/us-west-2" and c.check != "target.assume-role"]


def test_a_missing_role_fails(stage, sandbox, diagnose):
    iam = sandbox.client("iam", account_id=TARGET_A)
    iam.delete_role_policy(RoleName="AmiDistributorCopyRole", PolicyName="copy-shared-amis")
    iam.delete_role(RoleName="AmiDistributorCopyRole")
    _, checks = diagnose()
    assert statuses(checks)[("target.assume-role", f"{TARGET_A}/us-east-1")] == "FAIL"


def test_a_role_that_may_not_copy_fails(stage, sandbox, diagnose):
    iam = sandbox.client("iam", account_id=TARGET_A)
    iam.put_role_policy(RoleName="AmiDistributorCopyRole", PolicyName="copy-shared-amis", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}]}))
    _, checks = diagnose()
    [check] = [c for c in by_check(checks, "target.permissions") if c.subject == f"{TARGET_A}/us-east-1"]
    assert check.status is Status.FAIL and "ec2:CopyImage, ec2:CreateTags" in check.detail


def test_a_role_that_may_not_update_the_named_launch_template_fails(stage, sandbox):
    """A target whose distribution names a launch template: doctor asks EC2 (DryRun, on that template) whether
    the role may make it a new default version, and says how to grant it."""
    from automation.deployment import StageSpec
    from automation.doctor_checks import Doctor
    from automation.stages import function_environment
    from chalicelib import config

    env = function_environment("local")
    distribution = json.loads(env["DISTRIBUTION"])
    distribution["targets"][0]["publish"] = {"launchTemplateName": "web-tier"}
    settings = config.load({**env, "DISTRIBUTION": json.dumps(distribution)})
    sandbox.client("ec2", account_id=TARGET_A).create_launch_template(
        LaunchTemplateName="web-tier", LaunchTemplateData={"InstanceType": "t3.micro"})

    def permissions():
        checks = Doctor(settings, StageSpec.load("local"), sandbox.session(SOURCE_ACCOUNT, REGION)).run()
        return {c.subject: c for c in by_check(checks, "target.permissions")}

    allowed = permissions()
    assert allowed[f"{TARGET_A}/us-east-1"].status is Status.PASS
    assert "ec2:ModifyLaunchTemplate" in allowed[f"{TARGET_A}/us-east-1"].detail
    assert "LaunchTemplate" not in allowed[f"{TARGET_B}/us-west-2"].detail  # names no template: not asked

    iam = sandbox.client("iam", account_id=TARGET_A)
    policy = json.loads(json.dumps(provision.TARGET_ROLE_POLICY))
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if "LaunchTemplate" not in a]
    iam.put_role_policy(RoleName="AmiDistributorCopyRole", PolicyName="copy-shared-amis",
                        PolicyDocument=json.dumps(policy))
    denied = permissions()[f"{TARGET_A}/us-east-1"]
    assert denied.status is Status.FAIL
    assert denied.detail.endswith("may not call ec2:CreateLaunchTemplateVersion, ec2:ModifyLaunchTemplate")
    assert "UpdateLaunchTemplates=true" in denied.fix and "web-tier" in denied.fix


def test_a_missing_or_unusable_target_key_fails(stage, sandbox, diagnose):
    kms = sandbox.client("kms", account_id=TARGET_B, region="us-west-2")
    kms.delete_alias(AliasName="alias/ami-distributor-target")
    key = sandbox.client("kms", account_id=TARGET_A).describe_key(KeyId="alias/ami-distributor-target")["KeyMetadata"]
    sandbox.client("kms", account_id=TARGET_A).put_key_policy(KeyId=key["Arn"], Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{TARGET_A}:role/Admin"}, "Action": "kms:*",
        "Resource": "*"}]}))
    _, checks = diagnose()
    results = {c.subject: c for c in by_check(checks, "target.kms-key")}
    assert results[f"{TARGET_B}/us-west-2"].status is Status.FAIL and "NotFoundException" in results[f"{TARGET_B}/us-west-2"].detail
    assert results[f"{TARGET_A}/us-east-1"].status is Status.FAIL
    assert "AmiDistributorCopyRole" in results[f"{TARGET_A}/us-east-1"].fix


def test_the_stage_resources(stage, sandbox, diagnose):
    sqs = sandbox.client("sqs")
    sqs.set_queue_attributes(QueueUrl=stage.jobs_queue_url, Attributes={"VisibilityTimeout": "60", "RedrivePolicy": ""})
    sandbox.client("events").disable_rule(Name="ami-distributor-on_ami_event")
    sandbox.client("dynamodb").delete_table(TableName=stage.env["JOBS_TABLE"])
    _, checks = diagnose()
    results = statuses(checks)
    assert results[("stage.table", "ami-distributor-local-jobs")] == "FAIL"
    assert results[("stage.dlq", "ami-distributor-local-jobs")] == "FAIL"
    assert results[("stage.visibility", "ami-distributor-local-jobs")] == "FAIL"
    assert results[("stage.rules", "on_ami_event")] == "FAIL" and results[("stage.rules", "on_mgn_event")] == "PASS"
    [visibility] = by_check(checks, "stage.visibility")
    assert "VisibilityTimeout=360" in visibility.fix


def test_nothing_provisioned_fails_without_crashing(sandbox, diagnose):
    _, checks = diagnose()
    results = statuses(checks)
    assert results[("stage.table", "ami-distributor-local-jobs")] == "FAIL"
    assert results[("stage.queue", "ami-distributor-local-jobs")] == "FAIL"
    assert results[("kms.source-key-policy", "-")] == "FAIL"


def test_a_broken_stage_fails_with_the_three_fixes(stage, sandbox, diagnose):
    """The three set-ups behind most failed distributions at once: each is named with its own fix."""
    from automation.doctor import summary

    ebs = sandbox.client("kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    sandbox.client("ec2").modify_ebs_default_kms_key_id(KmsKeyId=ebs)
    mgn = sandbox.client("mgn")
    [template] = mgn.describe_replication_configuration_templates()["items"]
    mgn.update_replication_configuration_template(
        replicationConfigurationTemplateID=template["replicationConfigurationTemplateID"], ebsEncryption="DEFAULT")
    kms = sandbox.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=stage.source_key_arn)["Policy"])
    kms.put_key_policy(KeyId=stage.source_key_arn, Policy=json.dumps({**policy, "Statement": policy["Statement"][:1]}))
    sandbox.client("iam", account_id=TARGET_A).update_assume_role_policy(
        RoleName="AmiDistributorCopyRole", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"},
            "Condition": {"StringEquals": {"sts:ExternalId": "wrong"}}}]}))

    _, checks = diagnose()
    failed = {c.check: c for c in checks if c.status is Status.FAIL}
    assert set(failed) == {"mgn.replication-template", "kms.source-key-policy", "target.assume-role"}
    assert "--ebs-encryption CUSTOM" in failed["mgn.replication-template"].fix
    assert '"Sid": "AllowAmiDistributorTargetsToCopy"' in failed["kms.source-key-policy"].fix
    assert failed["target.assume-role"].subject == f"{TARGET_A}/us-east-1"
    assert "ExternalId=ami-distributor-local" in failed["target.assume-role"].fix
    assert summary("local", checks)["ok"] is False


def test_ami_block_public_access_off_is_a_warning_with_its_fix(stage, sandbox, diagnose):
    sandbox.client("ec2").disable_image_block_public_access()
    _, checks = diagnose()
    [check] = by_check(checks, "allow-list.public")
    assert check.status is Status.WARN and "unblocked" in check.detail
    assert "enable-image-block-public-access" in check.fix and "block-new-sharing" in check.fix


def deploy_consumer(sandbox, stage, **mapping):
    """What a deployed stage has that the local runner stands in for: the consumer and its queue's mapping."""
    from automation.deployment import StageSpec, consumer_batch_size

    spec = StageSpec.load("local")
    role = sandbox.client("iam").create_role(RoleName=spec.function_name("advance_jobs"), AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]
    lam = sandbox.client("lambda")
    lam.create_function(FunctionName=spec.function_name("advance_jobs"), Runtime="python3.11", Role=role["Arn"],
                        Handler="app.advance_jobs", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    lam.create_event_source_mapping(EventSourceArn=stage.env["JOBS_QUEUE_ARN"], FunctionName=spec.function_name(
        "advance_jobs"), BatchSize=consumer_batch_size(), ScalingConfig={"MaximumConcurrency": spec.max_concurrency},
        **mapping)


def test_a_mapping_with_partial_batch_responses_passes(stage, sandbox, diagnose):
    deploy_consumer(sandbox, stage, FunctionResponseTypes=["ReportBatchItemFailures"])
    _, checks = diagnose()
    [check] = by_check(checks, "stage.event-source")
    assert check.status is Status.PASS and check.subject == "ami-distributor-local-advance_jobs"
    assert "ReportBatchItemFailures" in check.detail


def test_a_mapping_without_partial_batch_responses_fails_with_the_deploy_fix(stage, sandbox, diagnose):
    # what `chalice deploy` alone leaves: one failed message would redeliver the whole batch
    deploy_consumer(sandbox, stage)
    _, checks = diagnose()
    [check] = by_check(checks, "stage.event-source")
    assert check.status is Status.FAIL
    assert check.detail == "FunctionResponseTypes lacks ReportBatchItemFailures"
    assert check.fix.startswith("python -m automation deploy --stage local")


def test_every_function_that_copies_must_be_trusted_by_the_target_role(stage, sandbox, diagnose):
    """advance_jobs and on_ami_event (which takes a woken job's step) both assume the target role."""
    source_iam = sandbox.client("iam")
    roles = {}
    for function in ("advance_jobs", "on_ami_event"):
        roles[function] = source_iam.create_role(
            RoleName=f"ami-distributor-local-{function}", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}}]}),
        )["Role"]["Arn"]
    sandbox.client("iam", account_id=TARGET_B).update_assume_role_policy(
        RoleName="AmiDistributorCopyRole", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": roles["advance_jobs"]},
            "Condition": {"StringEquals": {"sts:ExternalId": "ami-distributor-local"}}}]}))
    _, checks = diagnose()
    target_b = [c for c in by_check(checks, "target.assume-role") if c.subject == f"{TARGET_B}/us-west-2"]
    assert [(c.status, "on_ami_event" in c.detail) for c in target_b] == [(Status.PASS, False), (Status.FAIL, True)]
    assert roles["on_ami_event"] in target_b[1].fix
