"""The README's demo, end to end over loopback HTTP: two processes, as an operator would run them."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from automation.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SECRET_PATTERNS = [re.compile(p) for p in (r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", r"aws_secret_access_key", r"SecretAccessKey",
                                           r"SessionToken")]


@pytest.fixture
def sandbox_server():
    server = subprocess.Popen([sys.executable, "-m", "automation", "sandbox", "--port", "0", "--servers", "10"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), server.stderr.read()
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_demo_of_ten_servers_leaves_each_target_owning_its_encrypted_copy(sandbox_server):
    demo = subprocess.run([sys.executable, "-m", "automation", "demo", "--servers", "10", "--json",
                           "--endpoint-url", sandbox_server], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    result = json.loads(demo.stdout.strip().splitlines()[-1])
    assert (result["servers"], result["done"], result["failed"], result["cancelled"]) == (10, 10, 0, 0)
    assert result["api_calls"]["ec2:CreateImage"] == 10 and result["api_calls"]["ec2:CopyImage"] == 20
    assert set(result["invocations"]) == {"on_mgn_event", "advance_jobs", "on_ami_event"}
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(demo.stdout + demo.stderr), f"credentials in the demo's output: {pattern.pattern}"

    aws = Sandbox.remote(sandbox_server)
    jobs = result["jobs"]
    for account, region in (("222222222222", "us-east-1"), ("333333333333", "us-west-2")):
        ec2 = aws.client("ec2", account_id=account, region=region)
        key = aws.client("kms", account_id=account, region=region).describe_key(
            KeyId="alias/ami-distributor-target")["KeyMetadata"]["Arn"]
        expected = {t["image_id"] for j in jobs for t in j["targets"] if t["account"] == account}
        owned = ec2.describe_images(Owners=["self"])["Images"]
        assert {i["ImageId"] for i in owned} == expected and len(expected) == 10
        snapshot_keys = {s["SnapshotId"]: s.get("KmsKeyId") for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        for image in owned:
            assert image["OwnerId"] == account and image["State"] == "available"
            assert all(snapshot_keys[m["Ebs"]["SnapshotId"]] == key for m in image["BlockDeviceMappings"])

    source = aws.client("ec2")
    assert source.describe_images(Owners=["self"])["Images"] == []
    assert source.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    instances = {i["InstanceId"]: i["State"]["Name"] for r in source.describe_instances()["Reservations"]
                 for i in r["Instances"]}
    assert {instances[j["instance_id"]] for j in jobs} == {"terminated"}
