"""What a finished wave must look like, read from AWS state in the sandbox (not from our own counters)."""
from __future__ import annotations

from automation.wave import Wave


def source_images(wave: Wave) -> list[dict]:
    ec2 = wave.sandbox.client("ec2", region=wave.stage.region)
    return ec2.describe_images(Owners=["self"])["Images"]


def images_in(wave: Wave, account: str, region: str) -> list[dict]:
    return wave.sandbox.client("ec2", account_id=account, region=region).describe_images(Owners=["self"])["Images"]


def key_arn(wave: Wave, account: str, region: str) -> str:
    kms = wave.sandbox.client("kms", account_id=account, region=region)
    return kms.describe_key(KeyId="alias/ami-distributor-target")["KeyMetadata"]["Arn"]


def assert_copies_owned_and_encrypted(wave: Wave, jobs: list[dict], targets: list[tuple[str, str]]) -> None:
    """Each DONE job has exactly one copy per target, owned by the target, encrypted with its key."""
    for account, region in targets:
        images = images_in(wave, account, region)
        by_id = {image["ImageId"]: image for image in images}
        expected_key = key_arn(wave, account, region)
        copies = [job["copies"][f"{account}/{region}"]["image_id"] for job in jobs]
        assert len(images) == len(jobs), f"{account}/{region} holds {len(images)} images for {len(jobs)} jobs"
        assert sorted(copies) == sorted(by_id)
        snapshots = wave.sandbox.client("ec2", account_id=account, region=region).describe_snapshots(
            OwnerIds=["self"])["Snapshots"]
        snapshot_keys = {s["SnapshotId"]: s.get("KmsKeyId") for s in snapshots}
        for image in images:
            assert image["OwnerId"] == account and image["State"] == "available"
            for mapping in image["BlockDeviceMappings"]:
                assert mapping["Ebs"]["Encrypted"] is True
                assert snapshot_keys[mapping["Ebs"]["SnapshotId"]] == expected_key


def assert_source_cleaned_up(wave: Wave, jobs: list[dict]) -> None:
    ec2 = wave.sandbox.client("ec2", region=wave.stage.region)
    assert source_images(wave) == []
    own_snapshots = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    for job in jobs:
        assert not own_snapshots & set(job["snapshot_ids"])
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    for job in jobs:
        assert states[job["instance_id"]] == "terminated"
