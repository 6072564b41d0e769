"""MGN in the sandbox: source servers, launch jobs and their instances, events, limits.

Every MGN response in these tests, in both transports, is checked on the wire against botocore's
MGN model (output or error shape, HTTP status, and that the error is one the operation declares).
"""
import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError

from automation.sandbox.mgn import MgnService

SOURCE = "111111111111"
OTHER = "222222222222"
REGION = "us-east-1"
EVENTS = Path(__file__).resolve().parents[2].parent / "shared" / "events"
GIB = 1024**3

MGN_MODEL = botocore.session.get_session().get_service_model("mgn")


def check_shape(shape, value, path="$"):
    """`value` (decoded JSON) conforms to botocore `shape`: types, required and no unknown members, enums, bounds."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: expected an object"
        assert not set(value) - set(shape.members), f"{path}: unknown members {set(value) - set(shape.members)}"
        for name in shape.required_members:
            assert name in value, f"{path}: missing required {name}"
        for name, member in value.items():
            check_shape(shape.members[name], member, f"{path}.{name}")
        return
    if kind == "list":
        assert isinstance(value, list), f"{path}: expected a list"
        for index, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{index}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: expected a map"
        for key, item in value.items():
            check_shape(shape.key, key, f"{path} key")
            check_shape(shape.value, item, f"{path}.{key}")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: expected a string"
        if shape.enum:
            assert value in shape.enum, f"{path}: {value!r} not in {shape.enum}"
        if "pattern" in meta:
            assert re.fullmatch(meta["pattern"], value), f"{path}: {value!r} does not match {meta['pattern']}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: expected a boolean"
        return
    else:
        raise AssertionError(f"{path}: shape type {kind} not expected in MGN's responses")
    size = value if kind in ("integer", "long") else len(value)
    assert meta.get("min", size) <= size <= meta.get("max", size), f"{path}: {size} outside [{meta.get('min')}, {meta.get('max')}]"


def check_wire(operation_model, response_dict, **_):
    """botocore's before-parse hook: the raw response, before botocore drops anything it does not know."""
    status, body = response_dict["status_code"], json.loads(response_dict["body"] or b"{}")
    if status < 300:
        assert status == operation_model.http["responseCode"]
        check_shape(operation_model.output_shape, body)
        return
    code = response_dict["headers"]["x-amzn-ErrorType"]
    assert code in [e.name for e in operation_model.error_shapes], f"{operation_model.name} does not declare {code}"
    error_shape = MGN_MODEL.shape_for(code)
    assert status == error_shape.metadata["error"]["httpStatusCode"]
    check_shape(error_shape, body)


def mgn_client(sandbox, account=SOURCE, region=REGION):
    client = sandbox.client("mgn", account_id=account, region=region)
    client.meta.events.register("before-parse.mgn", check_wire)
    return client


@pytest.fixture
def mgn(sandbox):
    return mgn_client(sandbox)


@pytest.fixture
def service(sandbox):
    return sandbox.extension(MgnService)


def until_launched(sandbox):
    settings = sandbox.settings
    sandbox.clock.advance(settings.mgn_launch_s * (1 + settings.durations.jitter) + 1)
    sandbox.tick()


def job_of(mgn, job_id):
    return mgn.describe_jobs(filters={"jobIDs": [job_id]})["items"][0]


def server_of(mgn, server_id):
    return mgn.describe_source_servers(filters={"sourceServerIDs": [server_id]})["items"][0]


def error_of(raised):
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_seeded_source_server_is_described_as_mgn_does(sandbox, service, mgn):
    server_id = service.add_source_server(SOURCE, REGION, "web-01", volumes=[
        {"device": "/dev/sda1", "size_gib": 40, "kms_key_id": None},
        {"device": "/dev/sdb", "size_gib": 100, "kms_key_id": "aws/ebs"},
    ])

    server = server_of(mgn, server_id)

    assert re.fullmatch(r"s-[0-9a-f]{17}", server_id)
    assert server["arn"] == f"arn:aws:mgn:{REGION}:{SOURCE}:source-server/{server_id}"
    assert server["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert server["sourceProperties"]["identificationHints"]["hostname"] == "web-01"
    assert server["sourceProperties"]["disks"] == [
        {"deviceName": "/dev/sda1", "bytes": 40 * GIB}, {"deviceName": "/dev/sdb", "bytes": 100 * GIB}]
    assert server["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"
    assert "launchedInstance" not in server


def test_describe_source_servers_filters_and_paginates(sandbox, service, mgn):
    cutover_ready = [service.add_source_server(SOURCE, REGION, f"app-{n}") for n in range(3)]
    test_ready = service.add_source_server(SOURCE, REGION, "db-1", state="READY_FOR_TEST",
                                           replication_type="SNAPSHOT_SHIPPING")
    archived = service.add_source_server(SOURCE, REGION, "old-1", is_archived=True)

    def ids(**filters):
        return [s["sourceServerID"] for s in mgn.describe_source_servers(filters=filters)["items"]]

    assert ids(lifeCycleStates=["READY_FOR_TEST"]) == [test_ready]
    assert ids(replicationTypes=["SNAPSHOT_SHIPPING"]) == [test_ready]
    assert ids(isArchived=True) == [archived]
    assert ids(isArchived=False) == cutover_ready + [test_ready]
    assert ids(sourceServerIDs=[archived, test_ready]) == [test_ready, archived]
    pages = list(mgn.get_paginator("describe_source_servers").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [s["sourceServerID"] for page in pages for s in page["items"]] == cutover_ready + [test_ready, archived]


def test_source_servers_belong_to_one_account_and_region(sandbox, service):
    server_id = service.add_source_server(OTHER, REGION, "web-01")

    assert mgn_client(sandbox, SOURCE).describe_source_servers()["items"] == []
    assert mgn_client(sandbox, OTHER, "us-west-2").describe_source_servers()["items"] == []
    job = mgn_client(sandbox, OTHER).start_cutover(sourceServerIDs=[server_id])["job"]
    until_launched(sandbox)

    instance_id = job_of(mgn_client(sandbox, OTHER), job["jobID"])["participatingServers"][0]["launchedEc2InstanceID"]
    reservations = sandbox.client("ec2", account_id=OTHER).describe_instances()["Reservations"]
    assert [r["OwnerId"] for r in reservations] == [OTHER]
    assert reservations[0]["Instances"][0]["InstanceId"] == instance_id


def test_start_cutover_launches_an_instance_with_the_servers_volumes(sandbox, service, mgn):
    kms = sandbox.client("kms")
    customer_key = kms.create_key(Description="migration")["KeyMetadata"]
    server_id = service.add_source_server(SOURCE, REGION, "web-01", volumes=[
        {"device": "/dev/xvda", "size_gib": 40, "kms_key_id": customer_key["KeyId"]},
        {"device": "/dev/xvdb", "size_gib": 100, "kms_key_id": "aws/ebs"},
        {"device": "/dev/xvdc", "size_gib": 20, "kms_key_id": None},
    ])

    started = mgn.start_cutover(sourceServerIDs=[server_id], tags={"wave": "1"})
    job = started["job"]

    assert started["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert re.fullmatch(r"mgnjob-[0-9a-f]{17}", job["jobID"])
    assert (job["type"], job["initiatedBy"], job["status"], job["tags"]) == ("LAUNCH", "START_CUTOVER", "PENDING", {"wave": "1"})
    assert job["participatingServers"] == [{"sourceServerID": server_id, "launchStatus": "PENDING"}]
    assert server_of(mgn, server_id)["lifeCycle"]["state"] == "CUTTING_OVER"
    assert job_of(mgn, job["jobID"])["status"] == "STARTED"

    until_launched(sandbox)
    done = job_of(mgn, job["jobID"])
    participant = done["participatingServers"][0]
    instance_id = participant["launchedEc2InstanceID"]
    assert (done["status"], participant["launchStatus"]) == ("COMPLETED", "LAUNCHED")
    assert "endDateTime" in done
    assert server_of(mgn, server_id)["launchedInstance"]["ec2InstanceID"] == instance_id

    ec2 = sandbox.client("ec2")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["AWSApplicationMigrationServiceManaged"] == "mgn.amazonaws.com"
    assert tags["AWSApplicationMigrationServiceSourceServerID"] == server_id
    assert tags["Name"] == "web-01"
    assert instance["RootDeviceName"] == "/dev/xvda"
    volumes = {v["Attachments"][0]["Device"]: v for v in ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]}
    aws_managed = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert {device: (v["Size"], v["Encrypted"], v.get("KmsKeyId")) for device, v in volumes.items()} == {
        "/dev/xvda": (40, True, customer_key["Arn"]),
        "/dev/xvdb": (100, True, aws_managed),
        "/dev/xvdc": (20, False, None),
    }


def test_post_launch_actions_succeed_after_their_modelled_time(sandbox, service, mgn):
    server_id = service.add_source_server(SOURCE, REGION, "web-01")
    job_id = mgn.start_cutover(sourceServerIDs=[server_id])["job"]["jobID"]
    until_launched(sandbox)

    def action_states():
        status = job_of(mgn, job_id)["participatingServers"][0]["postLaunchActionsStatus"]
        return {a["executionStatus"] for a in status["postLaunchActionsLaunchStatusList"]}

    assert action_states() == {"IN_PROGRESS"}
    sandbox.clock.advance(sandbox.settings.post_launch_actions_s)
    assert action_states() == {"SUCCESS"}


def test_a_launch_publishes_the_launch_result_event_aws_sends(sandbox, service, mgn):
    sample = json.loads((EVENTS / "mgn-launch-result-cutover.json").read_text())
    server_id = service.add_source_server(SOURCE, REGION, "web-01")
    job_id = mgn.start_cutover(sourceServerIDs=[server_id])["job"]["jobID"]
    assert [e for e in sandbox.published if e.source == "aws.mgn"] == []

    until_launched(sandbox)

    [event] = [e.as_eventbridge() for e in sandbox.published if e.source == "aws.mgn"]
    assert set(event) == set(sample)
    assert (event["source"], event["detail-type"], event["account"], event["region"]) == (
        sample["source"], sample["detail-type"], SOURCE, REGION)
    assert event["resources"] == [server_of(mgn, server_id)["arn"]]
    assert event["detail"] == {"state": "CUTOVER_LAUNCH_SUCCEEDED", "job-id": job_id}


def test_a_failing_server_launches_nothing_and_reports_failure(sandbox, service, mgn):
    ok = service.add_source_server(SOURCE, REGION, "web-01")
    broken = service.add_source_server(SOURCE, REGION, "web-02", fail_launch=True)
    job_id = mgn.start_cutover(sourceServerIDs=[ok, broken])["job"]["jobID"]

    until_launched(sandbox)

    job = job_of(mgn, job_id)
    outcome = {p["sourceServerID"]: p for p in job["participatingServers"]}
    assert job["status"] == "COMPLETED"
    assert outcome[broken]["launchStatus"] == "FAILED"
    assert "launchedEc2InstanceID" not in outcome[broken]
    instances = [i["InstanceId"] for r in sandbox.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    assert instances == [outcome[ok]["launchedEc2InstanceID"]]
    states = {e.resources[0].rsplit("/", 1)[1]: e.detail["state"] for e in sandbox.published if e.source == "aws.mgn"}
    assert states == {ok: "CUTOVER_LAUNCH_SUCCEEDED", broken: "CUTOVER_LAUNCH_FAILED"}


def test_a_server_moves_through_test_and_cutover_as_in_mgn(sandbox, service, mgn):
    server_id = service.add_source_server(SOURCE, REGION, "web-01", state="READY_FOR_TEST")

    with pytest.raises(ClientError) as not_ready:
        mgn.start_cutover(sourceServerIDs=[server_id])
    assert error_of(not_ready) == ("ConflictException", 409)
    assert not_ready.value.response["errors"][0]["resourceId"] == server_id

    test_job = mgn.start_test(sourceServerIDs=[server_id])["job"]
    assert (test_job["initiatedBy"], server_of(mgn, server_id)["lifeCycle"]["state"]) == ("START_TEST", "TESTING")
    until_launched(sandbox)
    assert sandbox.published[-1].detail == {"state": "TEST_LAUNCH_SUCCEEDED", "job-id": test_job["jobID"]}

    mgn.change_server_life_cycle_state(sourceServerID=server_id, lifeCycle={"state": "READY_FOR_CUTOVER"})
    mgn.start_cutover(sourceServerIDs=[server_id])
    with pytest.raises(ClientError) as not_launched:
        mgn.finalize_cutover(sourceServerID=server_id)
    assert error_of(not_launched) == ("ConflictException", 409)
    until_launched(sandbox)

    finalized = mgn.finalize_cutover(sourceServerID=server_id)
    assert finalized["lifeCycle"]["state"] == "CUTOVER"
    assert finalized["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    assert "finalized" in finalized["lifeCycle"]["lastCutover"]
    with pytest.raises(ClientError) as cut_over:
        mgn.start_cutover(sourceServerIDs=[server_id])
    assert error_of(cut_over) == ("ConflictException", 409)


def test_a_server_in_an_active_job_cannot_join_another(sandbox, service, mgn):
    server_id = service.add_source_server(SOURCE, REGION, "web-01")
    mgn.start_cutover(sourceServerIDs=[server_id])

    with pytest.raises(ClientError) as busy:
        mgn.start_cutover(sourceServerIDs=[server_id])

    assert error_of(busy) == ("ConflictException", 409)
    assert "active job" in busy.value.response["errors"][0]["message"]
    until_launched(sandbox)
    assert mgn.start_cutover(sourceServerIDs=[server_id])["job"]["status"] == "PENDING"  # a relaunch, once done


def test_unknown_source_servers_are_rejected(mgn):
    with pytest.raises(ClientError) as unknown:
        mgn.start_cutover(sourceServerIDs=["s-0123456789abcdef0"])
    assert error_of(unknown) == ("ValidationException", 400)
    assert unknown.value.response["fieldList"][0]["name"] == "sourceServerIDs"
    with pytest.raises(ClientError) as missing:
        mgn.finalize_cutover(sourceServerID="s-0123456789abcdef0")
    assert error_of(missing) == ("ResourceNotFoundException", 404)


def test_mgn_limits_servers_per_job_servers_in_active_jobs_and_active_jobs(sandbox, service, mgn):
    ids = [service.add_source_server(SOURCE, REGION, f"host-{n}") for n in range(201)]

    with pytest.raises(ClientError) as too_many:
        mgn.start_cutover(sourceServerIDs=ids)
    assert error_of(too_many) == ("ValidationException", 400)

    for server_id in ids[:18]:
        mgn.start_cutover(sourceServerIDs=[server_id])
    mgn.start_cutover(sourceServerIDs=ids[18:150])  # 19 active jobs, 150 servers
    with pytest.raises(ClientError) as over_quota:
        mgn.start_cutover(sourceServerIDs=ids[150:])
    assert error_of(over_quota) == ("ConflictException", 409)
    assert "200 source servers" in over_quota.value.response["Error"]["Message"]
    mgn.start_cutover(sourceServerIDs=ids[150:200])  # 20 active jobs, 200 servers
    with pytest.raises(ClientError) as too_many_jobs:
        mgn.start_cutover(sourceServerIDs=[ids[200]])
    assert error_of(too_many_jobs) == ("ConflictException", 409)
    assert "20 jobs" in too_many_jobs.value.response["Error"]["Message"]


def test_describe_jobs_filters_by_id_and_creation_date_and_paginates(sandbox, service, mgn):
    first, second, third = (service.add_source_server(SOURCE, REGION, f"host-{n}") for n in range(3))
    early = mgn.start_cutover(sourceServerIDs=[first])["job"]
    sandbox.clock.advance(3600)
    late = [mgn.start_cutover(sourceServerIDs=[s])["job"]["jobID"] for s in (second, third)]

    def ids(**filters):
        return [j["jobID"] for j in mgn.describe_jobs(filters=filters)["items"]]

    assert ids(jobIDs=[late[1]]) == [late[1]]
    assert ids(fromDate=late_date(early, 1800)) == late
    assert ids(toDate=late_date(early, 1800)) == [early["jobID"]]
    pages = list(mgn.get_paginator("describe_jobs").paginate(PaginationConfig={"PageSize": 2}))
    assert [[j["jobID"] for j in page["items"]] for page in pages] == [[early["jobID"], late[0]], [late[1]]]
    with pytest.raises(ClientError) as bad_date:
        mgn.describe_jobs(filters={"fromDate": "2026-13-45T00:00:00Z"})
    assert error_of(bad_date) == ("ValidationException", 400)


def late_date(job, seconds):
    from datetime import datetime, timedelta

    created = datetime.strptime(job["creationDateTime"], "%Y-%m-%dT%H:%M:%SZ")
    return (created + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_job_log_items_tell_the_launch_story(sandbox, service, mgn):
    server_id = service.add_source_server(SOURCE, REGION, "web-01")
    job_id = mgn.start_cutover(sourceServerIDs=[server_id])["job"]["jobID"]
    until_launched(sandbox)

    items = [item for page in mgn.get_paginator("describe_job_log_items").paginate(
        jobID=job_id, PaginationConfig={"PageSize": 2}) for item in page["items"]]

    assert [item["event"] for item in items] == ["JOB_START", "SNAPSHOT_START", "LAUNCH_START", "JOB_END"]
    instance_id = job_of(mgn, job_id)["participatingServers"][0]["launchedEc2InstanceID"]
    assert items[2]["eventData"] == {"sourceServerID": server_id, "targetInstanceID": instance_id}
