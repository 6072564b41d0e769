"""Security tests use the property tests' sandbox stage and log capture."""
from __future__ import annotations

from automation.wave import Wave
from tests.property.conftest import shipped_logs, stage_wave  # noqa: F401 (fixtures)

ALLOWED_ACCOUNTS = {"222222222222", "333333333333"}  # the local stage's targets


def shared_with(wave: Wave) -> list[tuple[str, dict]]:
    """Every launch permission of every source AMI and every createVolumePermission of every source snapshot,
    as AWS (the sandbox) holds them: (resource, permission)."""
    ec2 = wave.sandbox.client("ec2", region=wave.stage.region)
    found = []
    for image in ec2.describe_images(Owners=["self"])["Images"]:
        attribute = ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
        found += [(image["ImageId"], p) for p in attribute["LaunchPermissions"]]
        if image.get("Public"):
            found.append((image["ImageId"], {"Public": True}))
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        attribute = ec2.describe_snapshot_attribute(SnapshotId=snapshot["SnapshotId"], Attribute="createVolumePermission")
        found += [(snapshot["SnapshotId"], p) for p in attribute["CreateVolumePermissions"]]
    return found


def assert_shared_only_within_the_allow_list(wave: Wave) -> None:
    outside = [(resource, p) for resource, p in shared_with(wave) if set(p) != {"UserId"} or p["UserId"] not in ALLOWED_ACCOUNTS]
    assert outside == [], f"shared outside the allow-list: {outside}"
    assert wave.sandbox.client("ec2", region=wave.stage.region).describe_images(ExecutableUsers=["all"])["Images"] == []
