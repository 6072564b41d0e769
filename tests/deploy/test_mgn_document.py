"""The MGN post-launch document: valid SSM Automation, and its event is one on_mgn_event acts on."""
import json
import re
from pathlib import Path

import jsonschema
import pytest

from automation import deployment
from automation.sandbox import DEFAULT_REGION, SOURCE_ACCOUNT
from chalicelib import events
from tests.integration.conftest import make_sandbox, sandbox, start_wave  # noqa: F401 (fixtures)

TEMPLATE = deployment.load_template(deployment.TEMPLATES / "mgn-post-launch.yaml")
DOCUMENT = TEMPLATE["Resources"]["DistributeInstanceDocument"]["Properties"]["Content"]
SCHEMA = json.loads((Path(__file__).parent / "ssm_automation_schema.json").read_text())
REFERENCE = re.compile(r"\{\{\s*([\w:.]+)\s*\}\}")


def resolved(value, parameters: dict):
    """The document as CloudFormation stores it: Ref to a template parameter -> its default."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return TEMPLATE["Parameters"][value["Ref"]]["Default"]
        if set(value) == {"Fn::GetAtt"}:
            return f"arn:aws:iam::{SOURCE_ACCOUNT}:role/ami-distributor-post-launch"
        return {k: resolved(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, parameters) for v in value]
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: str(parameters.get(m.group(1), m.group(0))), value)
    return value


def test_document_is_valid_ssm_automation():
    document = resolved(DOCUMENT, {})
    jsonschema.validate(document, SCHEMA)
    steps = {s["name"]: s for s in document["mainSteps"]}
    assert len(steps) == len(document["mainSteps"]), "step names must be unique"
    for step in document["mainSteps"]:
        targets = [step.get("nextStep")] + [c["NextStep"] for c in step["inputs"].get("Choices", [])]
        targets += [step["inputs"].get("Default")] if step["action"] == "aws:branch" else []
        assert all(t in steps for t in targets if t), step["name"]
        assert step.get("isEnd") or step.get("nextStep") or step["action"] == "aws:branch", step["name"]
    # every {{ reference }} names a parameter or an output of an earlier step
    outputs = {f"{s['name']}.{o['Name']}" for s in document["mainSteps"] for o in s.get("outputs", [])}
    for reference in REFERENCE.findall(json.dumps(document)):
        assert reference in document["parameters"] or reference in outputs, reference
    # MGN passes the instance as InstanceID; the patterns are the ones the handler enforces
    assert document["parameters"]["InstanceID"]["allowedPattern"] == events.INSTANCE_ID.pattern
    assert document["parameters"]["Wave"]["allowedPattern"] == events.WAVE.pattern


def put_events_entries(instance_id: str, wave: str | None = None) -> list[dict]:
    """What the executeAwsApi step sends, with SSM's parameter substitution done."""
    parameters = {"InstanceID": instance_id, "Wave": wave or TEMPLATE["Parameters"]["DefaultWave"]["Default"]}
    [step] = [s for s in DOCUMENT["mainSteps"] if s["action"] == "aws:executeAwsApi"]
    inputs = resolved(step["inputs"], parameters)
    assert (inputs["Service"], inputs["Api"]) == ("events", "PutEvents")
    return inputs["Entries"]


def as_delivered(entry: dict) -> dict:
    """The entry as EventBridge delivers it to a rule's target."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "source": entry["Source"],
            "detail-type": entry["DetailType"], "account": SOURCE_ACCOUNT, "region": DEFAULT_REGION,
            "time": "2026-01-01T00:00:00Z", "resources": entry.get("Resources", []),
            "detail": json.loads(entry["Detail"])}


def test_document_event_parses_as_a_distribute_request():
    [entry] = put_events_entries("i-0123456789abcdef0", "wave-7")
    request = events.parse_intake(as_delivered(entry))
    assert isinstance(request, events.DistributeRequest)
    assert (request.instance_ids, request.wave, request.distribution) == (("i-0123456789abcdef0",), "wave-7", None)


def test_document_event_through_the_bus_reaches_on_mgn_event_and_starts_a_job(start_wave):
    """PutEvents as the document's step makes it, on the sandbox's bus: the stage's rule routes it to
    the real on_mgn_event, which records the job and queues its first step."""
    wave = start_wave()
    ec2 = wave.sandbox.client("ec2")
    instance_id = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    entries = put_events_entries(instance_id)
    assert wave.sandbox.client("events").put_events(Entries=entries)["FailedEntryCount"] == 0
    assert wave.runner.deliver_events() == 1
    [(function, result)] = wave.runner.results
    assert function == "on_mgn_event" and len(result["created"]) == 1, result
    [job] = wave.jobs()
    assert (job["instance_id"], job["wave"], job["status"], job["stage"]) == (instance_id, "mgn", "RUNNING", "CREATE_IMAGE")


def test_document_runs_last_and_emits_nothing_else():
    [emit] = [s for s in DOCUMENT["mainSteps"] if s["action"] == "aws:executeAwsApi"]
    assert [e["Source"] for e in emit["inputs"]["Entries"]] == [events.OPERATOR_SOURCE]
    assert [e["DetailType"] for e in emit["inputs"]["Entries"]] == [events.OPERATOR_DETAIL_TYPE]
    role = TEMPLATE["Resources"]["AutomationRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in role] == ["events:PutEvents"]
    assert role[0]["Condition"]["StringEquals"] == {"events:source": events.OPERATOR_SOURCE,
                                                    "events:detail-type": events.OPERATOR_DETAIL_TYPE}

