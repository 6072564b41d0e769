"""`python -m automation deploy`: the dry run, bad input, and the real steps against the sandbox
(CloudFormation and Lambda event source mappings are moto's; only `chalice deploy` itself, which needs
AWS, is stood in for by what it creates: the function and its mapping, without FunctionResponseTypes)."""
import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from automation import cli, deployment, stages
from automation.sandbox import SOURCE_ACCOUNT
from tests.integration.conftest import make_sandbox, sandbox  # noqa: F401 (fixtures)

deployment.register(cli.app)
runner = CliRunner()


def test_dry_run_prints_the_steps_and_changes_nothing():
    before = {p.name: p.read_text() for p in deployment.CHALICE_DIR.glob("*.json")}
    result = runner.invoke(cli.app, ["deploy", "--stage", "prod", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "deploy --stage prod would (nothing done):"
    assert lines[1].startswith("  1. deploy CloudFormation stack ami-distributor-prod-resources in us-east-1")
    assert "VisibilityTimeoutSeconds=360" in lines[1]
    assert lines[3] == "  3. run: chalice deploy --stage prod"
    assert "FunctionResponseTypes=[ReportBatchItemFailures]" in lines[4]
    assert lines[5].endswith("BatchSize 10, MaximumConcurrency 50")
    assert {p.name: p.read_text() for p in deployment.CHALICE_DIR.glob("*.json")} == before


@pytest.mark.parametrize("command", [["deploy", "--stage", "qa", "--dry-run"], ["deploy", "--stage", "qa"],
                                     ["package", "--stage", "qa", "--out", "never-written"]])
def test_unknown_stage_is_refused_before_anything_runs(command, tmp_path):
    result = runner.invoke(cli.app, command)
    assert result.exit_code == 2
    assert "no stage 'qa' in config.json; stages: " in result.output
    assert not (tmp_path / "never-written").exists()


@pytest.fixture
def config_copy(tmp_path, monkeypatch):
    """The real .chalice/ copied aside: deploy writes the stage's config and policies there."""
    chalice_dir = tmp_path / ".chalice"
    shutil.copytree(deployment.CHALICE_DIR, chalice_dir, ignore=shutil.ignore_patterns("deployments"))
    monkeypatch.setattr(stages, "CONFIG_FILE", chalice_dir / "config.json")
    monkeypatch.setattr(deployment, "CHALICE_DIR", chalice_dir)
    return chalice_dir


def chalice_deploy_standin(sandbox, region: str):
    """What `chalice deploy --stage dev` leaves in AWS that the next step touches."""
    calls = []

    def run(command, **kwargs):
        calls.append(command[1:])
        stage = deployment.StageSpec.load("dev")
        env = stages.function_environment("dev", deployment.CONSUMER)
        iam, lam = sandbox.client("iam"), sandbox.client("lambda", region=region)
        role = iam.create_role(RoleName=stage.function_name("advance_jobs"), AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]
        lam.create_function(FunctionName=stage.function_name("advance_jobs"), Runtime="python3.11",
                            Role=role["Arn"], Handler="app.advance_jobs", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
        lam.create_event_source_mapping(EventSourceArn=env["JOBS_QUEUE_ARN"], FunctionName=stage.function_name(
            "advance_jobs"), BatchSize=10, ScalingConfig={"MaximumConcurrency": stage.max_concurrency})
        return subprocess.CompletedProcess(command, 0)

    return run, calls


def test_deploy_creates_the_stack_records_it_and_turns_on_partial_batch_responses(sandbox, config_copy):
    spec = deployment.StageSpec.load("dev")
    aws = deployment.AwsDeployer(sandbox.client("cloudformation", region=spec.region),
                                 sandbox.client("lambda", region=spec.region), sleep=lambda s: None)
    # a failed chalice deploy stops the deploy before the mapping is touched
    with pytest.raises(deployment.DeployError, match="chalice deploy failed"):
        deployment.deploy(spec, aws, lambda line: None,
                          run=lambda command, **kw: subprocess.CompletedProcess(command, 2))
    assert sandbox.client("lambda", region=spec.region).list_event_source_mappings()["EventSourceMappings"] == []

    run, chalice_calls = chalice_deploy_standin(sandbox, spec.region)
    said = []
    mapping = deployment.deploy(deployment.StageSpec.load("dev"), aws, said.append, run=run)

    assert chalice_calls == [["deploy", "--stage", "dev"]]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (mapping["BatchSize"], mapping["ScalingConfig"]) == (10, {"MaximumConcurrency": 5})
    # the resources exist as the template describes them
    env = stages.function_environment("dev")
    sqs = sandbox.client("sqs", region=spec.region)
    attributes = sqs.get_queue_attributes(QueueUrl=env["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == 6 * spec.consumer_timeout_s
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": env["JOBS_QUEUE_ARN"] + "-dlq", "maxReceiveCount": 5}
    table = sandbox.client("dynamodb", region=spec.region).describe_table(TableName=env["JOBS_TABLE"])["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"by-wave", "by-image"}
    # the outputs were recorded in the (copied) config, and the policies name the sandbox's account
    assert env["JOBS_QUEUE_ARN"] == f"arn:aws:sqs:us-east-1:{SOURCE_ACCOUNT}:ami-distributor-dev-jobs"
    policy = json.loads((config_copy / "policy-dev-advance_jobs.json").read_text())
    [consume] = [s for s in policy["Statement"] if s["Sid"] == "ConsumeJobsQueue"]
    assert consume["Resource"] == [env["JOBS_QUEUE_ARN"]]
    assert [line[:4] for line in said if line[0].isdigit()] == ["1/5 ", "2/5 ", "3/5 ", "4/5 ", "5/5 "]

    # deploying again is a no-op that still checks the mapping
    mapping_again = deployment.deploy(deployment.StageSpec.load("dev"), aws, said.append,
                                      run=lambda command, **kw: subprocess.CompletedProcess(command, 0))
    assert mapping_again["UUID"] == mapping["UUID"]


def test_check_mapping_names_what_is_wrong():
    spec = deployment.StageSpec.load("prod")
    assert deployment.check_mapping(spec, {"BatchSize": 1, "ScalingConfig": {"MaximumConcurrency": 50}}, 10) == [
        "FunctionResponseTypes lacks ReportBatchItemFailures", "BatchSize is 1, app.py asks for 10"]
