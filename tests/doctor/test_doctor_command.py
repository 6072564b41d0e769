"""`python -m automation doctor`: its exit codes and --json, run in-process against the in-process sandbox with
the stage account's credentials (the path an operator takes with their own AWS credentials)."""
import json

from typer.testing import CliRunner

from automation import cli
from automation.sandbox import SOURCE_ACCOUNT

runner = CliRunner()


def doctor(sandbox, *args):
    env = {**sandbox.environment(SOURCE_ACCOUNT, "us-east-1"), "COLUMNS": "250"}
    return runner.invoke(cli.app, ["doctor", *args], env=env, catch_exceptions=False)


def test_the_demo_stage_exits_0_with_warnings_allowed(stage, sandbox):
    result = doctor(sandbox, "--stage", "local")
    assert result.exit_code == 0, result.output
    assert "WARN" in result.stdout and "FAIL" not in result.stdout
    assert ", 0 failed: ready for a wave" in result.stdout


def test_json_prints_the_checks_as_the_last_line(stage, sandbox):
    result = doctor(sandbox, "--stage", "local", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["stage"], report["ok"]) == ("local", True)
    assert report["counts"]["FAIL"] == 0 and report["counts"]["WARN"] >= 1
    assert sum(report["counts"].values()) == len(report["checks"])
    assert {"check", "subject", "status", "detail", "fix"} <= set(report["checks"][0])
    assert {c["check"] for c in report["checks"]} >= {"ebs.default-key", "kms.source-key-policy", "stage.event-source"}
    # the table went to stderr: stdout is the JSON object alone
    assert len(result.stdout.strip().splitlines()) == 1


def test_a_failed_check_exits_1(stage, sandbox):
    sandbox.client("events").disable_rule(Name="ami-distributor-on_ami_event")
    result = doctor(sandbox, "--stage", "local", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and report["counts"]["FAIL"] == 1
    [failed] = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert (failed["check"], failed["subject"]) == ("stage.rules", "on_ami_event")
    assert failed["fix"] == "aws events enable-rule --name ami-distributor-on_ami_event"
    assert "fix every FAIL before the cutover" in result.stderr


def test_an_unknown_stage_exits_2_before_reading_aws(sandbox):
    result = doctor(sandbox, "--stage", "qa", "--json")
    assert result.exit_code == 2
    assert "no stage 'qa' in config.json" in result.stderr
    assert result.stdout == ""
