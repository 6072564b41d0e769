"""The preflight before CreateImage: a job whose volumes' key would refuse a target fails at once, with the
statement to add, and no image is made (instead of a copy failing an hour later)."""
import json

from tests.integration.checks import source_images
from tests.integration.conftest import TARGET_A, TARGET_B


def key_policy_without(wave, account: str) -> None:
    kms = wave.sandbox.client("kms", region=wave.stage.region)
    policy = json.loads(kms.get_key_policy(KeyId=wave.stage.source_key_arn)["Policy"])
    for statement in policy["Statement"]:
        principals = statement["Principal"]["AWS"]
        if isinstance(principals, list):
            statement["Principal"]["AWS"] = [p for p in principals if f"::{account}:" not in p]
    kms.put_key_policy(KeyId=wave.stage.source_key_arn, Policy=json.dumps(policy))


def test_a_key_that_refuses_a_target_fails_the_job_before_create_image(start_wave, sandbox):
    wave = start_wave()
    key_policy_without(wave, TARGET_B[0])
    wave.cutover(2)
    wave.run()
    jobs = wave.jobs()
    assert [(j["status"], j["reason"], j["stage"]) for j in jobs] == [("FAILED", "SOURCE_KEY_UNUSABLE", "CREATE_IMAGE")] * 2
    message = jobs[0]["last_error"]["message"]
    assert TARGET_B[0] in message and TARGET_A[0] not in message
    assert "kms:ReEncrypt*" in message and f"arn:aws:iam::{TARGET_B[0]}:root" in message  # the statement to add
    assert sandbox.api_calls["ec2:CreateImage"] == 0 and source_images(wave) == []
    assert sandbox.service_calls["kms:GetKeyPolicy"] == 1  # cached per key across the wave's jobs


def test_the_provisioned_key_lets_every_target_copy(start_wave, sandbox):
    wave = start_wave()
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", job["last_error"]
    assert sandbox.service_calls["kms:GetKeyPolicy"] == 1


def test_grants_can_stand_for_the_key_policy_statement(start_wave, sandbox):
    """Doctor counts a target's grants on the key; so does the preflight (a stage doctor passes is not refused)."""
    wave = start_wave()
    kms = wave.sandbox.client("kms", region=wave.stage.region)
    key = wave.stage.source_key_arn
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{wave.source}:root"}, "Action": "kms:*",
        "Resource": "*"}]}))
    for account in (TARGET_A[0], TARGET_B[0]):
        kms.create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{account}:root", Operations=[
            "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
            "DescribeKey", "CreateGrant"])
    wave.cutover(1)
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", job["last_error"]
    assert sandbox.service_calls["kms:ListGrants"] == 1
