"""The IAM the project deploys denies what the code does not need. tests/deploy/test_policies.py checks that each
function's policy allows exactly the calls its code makes, with scoped resources; this adds what no call table
shows: conditions on every destructive or sharing action, no wildcard or IAM action in any identity policy,
and no resource policy or trust that lets in more than the stage's own principals."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from automation import deployment
from tests.deploy.conftest import STAGES

OWN_TAG = {f"aws:ResourceTag/{deployment.OWN_RESOURCE_TAG}": "false"}
# what would change or remove an image, a snapshot or an instance, or who may use them
DESTRUCTIVE = {"ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "ec2:DeregisterImage", "ec2:DeleteSnapshot"}
TEMPLATES = sorted(deployment.TEMPLATES.glob("*.yaml"))


def listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def statements(node: Any) -> Iterator[dict]:
    """Every policy statement in a template or document, both branches of an Fn::If included."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
            return
        for key, value in node.items():
            yield from statements(value[1:] if key == "Fn::If" else value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def function_policies() -> list[tuple[str, dict]]:
    return [(f"{s}/{f or 'default'}", json.loads((deployment.CHALICE_DIR / deployment.policy_file(s, f)).read_text()))
            for s in STAGES for f in (None, *deployment.FUNCTIONS)]


def identity_statements() -> list[tuple[str, dict]]:
    """What a principal of ours may do: the functions' policies and the templates' roles' inline policies."""
    found = [(name, s) for name, document in function_policies() for s in statements(document)]
    for path in TEMPLATES:
        for logical_id, resource in deployment.load_template(path)["Resources"].items():
            if resource["Type"] == "AWS::IAM::Role":
                for policy in resource["Properties"].get("Policies", []):
                    found += [(f"{path.name}:{logical_id}", s) for s in statements(policy["PolicyDocument"])]
    return found


@pytest.mark.parametrize("where, statement", identity_statements(), ids=lambda v: v if isinstance(v, str) else "")
def test_identity_policies_name_each_action_and_grant_no_iam(where, statement):
    assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
    for action in listed(statement["Action"]):
        assert "*" not in action and "?" not in action, f"{where}: {action}"
        assert not action.startswith(("iam:", "organizations:", "sts:AssumeRoleWith")), f"{where}: {action}"


@pytest.mark.parametrize("where, statement", [(w, s) for w, s in identity_statements()
                                              if DESTRUCTIVE & set(listed(s["Action"]))],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_destructive_and_sharing_actions_touch_only_what_the_service_made(where, statement):
    assert statement["Condition"]["Null"].items() >= OWN_TAG.items(), where
    assert all(r != "*" for r in listed(statement["Resource"])), where


def test_snapshots_can_be_shared_with_accounts_only_never_made_public():
    sharing = 0
    for name, document in function_policies():
        for statement in statements(document):
            if "ec2:ModifySnapshotAttribute" in listed(statement["Action"]):
                assert listed(statement["Action"]) == ["ec2:ModifySnapshotAttribute"], name
                assert statement["Condition"]["Null"]["ec2:Add/group"] == "true", name
                sharing += 1
    assert sharing == 2 * len(STAGES)  # advance_jobs and on_ami_event share, per stage


def test_no_function_may_assume_a_role_it_does_not_copy_with():
    for name, document in function_policies():
        stage = deployment.StageSpec.load(name.split("/")[0])
        for statement in statements(document):
            if "sts:AssumeRole" in statement["Action"]:
                assert {r.split(":")[4] for r in statement["Resource"]} == set(stage.target_accounts), name
                assert all(r.endswith(f":role/{stage.role_name}") for r in statement["Resource"]), name


@pytest.mark.parametrize("stage_name", STAGES)
def test_every_stage_sets_an_external_id(stage_name):
    """The target role trusts only calls that carry it (target-account-role.yaml): a stage without one is refused."""
    from automation.stages import function_environment

    assert function_environment(stage_name).get("CROSS_ACCOUNT_EXTERNAL_ID")


def resource_statements() -> Iterator[tuple[str, dict]]:
    """Statements with a Principal: trust policies, key policies, bus policies."""
    for path in TEMPLATES:
        for statement in statements(deployment.load_template(path)):
            if "Principal" in statement:
                yield path.name, statement


@pytest.mark.parametrize("where, statement", list(resource_statements()), ids=lambda v: v if isinstance(v, str) else "")
def test_resource_policies_let_in_only_known_principals(where, statement):
    principal, condition = statement["Principal"], statement.get("Condition", {})
    actions = listed(statement["Action"])
    if principal == "*":  # the stage's bus, for the targets' forwarded AMI events: the organization only
        assert "aws:PrincipalOrgID" in condition.get("StringEquals", {}), where
    elif "Service" in principal:  # a service acting for this account only (confused deputy)
        assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, where
    if "sts:AssumeRole" in actions and "AWS" in principal:  # a role another account's function assumes
        assert condition["StringEquals"]["sts:ExternalId"] == {"Ref": "ExternalId"}, where
    if "kms:*" in actions:  # a key policy's administrator statement: the key's own account, nobody else
        assert principal == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}, where
    elif any("*" in a for a in actions):
        assert all(a.startswith("kms:") for a in actions), where  # kms:Describe*, kms:ReEncrypt*: key policies only
