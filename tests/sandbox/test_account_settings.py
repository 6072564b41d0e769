"""Account settings and access a readiness check reads: the EBS default key, KMS key policies, AMI block
public access, who may assume a role (trust policy, ExternalId) and what a role's DryRun says."""
import json

import pytest
from botocore.exceptions import ClientError

SOURCE, TARGET = "111111111111", "222222222222"
ROLE = "AmiDistributorCopyRole"


def code_of(call):
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_the_ebs_default_key_is_aws_ebs_until_changed(sandbox):
    ec2 = sandbox.client("ec2")
    assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == "alias/aws/ebs"
    key = sandbox.client("kms").create_key()["KeyMetadata"]["Arn"]
    assert ec2.modify_ebs_default_kms_key_id(KmsKeyId=key)["KmsKeyId"] == key
    assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == key
    assert sandbox.client("ec2", region="us-west-2").get_ebs_default_kms_key_id()["KmsKeyId"] == "alias/aws/ebs"


def test_key_policy_without_a_policy_name(sandbox):
    kms = sandbox.client("kms")
    key = kms.create_key()["KeyMetadata"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": TARGET},
                                                      "Action": "kms:Decrypt", "Resource": "*"}]}
    kms.put_key_policy(KeyId=key["KeyId"], Policy=json.dumps(policy))
    answer = kms.get_key_policy(KeyId=key["Arn"])
    assert json.loads(answer["Policy"]) == policy and answer["PolicyName"] == "default"
    assert code_of(lambda: kms.get_key_policy(KeyId="alias/aws/ebs")) == "NotFoundException"  # key ID or ARN only


def test_image_block_public_access(sandbox):
    ec2 = sandbox.client("ec2")
    assert ec2.get_image_block_public_access_state()["ImageBlockPublicAccessState"] == "unblocked"
    ec2.enable_image_block_public_access(ImageBlockPublicAccessState="block-new-sharing")
    assert ec2.get_image_block_public_access_state()["ImageBlockPublicAccessState"] == "block-new-sharing"


@pytest.fixture
def role(sandbox):
    iam = sandbox.client("iam", account_id=TARGET)
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{SOURCE}:root"},
        "Condition": {"StringEquals": {"sts:ExternalId": "the-right-one"}}}]}))
    iam.put_role_policy(RoleName=ROLE, PolicyName="read", PolicyDocument=json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}))
    return f"arn:aws:iam::{TARGET}:role/{ROLE}"


def test_assume_role_honours_the_trust_policy_and_external_id(sandbox, role):
    sts = sandbox.client("sts")
    assert sts.assume_role(RoleArn=role, RoleSessionName="doctor", ExternalId="the-right-one")["Credentials"]
    assert code_of(lambda: sts.assume_role(RoleArn=role, RoleSessionName="doctor", ExternalId="wrong")) == "AccessDenied"
    assert code_of(lambda: sts.assume_role(RoleArn=role, RoleSessionName="doctor")) == "AccessDenied"
    other_account = sandbox.client("sts", account_id="333333333333")
    assert code_of(lambda: other_account.assume_role(RoleArn=role, RoleSessionName="doctor",
                                                     ExternalId="the-right-one")) == "AccessDenied"
    missing = f"arn:aws:iam::{TARGET}:role/NoSuchRole"
    assert code_of(lambda: sts.assume_role(RoleArn=missing, RoleSessionName="doctor")) == "AccessDenied"


def test_dry_run_answers_by_the_roles_policies(sandbox, role):
    import boto3

    credentials = sandbox.client("sts").assume_role(RoleArn=role, RoleSessionName="doctor",
                                                    ExternalId="the-right-one")["Credentials"]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=sandbox.endpoint_url,
                       aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                       aws_session_token=credentials["SessionToken"])
    assert code_of(lambda: ec2.describe_images(DryRun=True, Owners=["self"])) == "DryRunOperation"
    assert code_of(lambda: ec2.create_tags(DryRun=True, Resources=["ami-0123456789abcdef0"],
                                           Tags=[{"Key": "k", "Value": "v"}])) == "UnauthorizedOperation"
    assert code_of(lambda: ec2.copy_image(DryRun=True, SourceImageId="ami-0123456789abcdef0",
                                          SourceRegion="us-east-1", Name="copy")) == "UnauthorizedOperation"
