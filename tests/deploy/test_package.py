"""CI's offline checks of the single-stack path, for every stage in .chalice/config.json.

One test per stage, so each stage is packaged (≈ 4 s) on one worker only."""
import copy
import importlib.util
import zipfile

import pytest

from automation import deployment, stages
from tests.deploy.conftest import STAGES

FUNCTIONS = {"AdvanceJobs": "advance_jobs", "OnAmiEvent": "on_ami_event", "OnMgnEvent": "on_mgn_event"}


@pytest.mark.parametrize("stage_name", STAGES)
def test_package_is_one_complete_stack_that_transforms_and_lints(packaged, stage_name):
    stage, sam = packaged(stage_name)
    resources = sam["Resources"]

    # SAM -> CloudFormation offline, then cfn-lint: no errors
    cloudformation = deployment.sam_to_cloudformation(sam, stage.region)
    assert "Transform" not in cloudformation
    assert deployment.lint_errors(cloudformation, stage.region) == []

    # the consumer's mapping: partial batch responses, batch size and concurrency as configured
    [mapping] = [r["Properties"] for r in cloudformation["Resources"].values()
                 if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert mapping["BatchSize"] == deployment.consumer_batch_size() == 10
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": stage.max_concurrency}

    # one stack: functions, queue, DLQ, alarm, table
    types = {name: r["Type"] for name, r in resources.items()}
    assert {types[n] for n in ("JobsQueue", "JobsDeadLetterQueue", "DeadLetterQueueDepthAlarm", "JobsTable")} == {
        "AWS::SQS::Queue", "AWS::CloudWatch::Alarm", "AWS::DynamoDB::Table"}
    assert sorted(n for n, t in types.items() if t == "AWS::Serverless::Function") == sorted(FUNCTIONS)

    # visibility >= 6 x the consumer's timeout, as configured for this stage
    timeout = resources["AdvanceJobs"]["Properties"]["Timeout"]
    assert timeout == stage.consumer_timeout_s
    assert resources["JobsQueue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}
    assert sam["Parameters"]["VisibilityTimeoutSeconds"]["Default"] >= 6 * timeout
    assert deployment.check_package(stage, sam, lint=False) == []

    # every function uses the stack's own table and queue; roles keep chalice deploy's names
    for logical, function in FUNCTIONS.items():
        variables = resources[logical]["Properties"]["Environment"]["Variables"]
        assert variables["JOBS_TABLE"] == {"Ref": "JobsTable"}
        assert variables["JOBS_QUEUE_URL"] == {"Ref": "JobsQueue"}
        assert variables["JOBS_QUEUE_ARN"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
        role = resources[f"{logical}Role"]["Properties"]
        assert role["RoleName"] == f"ami-distributor-{stage_name}-{function}"
        assert role["Policies"][0]["PolicyDocument"] == deployment.policy_document(stage, function, cloudformation=True)

    # and the check notices a consumer that would retry whole batches
    broken = copy.deepcopy(sam)
    next(iter(broken["Resources"]["AdvanceJobs"]["Properties"]["Events"].values()))["Properties"].pop(
        "FunctionResponseTypes")
    assert deployment.check_package(stage, broken, lint=False) == [
        "the SQS event source lacks FunctionResponseTypes: [ReportBatchItemFailures]"]


def test_the_lambda_package_ships_our_bytecode_and_nothing_of_the_tooling(packaged):
    """Lambda cannot write .pyc files (its /var/task is read-only): what the package holds is what a cold start
    gets. Every chalicelib module comes with hash-checked bytecode for this Python, and nothing the operator
    tooling or the tests use (automation/, moto, tests/) is importable in the function."""
    with zipfile.ZipFile(packaged("dev", directory=True) / "deployment.zip") as package:
        names = set(package.namelist())
        sources = sorted(n for n in names if n.startswith("chalicelib/") and n.endswith(".py"))
        for source in sources:
            cached = importlib.util.cache_from_source(source)
            assert cached in names, f"{source} ships without its bytecode"
            flags = int.from_bytes(package.read(cached)[4:8], "little")
            assert flags == 0b11, f"{cached} is not hash-checked"  # PEP 552: hash-based, check_source
    assert len(sources) == len(list((stages.PROJECT_ROOT / "chalicelib").rglob("*.py")))
    tops = {name.split("/")[0] for name in names}
    assert {"app.py", "chalicelib", "aws_lambda_powertools", "boto3"} <= tops
    assert not tops & {"automation", "moto", "tests", "responses", "typer", "rich", "hypothesis"}, tops
