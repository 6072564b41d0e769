"""The KMS key-policy evaluator (pure): which cross-account copy permissions a target account lacks."""
import json

import pytest

from chalicelib.domain.key_policy import CROSS_ACCOUNT_COPY, Caller, PolicyError, evaluate, suggested_statement

SOURCE, TARGET = "111111111111", "222222222222"
ROLE = f"arn:aws:iam::{TARGET}:role/AmiDistributorCopyRole"
OWNER = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{SOURCE}:root"}, "Action": "kms:*", "Resource": "*"}
ALL = list(CROSS_ACCOUNT_COPY)


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": [OWNER, *statements]})


def allow(principal, actions=ALL, **condition):
    statement = {"Sid": "Targets", "Effect": "Allow", "Principal": principal, "Action": actions, "Resource": "*"}
    if condition:
        statement["Condition"] = condition
    return statement


def test_the_default_policy_grants_only_the_owner():
    verdict = evaluate(policy(), Caller(TARGET, ROLE))
    assert verdict.missing == tuple(ALL) and not verdict.ok
    assert "add to its key policy" in verdict.explain("k") and TARGET in verdict.explain("k")
    assert evaluate(policy(), Caller(SOURCE)).ok


@pytest.mark.parametrize("principal", [
    {"AWS": f"arn:aws:iam::{TARGET}:root"}, {"AWS": TARGET}, {"AWS": [ROLE]}, "*", {"AWS": "*"}])
def test_principal_forms_that_name_the_target(principal):
    condition = {} if "*" not in str(principal) else {"StringEquals": {"aws:PrincipalAccount": TARGET}}
    assert evaluate(policy(allow(principal, **condition)), Caller(TARGET, ROLE)).ok


def test_another_role_of_the_target_is_not_the_copying_role():
    other = {"AWS": f"arn:aws:iam::{TARGET}:role/SomeoneElse"}
    assert evaluate(policy(allow(other)), Caller(TARGET, ROLE)).missing == tuple(ALL)


def test_wildcard_actions_and_a_missing_one():
    verdict = evaluate(policy(allow({"AWS": TARGET}, ["kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                                                       "kms:DescribeKey"])), Caller(TARGET, ROLE))
    assert verdict.missing == ("kms:CreateGrant",)
    assert verdict.suggested_statement()["Action"] == ["kms:CreateGrant"]
    assert evaluate(policy(allow({"AWS": TARGET}, "kms:*")), Caller(TARGET, ROLE)).ok
    # ReEncrypt* needs both ReEncryptFrom and ReEncryptTo
    partial = ["kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
    assert evaluate(policy(allow({"AWS": TARGET}, partial)), Caller(TARGET, ROLE)).missing == ("kms:ReEncrypt*",)


def test_organization_condition():
    statement = allow("*", StringEquals={"aws:PrincipalOrgID": "o-abcdefghij"})
    assert evaluate(policy(statement), Caller(TARGET, ROLE, organization_id="o-abcdefghij")).ok
    assert not evaluate(policy(statement), Caller(TARGET, ROLE, organization_id="o-zzzzzzzzzz")).ok
    unknown = evaluate(policy(statement), Caller(TARGET, ROLE))  # organization not known: cannot be counted
    assert not unknown.ok and unknown.notes


def test_via_service_and_caller_account_conditions():
    statement = allow("*", StringEquals={"kms:CallerAccount": TARGET}, StringLike={"kms:ViaService": "ec2.*.amazonaws.com"})
    assert evaluate(policy(statement), Caller(TARGET, ROLE, via_service="ec2.us-east-1.amazonaws.com")).ok
    assert not evaluate(policy(statement), Caller(TARGET, ROLE, via_service="s3.us-east-1.amazonaws.com")).ok
    assert not evaluate(policy(statement), Caller("444444444444", via_service="ec2.us-east-1.amazonaws.com")).ok


def test_create_grant_for_aws_resources_only():
    use = allow({"AWS": TARGET}, ["kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"])
    grant = {"Sid": "Grants", "Effect": "Allow", "Principal": {"AWS": TARGET}, "Action": "kms:CreateGrant",
             "Resource": "*", "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
    assert evaluate(policy(use, grant), Caller(TARGET, ROLE)).ok


def test_an_explicit_deny_wins_and_is_named():
    deny = {"Sid": "NoDecryptOutside", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringNotEquals": {"kms:CallerAccount": SOURCE}}}
    verdict = evaluate(policy(allow({"AWS": TARGET}), deny), Caller(TARGET, ROLE))
    assert verdict.missing == ("kms:Decrypt",) and verdict.denied_by == ("NoDecryptOutside",)
    assert "remove or narrow" in verdict.explain("k")


def test_not_action_and_grants():
    not_action = {"Sid": "All but admin", "Effect": "Allow", "Principal": {"AWS": TARGET},
                  "NotAction": ["kms:ScheduleKeyDeletion"], "Resource": "*"}
    assert evaluate(policy(not_action), Caller(TARGET, ROLE)).ok
    grants = [{"GranteePrincipal": f"arn:aws:iam::{TARGET}:root",
               "Operations": ["Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKeyWithoutPlaintext",
                              "GenerateDataKey", "DescribeKey", "CreateGrant"]}]
    assert evaluate(policy(), Caller(TARGET, ROLE), grants).ok
    assert evaluate(policy(), Caller(TARGET, ROLE), grants[:0]).missing == tuple(ALL)


def test_a_policy_that_is_not_one():
    with pytest.raises(PolicyError):
        evaluate("not json", Caller(TARGET))
    with pytest.raises(PolicyError):
        evaluate({"Statement": [{"Action": "kms:*"}]}, Caller(TARGET))


def test_suggested_statement_names_every_account():
    statement = suggested_statement([TARGET, "333333333333", TARGET])
    assert statement["Principal"]["AWS"] == [f"arn:aws:iam::{TARGET}:root", "arn:aws:iam::333333333333:root"]
    assert statement["Action"] == ALL
