"""Each function's policy allows exactly the AWS calls its code makes: read from the adapters with ast."""
import functools
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from automation import deployment
from tests.deploy import callgraph
from tests.deploy.conftest import STAGES



@functools.lru_cache(maxsize=None)
def iam_actions_known_to_aws() -> dict:
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


def actions(document: dict) -> set[str]:
    found = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        found |= {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
    return found


def test_every_boto3_call_in_the_adapters_carries_its_own_label():
    """So the labels are a faithful list of what the code calls."""
    adapters = callgraph.read_adapters()
    services = {"ec2": "ec2", "kms": "kms", "sts": "sts", "dynamodb": "dynamodb", "sqs": "sqs", "mgn": "mgn",
                "ssm": "ssm", "events": "events"}
    assert adapters.boto_calls, "no boto3 calls found: has the adapters' layout changed?"
    session = botocore.session.get_session()
    for call in adapters.boto_calls:
        assert call.label, f"{call.where}: {call.client}.{call.operation} runs outside aws_call"
        service, operation = call.label.split(":")
        assert services[call.client] == service and xform_name(operation) == call.operation, call
        assert operation in session.get_service_model(service).operation_names, call


def test_the_reviewed_call_table_matches_the_code():
    derived = callgraph.function_calls()
    assert set(derived) == set(deployment.FUNCTIONS)
    for function, calls in derived.items():
        assert calls.own == set(deployment.FUNCTION_CALLS[function]), function
    target = set().union(*(c.target for c in derived.values()))
    assert target == set(deployment.TARGET_ROLE_CALLS)


@pytest.mark.parametrize("stage_name", STAGES)
@pytest.mark.parametrize("function", deployment.FUNCTIONS)
def test_function_policy_allows_exactly_the_calls_it_makes(stage_name, function):
    document = json.loads((deployment.CHALICE_DIR / deployment.policy_file(stage_name, function)).read_text())
    calls = callgraph.function_calls()[function].own
    expected = {deployment.IAM_ACTION.get(c, c) for c in calls} | set(deployment.LOG_ACTIONS)
    if calls & set(deployment.TAG_ON_CREATE):
        expected.add("ec2:CreateTags")  # tag-on-create is authorized as CreateTags
    if "ec2:CopyImage" in calls:  # a copy in the source account uses its keys through EC2
        expected |= set(deployment.KMS_FOR_SOURCE_COPY)
    if function == deployment.CONSUMER:
        expected |= set(deployment.CONSUMER_ACTIONS)
    assert actions(document) == expected
    stage = deployment.StageSpec.load(stage_name)
    for statement in document["Statement"]:
        assert not any("*" in a for a in statement["Action"]), statement
        if "sts:AssumeRole" in statement["Action"]:
            assert statement["Action"] == ["sts:AssumeRole"]
            assert statement["Resource"] == [f"arn:aws:iam::{a}:role/{stage.role_name}" for a in stage.target_accounts]
        if "ec2:CreateTags" in statement["Action"]:  # only while creating an image, never on its own
            creating = sorted(deployment.TAG_ON_CREATE[c] for c in calls if c in deployment.TAG_ON_CREATE)
            assert statement["Condition"] == {"StringEquals": {"ec2:CreateAction": creating}}
        if set(statement["Action"]) & set(deployment.KMS_FOR_SOURCE_COPY) - {"kms:DescribeKey"}:
            assert statement["Condition"] == {"StringEquals": {"kms:ViaService": f"ec2.{stage.region}.amazonaws.com"}}
        if statement["Resource"] == ["*"]:  # only calls that have no resource-level permissions
            known = iam_actions_known_to_aws()
            for action in statement["Action"]:
                service, name = action.split(":")
                assert not known[service]["Actions"][name.lower()].get("Resources"), action
        for resource in statement["Resource"]:
            assert resource == "*" or stage.region in resource or ":iam::" in resource, resource


@pytest.mark.parametrize("stage_name", STAGES)
def test_policy_files_are_current_and_name_real_actions(stage_name):
    stage = deployment.StageSpec.load(stage_name)
    known = iam_actions_known_to_aws()
    for name, document in deployment.render_policies(stage).items():
        on_disk = json.loads((deployment.CHALICE_DIR / name).read_text())
        assert on_disk == document, f"{name} is stale: `python -m automation deploy` re-renders it"
        for action in actions(document):
            service, operation = action.split(":")
            assert operation.lower() in known[service]["Actions"], action
    # the stage default fails closed: a function without its own file may only log
    assert actions(json.loads((deployment.CHALICE_DIR / deployment.policy_file(stage_name)).read_text())) == set(
        deployment.LOG_ACTIONS)


@pytest.mark.parametrize("stage_name", STAGES)
def test_every_function_has_its_own_policy_file_in_the_config(stage_name):
    from automation import stages

    for function in deployment.FUNCTIONS:
        assert stages.function_setting(stage_name, function, "iam_policy_file") == deployment.policy_file(
            stage_name, function)
        assert stages.function_setting(stage_name, function, "autogen_policy") is False


def test_target_role_allows_exactly_the_target_calls():
    template = deployment.load_template(deployment.TEMPLATES / "target-account-role.yaml")
    statements = template["Resources"]["CopyRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    publishing = [s for s in statements if "Fn::If" in s]
    plain = [s for s in statements if "Fn::If" not in s]
    allowed = set()
    for statement in plain:
        allowed |= {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
    optional = {call for calls in deployment.TARGET_ROLE_OPTIONAL_CALLS.values() for call in calls}
    ec2 = {a for a in allowed if a.startswith("ec2:")}
    assert ec2 == set(deployment.TARGET_ROLE_CALLS) - optional | {"ec2:CreateTags"}
    assert {a for a in allowed if not a.startswith(("ec2:", "kms:"))} == set()
    [tagging] = [s for s in plain if s["Action"] == "ec2:CreateTags"]
    assert tagging["Condition"] == {"StringEquals": {"ec2:CreateAction": "CopyImage"}}
    # each publishing grant only when its parameter says so, and exactly the calls that need it
    conditions = template["Conditions"]
    granted = {}
    for statement in publishing:
        condition, grant, otherwise = statement["Fn::If"]
        assert otherwise == {"Ref": "AWS::NoValue"}
        [parameter] = [c["Ref"] for c in conditions[condition]["Fn::Equals"] if isinstance(c, dict)]
        actions = grant["Action"] if isinstance(grant["Action"], list) else [grant["Action"]]
        granted[parameter] = tuple(actions)
        assert grant["Resource"] != "*" and grant.get("Condition") or "ssm:" in actions[0], grant
    assert granted == deployment.TARGET_ROLE_OPTIONAL_CALLS
    trust = template["Resources"]["CopyRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Condition"]["StringEquals"]["sts:ExternalId"] for s in trust] == [{"Ref": "ExternalId"}]
    assert [s["Principal"] for s in trust] == [{"AWS": {"Ref": "DistributorRoleArns"}}]
