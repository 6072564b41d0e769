"""Every template in automation/templates passes cfn-lint, and says what the issue asks of it."""
import json
from pathlib import Path

import pytest

from automation import deployment, provision

TEMPLATES = sorted(deployment.TEMPLATES.glob("*.yaml"))


def resources_of(name: str) -> dict:
    return deployment.load_template(deployment.TEMPLATES / name)["Resources"]


def test_the_templates_are_all_there():
    assert [t.name for t in TEMPLATES] == ["mgn-post-launch.yaml", "source-key.yaml", "stage-resources.yaml",
                                           "target-account-events.yaml", "target-account-role.yaml"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_lints_without_errors(template: Path):
    assert deployment.lint_errors(template.read_text()) == []


def test_stage_resources_queue_dlq_alarm_and_table():
    resources = resources_of("stage-resources.yaml")
    queue = resources["JobsQueue"]["Properties"]
    assert queue["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]},
                                      "maxReceiveCount": {"Ref": "MaxReceiveCount"}}
    parameters = deployment.load_template(deployment.TEMPLATES / "stage-resources.yaml")["Parameters"]
    assert parameters["MaxReceiveCount"]["Default"] == provision.MAX_RECEIVE_COUNT == 5  # as the sandbox models it
    alarm = resources["DeadLetterQueueDepthAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", "GreaterThanThreshold", 0)
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}}]
    table = resources["JobsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    indexes = {i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"]) for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "by-wave": ([{"AttributeName": "wave", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}], "ALL"),
        "by-image": ([{"AttributeName": "awaited_image_id", "KeyType": "HASH"}], "KEYS_ONLY")}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


@pytest.mark.parametrize("stage_name", deployment.stages.stage_names())
def test_config_names_the_resources_the_stage_stack_makes(stage_name):
    """The policies are rendered from the config's names; the stack makes them from the stage name."""
    stage = deployment.StageSpec.load(stage_name)
    assert stage.table == f"ami-distributor-{stage_name}-jobs"
    assert stage.queue_name == f"ami-distributor-{stage_name}-jobs"
    assert stage.visibility_timeout_s >= 6 * stage.consumer_timeout_s


def test_source_key_lets_only_the_organization_copy_through_ec2():
    statements = {s["Sid"]: s for s in resources_of("source-key.yaml")["LaunchKey"]["Properties"]["KeyPolicy"]["Statement"]}
    copy, grant = statements["TargetAccountsCopyThroughEc2"], statements["TargetAccountsGrantToEc2"]
    # DESIGN: Decrypt, ReEncrypt*, GenerateDataKey*, DescribeKey, CreateGrant
    assert set(copy["Action"]) == {"kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"}
    assert grant["Action"] == "kms:CreateGrant" and grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    for statement in (copy, grant):
        assert statement["Principal"] == {"AWS": {"Ref": "TargetAccountIds"}}
        assert statement["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}


def test_target_events_forward_only_the_states_a_job_waits_for():
    from app import AMI_EVENTS

    rule = resources_of("target-account-events.yaml")["ForwardAmiStateChanges"]["Properties"]
    pattern = rule["EventPattern"]
    assert (pattern["source"], pattern["detail-type"]) == (AMI_EVENTS["source"], AMI_EVENTS["detail-type"])
    assert set(pattern["detail"]["State"]) >= set(AMI_EVENTS.get("detail", {}).get("State", []))
