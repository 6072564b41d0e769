"""The sandbox's AMI and snapshot behaviour (automation/sandbox/ec2_images.py), in both transports.

Every test fails on plain moto (SANDBOX_FIDELITY=off): each one asserts something moto lacks.
"""
import os
import weakref
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from automation.sandbox import DEFAULT_REGION, Sandbox, SandboxSettings, VirtualClock
from automation.sandbox.ec2_images import ImageFidelity
from automation.sandbox.settings import DurationModel, FailureModel

A, B, C = "111111111111", "222222222222", "333333333333"  # source, target, outsider
ORG = "arn:aws:organizations::999999999999:organization/o-abc123"
OU = "arn:aws:organizations::999999999999:ou/o-abc123/ou-ab12-cdef3456"
STEADY = DurationModel(jitter=0.0)  # create 120 s + 6 s/GiB, copy 300 s + 12 s/GiB, no jitter
FIDELITY = os.environ.get("SANDBOX_FIDELITY", "on") != "off"


_clients: "weakref.WeakKeyDictionary[Sandbox, dict]" = weakref.WeakKeyDictionary()
_session = boto3.Session()  # one botocore loader: a fresh session re-reads the EC2 model (~0.4 s)


def client(sandbox, service="ec2", account=A, region=DEFAULT_REGION):
    """`sandbox.client(service, account, region)`, built once per sandbox from one shared session."""
    cache = _clients.setdefault(sandbox, {})
    if (service, account, region) not in cache:
        cache[service, account, region] = _session.client(
            service, region_name=region, endpoint_url=sandbox.endpoint_url, **sandbox.credentials(account))
    return cache[service, account, region]


def launch(sandbox, account=A, volumes=(("/dev/sda1", 8, None),)):
    """An instance in `account` with EBS volumes (device, GiB, key): key None = unencrypted,
    "default" = encrypted with the account's default aws/ebs key, else a KMS key ID or ARN."""
    mappings = []
    for device, size, key in volumes:
        ebs = {"VolumeSize": size}
        if key is not None:
            ebs["Encrypted"] = True
            if key != "default":
                ebs["KmsKeyId"] = key
        mappings.append({"DeviceName": device, "Ebs": ebs})
    reservation = client(sandbox, "ec2", account).run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, BlockDeviceMappings=mappings)
    return reservation["Instances"][0]["InstanceId"]


def new_key(sandbox, account=A):
    return client(sandbox, "kms", account).create_key(Description="ami-distributor test")["KeyMetadata"]["Arn"]


def make_image(sandbox, account=A, name="wave1-web01", volumes=None, wait=True, **kwargs):
    instance_id = launch(sandbox, account, volumes or (("/dev/sda1", 8, new_key(sandbox, account)),))
    image_id = client(sandbox, "ec2", account).create_image(
        InstanceId=instance_id, Name=name, NoReboot=True, **kwargs)["ImageId"]
    if wait:
        finish_everything(sandbox)
    return image_id


def finish_everything(sandbox, seconds=24 * 3600):
    sandbox.clock.advance(seconds)
    client(sandbox, "sts").get_caller_identity()  # any request runs what is due


def image(sandbox, image_id, account=A, region=DEFAULT_REGION):
    return client(sandbox, "ec2", account, region).describe_images(ImageIds=[image_id])["Images"][0]


def snapshot_ids(sandbox, image_id, account=A):
    return [m["Ebs"]["SnapshotId"] for m in image(sandbox, image_id, account)["BlockDeviceMappings"]]


def share(sandbox, image_id, account_id=None, *, snapshots=True, **permission):
    ec2 = client(sandbox, "ec2")
    entry = {"UserId": account_id} if account_id else permission
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [entry]})
    if snapshots and account_id:
        for snapshot_id in snapshot_ids(sandbox, image_id):
            ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                          OperationType="add", UserIds=[account_id])


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]


# 1. launch permissions across accounts ----------------------------------------------------------
def test_an_image_shared_with_an_account_is_visible_to_it_and_copyable_until_unshared(sandbox):
    image_id = make_image(sandbox)
    target = client(sandbox, "ec2", B)
    assert error_of(target.describe_images, ImageIds=[image_id])["Code"] == "InvalidAMIID.NotFound"

    share(sandbox, image_id, B)
    seen = target.describe_images(ImageIds=[image_id])["Images"]
    assert [(i["ImageId"], i["OwnerId"]) for i in seen] == [(image_id, A)]
    assert [i["ImageId"] for i in target.describe_images(ExecutableUsers=["self"])["Images"]] == [image_id]
    assert error_of(client(sandbox, "ec2", C).describe_images, ImageIds=[image_id])["Code"] == "InvalidAMIID.NotFound"
    copy_id = target.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="copy-1")["ImageId"]
    assert image(sandbox, copy_id, B)["OwnerId"] == B

    client(sandbox, "ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Remove": [{"UserId": B}]})
    assert error_of(target.describe_images, ImageIds=[image_id])["Code"] == "InvalidAMIID.NotFound"
    assert target.describe_images(ExecutableUsers=["self"])["Images"] == []
    assert error_of(target.copy_image, SourceImageId=image_id, SourceRegion=DEFAULT_REGION,
                    Name="copy-2")["Code"] == "InvalidAMIID.NotFound"


def test_an_image_shared_with_an_organization_or_unit_is_visible_to_its_members_only(sandbox):
    sandbox.directory.add_organization(ORG, [A, B])
    sandbox.directory.add_unit(OU, [C])
    by_org = make_image(sandbox, name="by-org")
    by_unit = make_image(sandbox, name="by-unit")
    share(sandbox, by_org, OrganizationArn=ORG)
    share(sandbox, by_unit, OrganizationalUnitArn=OU)

    def visible(account):
        return {i["ImageId"] for i in client(sandbox, "ec2", account).describe_images(ExecutableUsers=["self"])["Images"]}

    assert visible(B) == {by_org}
    assert visible(C) == {by_org, by_unit}  # add_unit makes C a member of the organization too
    assert visible("444444444444") == set()
    assert image(sandbox, by_unit, C)["OwnerId"] == A
    attribute = client(sandbox, "ec2").describe_image_attribute(ImageId=by_unit, Attribute="launchPermission")
    assert attribute["LaunchPermissions"] == [{"OrganizationalUnitArn": OU}]


def test_the_account_an_image_is_shared_with_sees_its_own_tags_on_it_and_cannot_modify_it(sandbox):
    image_id = make_image(sandbox, TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "owner-tag", "Value": "x"}]}])
    share(sandbox, image_id, B)
    target = client(sandbox, "ec2", B)
    assert image(sandbox, image_id, B).get("Tags", []) == []
    target.create_tags(Resources=[image_id], Tags=[{"Key": "mine", "Value": "y"}])
    assert image(sandbox, image_id, B)["Tags"] == [{"Key": "mine", "Value": "y"}]
    assert image(sandbox, image_id, A)["Tags"] == [{"Key": "owner-tag", "Value": "x"}]
    not_owner = {"Code": "AuthFailure", "Message": f"Not authorized for image:{image_id}"}
    assert error_of(target.modify_image_attribute, ImageId=image_id, LaunchPermission={"Add": [{"UserId": C}]}) == not_owner
    assert error_of(target.deregister_image, ImageId=image_id) == not_owner
    assert error_of(client(sandbox, "ec2", C).deregister_image, ImageId=image_id)["Code"] == "InvalidAMIID.NotFound"


# 2. CreateImage keeps the instance's block devices ----------------------------------------------
def test_create_image_makes_one_snapshot_per_volume_with_its_size_encryption_and_key(sandbox):
    key = new_key(sandbox)
    instance_id = launch(sandbox, A, [("/dev/sda1", 8, None), ("/dev/sdf", 20, key), ("/dev/sdg", 5, "default")])
    ec2 = client(sandbox, "ec2")
    image_id = ec2.create_image(InstanceId=instance_id, Name="three-volumes", NoReboot=True, TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": "job", "Value": "j-1"}]},
        {"ResourceType": "snapshot", "Tags": [{"Key": "job", "Value": "j-1"}]},
    ])["ImageId"]

    found = image(sandbox, image_id)
    devices = {m["DeviceName"]: m["Ebs"] for m in found["BlockDeviceMappings"]}
    assert {d: (e["VolumeSize"], e["Encrypted"]) for d, e in devices.items()} == {
        "/dev/sda1": (8, False), "/dev/sdf": (20, True), "/dev/sdg": (5, True)}
    assert found["Tags"] == [{"Key": "job", "Value": "j-1"}]
    snapshots = {s["SnapshotId"]: s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert set(snapshots) == {e["SnapshotId"] for e in devices.values()}  # no made-up 15 GiB snapshot
    by_device = {d: snapshots[e["SnapshotId"]] for d, e in devices.items()}
    assert by_device["/dev/sdf"]["KmsKeyId"] == key
    default_key = client(sandbox, "kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert by_device["/dev/sdg"]["KmsKeyId"] == default_key["Arn"]
    assert default_key["KeyManager"] == "AWS"
    assert "KmsKeyId" not in by_device["/dev/sda1"]
    assert all(s["Tags"] == [{"Key": "job", "Value": "j-1"}] for s in snapshots.values())
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    assert {s["VolumeId"] for s in snapshots.values()} == {v["VolumeId"] for v in volumes}


def test_create_image_rejects_a_name_in_use_a_malformed_name_and_a_missing_instance(sandbox):
    first = make_image(sandbox, name="wave1-db01")
    ec2 = client(sandbox, "ec2")
    instance_id = launch(sandbox)
    duplicate = error_of(ec2.create_image, InstanceId=instance_id, Name="wave1-db01")
    assert duplicate == {"Code": "InvalidAMIName.Duplicate",
                         "Message": f"AMI name wave1-db01 is already in use by AMI {first}"}
    assert error_of(ec2.create_image, InstanceId=instance_id, Name="bad|name")["Code"] == "InvalidAMIName.Malformed"
    assert error_of(ec2.create_image, InstanceId="i-0123456789abcdef0", Name="other")["Code"] == "InvalidInstanceID.NotFound"
    # another account, or the same name once deregistered, is fine
    make_image(sandbox, account=B, name="wave1-db01")
    ec2.deregister_image(ImageId=first)
    assert ec2.create_image(InstanceId=instance_id, Name="wave1-db01")["ImageId"] != first


# 3. pending for a modelled time, then available or failed --------------------------------------
def test_an_image_and_its_snapshots_stay_pending_for_the_modelled_time(make_sandbox):
    sandbox = make_sandbox(SandboxSettings(durations=STEADY))
    image_id = make_image(sandbox, volumes=[("/dev/sda1", 10, None), ("/dev/sdf", 30, None)], wait=False)
    expected = STEADY.create_seconds(40, 0.5)  # 120 + 6 * 40 = 360 s
    assert expected == 360
    ec2 = client(sandbox, "ec2")

    def states():
        snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(sandbox, image_id))["Snapshots"]
        return image(sandbox, image_id)["State"], {s["State"] for s in snapshots}

    assert states() == ("pending", {"pending"})
    created = datetime.fromtimestamp(sandbox.clock.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert image(sandbox, image_id)["CreationDate"] == created  # the sandbox's clock, not the wall clock
    sandbox.clock.advance(expected - 1)
    assert states() == ("pending", {"pending"})
    sandbox.clock.advance(1)
    assert states() == ("available", {"completed"})


def test_the_pending_time_is_drawn_from_the_seed(sandbox_mode):
    def pending_seconds(seed):
        with Sandbox(seed=seed, clock=VirtualClock(), fidelity=FIDELITY).start(sandbox_mode) as sandbox:
            make_image(sandbox, volumes=[("/dev/sda1", 100, None)], wait=False)
            return sandbox.scheduler.next_due() - sandbox.clock.now()

    nominal = DurationModel().create_seconds(100, 0.5)  # 720 s, jitter +-20 %
    first, again, other = pending_seconds(1), pending_seconds(1), pending_seconds(2)
    assert first == again
    assert first != other
    assert all(0.8 * nominal <= seconds <= 1.2 * nominal for seconds in (first, other))


def test_a_seeded_failure_rate_or_a_chosen_image_ends_failed_with_a_state_reason(make_sandbox):
    settings = SandboxSettings(durations=STEADY, failures=FailureModel(create_failure_rate=1.0))
    sandbox = make_sandbox(settings)
    failed = make_image(sandbox, name="always-fails")
    found = image(sandbox, failed)
    assert found["State"] == "failed"
    assert found["StateReason"] == {"Code": "Client.InternalError",
                                    "Message": "Client.InternalError: Internal error while creating the snapshot"}
    snapshots = client(sandbox, "ec2").describe_snapshots(SnapshotIds=snapshot_ids(sandbox, failed))["Snapshots"]
    assert {s["State"] for s in snapshots} == {"error"}

    settings.failures.create_failure_rate = 0.0
    fidelity = sandbox.extension(ImageFidelity)
    chosen = make_image(sandbox, name="chosen-to-fail", wait=False)
    fidelity.fail_image(chosen, "Client.InvalidSnapshot.NotFound: The snapshot went away")
    finish_everything(sandbox)
    assert image(sandbox, chosen)["StateReason"] == {
        "Code": "Client.InvalidSnapshot.NotFound", "Message": "Client.InvalidSnapshot.NotFound: The snapshot went away"}
    with pytest.raises(ValueError, match="not a pending image"):
        fidelity.fail_image(chosen)


def test_pending_copies_counts_copies_still_pending_per_destination_account_and_region(make_sandbox):
    sandbox = make_sandbox(SandboxSettings(durations=STEADY))
    image_id = make_image(sandbox, volumes=[("/dev/sda1", 10, new_key(sandbox))])
    share(sandbox, image_id, B)
    fidelity = sandbox.extension(ImageFidelity)
    for n in range(2):
        client(sandbox, "ec2", B).copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name=f"copy-{n}")
    west = client(sandbox, "ec2", B, "eu-west-1")  # the copy is made in the caller's region
    west_copy = west.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="copy-west")["ImageId"]
    make_image(sandbox, name="a-create-is-not-a-copy", wait=False)
    assert fidelity.pending_copies(B, DEFAULT_REGION) == 2
    assert fidelity.pending_copies(B, "eu-west-1") == 1
    assert fidelity.pending_copies(A, DEFAULT_REGION) == 0
    west_snapshot = west.describe_snapshots(OwnerIds=["self"])["Snapshots"][0]
    west_default_key = client(sandbox, "kms", B, "eu-west-1").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert west_snapshot["KmsKeyId"] == west_default_key  # an encrypted source stays encrypted
    sandbox.clock.advance(STEADY.copy_seconds(10, 0.5))  # 300 + 12 * 10 = 420 s
    assert image(sandbox, west_copy, B, "eu-west-1")["State"] == "available"
    assert fidelity.pending_copies(B, DEFAULT_REGION) == fidelity.pending_copies(B, "eu-west-1") == 0


# 4. EC2 AMI State Change events -----------------------------------------------------------------
def test_state_changes_are_published_in_the_owning_account(make_sandbox):
    sandbox = make_sandbox(SandboxSettings(failures=FailureModel(copy_failure_rate=1.0)))
    image_id = make_image(sandbox)
    share(sandbox, image_id, B)
    copy_id = client(sandbox, "ec2", B).copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION,
                                                  Name="will-fail")["ImageId"]
    finish_everything(sandbox)
    client(sandbox, "ec2").deregister_image(ImageId=image_id)

    events = [e.as_eventbridge() for e in sandbox.published if e.detail_type == "EC2 AMI State Change"]
    assert [(e["account"], e["detail"]["ImageId"], e["detail"]["State"]) for e in events] == [
        (A, image_id, "available"), (B, copy_id, "failed"), (A, image_id, "deregistered")]
    for event in events:
        assert event["source"] == "aws.ec2"
        assert event["resources"] == [f"arn:aws:ec2:{DEFAULT_REGION}::image/{event['detail']['ImageId']}"]
        assert set(event["detail"]) == {"RequestId", "ImageId", "State", "ErrorMessage"}
    assert events[0]["detail"]["ErrorMessage"] == ""
    assert events[1]["detail"]["ErrorMessage"] == FailureModel().reason


# 5. CopyImage ------------------------------------------------------------------------------------
def test_copy_image_client_token_is_idempotent_per_account(sandbox):
    image_id = make_image(sandbox)
    share(sandbox, image_id, B)
    share(sandbox, image_id, C)
    params = dict(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="copy", ClientToken="job-1:target")
    first = client(sandbox, "ec2", B).copy_image(**params)["ImageId"]
    assert client(sandbox, "ec2", B).copy_image(**params)["ImageId"] == first
    assert [i["ImageId"] for i in client(sandbox, "ec2", B).describe_images(Owners=["self"])["Images"]] == [first]
    other = client(sandbox, "ec2", C).copy_image(**params)["ImageId"]
    assert other != first


def test_copy_image_reencrypts_with_the_given_or_default_key_and_keeps_sizes(sandbox):
    source_key = new_key(sandbox)
    image_id = make_image(sandbox, volumes=[("/dev/sda1", 8, None), ("/dev/sdf", 50, source_key)])
    share(sandbox, image_id, B)
    target_key = new_key(sandbox, B)
    target = client(sandbox, "ec2", B)

    def copy(name, **kwargs):
        copy_id = target.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name=name, **kwargs)["ImageId"]
        devices = {m["DeviceName"]: m["Ebs"] for m in image(sandbox, copy_id, B)["BlockDeviceMappings"]}
        snapshots = target.describe_snapshots(SnapshotIds=[e["SnapshotId"] for e in devices.values()])["Snapshots"]
        by_id = {s["SnapshotId"]: s for s in snapshots}
        return {d: (e["VolumeSize"], by_id[e["SnapshotId"]]["Encrypted"], by_id[e["SnapshotId"]].get("KmsKeyId"),
                    by_id[e["SnapshotId"]]["OwnerId"]) for d, e in devices.items()}

    assert copy("with-key", Encrypted=True, KmsKeyId=target_key) == {
        "/dev/sda1": (8, True, target_key, B), "/dev/sdf": (50, True, target_key, B)}
    default_key = client(sandbox, "kms", B).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert default_key.split(":")[4] == B
    assert copy("default-key", Encrypted=True) == {
        "/dev/sda1": (8, True, default_key, B), "/dev/sdf": (50, True, default_key, B)}
    assert copy("as-is") == {"/dev/sda1": (8, False, None, B), "/dev/sdf": (50, True, default_key, B)}
    assert error_of(target.copy_image, SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="key-only",
                    KmsKeyId=target_key)["Code"] == "InvalidParameterDependency"


def test_copy_image_tags_copies_only_the_callers_own_tags_on_the_source(sandbox):
    tags = [{"Key": "job", "Value": "j-1"}, {"Key": "server", "Value": "web01"}]
    image_id = make_image(sandbox, TagSpecifications=[{"ResourceType": "image", "Tags": tags}])
    ec2 = client(sandbox, "ec2")
    spec = [{"ResourceType": "image", "Tags": [{"Key": "copy", "Value": "yes"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "copy", "Value": "snap"}]}]

    same_account = ec2.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="same-account",
                                  CopyImageTags=True, TagSpecifications=spec)["ImageId"]
    assert sorted(image(sandbox, same_account)["Tags"], key=lambda t: t["Key"]) == sorted(
        tags + [{"Key": "copy", "Value": "yes"}], key=lambda t: t["Key"])
    untagged = ec2.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="no-tags")["ImageId"]
    assert image(sandbox, untagged).get("Tags", []) == []
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(sandbox, same_account))["Snapshots"]
    assert all(s["Tags"] == [{"Key": "copy", "Value": "snap"}] for s in snapshots)

    # Across accounts the owner's tags stay behind (AWS: "tags that are attached by other AWS
    # accounts will not be copied"): the target tags the copy itself, with TagSpecifications.
    share(sandbox, image_id, B)
    cross = client(sandbox, "ec2", B).copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION,
                                                Name="cross-account", CopyImageTags=True,
                                                TagSpecifications=spec[:1])["ImageId"]
    assert image(sandbox, cross, B)["Tags"] == [{"Key": "copy", "Value": "yes"}]


def test_copy_image_refuses_another_accounts_image_whose_snapshots_it_cannot_read(sandbox):
    image_id = make_image(sandbox, volumes=[("/dev/sda1", 8, None), ("/dev/sdf", 8, None)])
    share(sandbox, image_id, B, snapshots=False)
    ec2 = client(sandbox, "ec2")
    ec2.modify_snapshot_attribute(SnapshotId=snapshot_ids(sandbox, image_id)[0], Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[B])  # one of two
    target = client(sandbox, "ec2", B)
    assert image(sandbox, image_id, B)["ImageId"] == image_id  # visible, launchable, not copyable
    assert error_of(target.copy_image, SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="copy") == {
        "Code": "InvalidRequest", "Message": "You do not have permission to access the storage of this ami"}
    ec2.modify_snapshot_attribute(SnapshotId=snapshot_ids(sandbox, image_id)[1], Attribute="createVolumePermission",
                                  CreateVolumePermission={"Add": [{"UserId": B}]})
    assert target.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="copy")["ImageId"]


# 6. snapshots under aws/ebs cannot be shared ------------------------------------------------------
def test_storage_encrypted_with_the_aws_managed_key_cannot_be_shared(sandbox):
    aws_managed = make_image(sandbox, name="aws-ebs", volumes=[("/dev/sda1", 8, "default")])
    customer = make_image(sandbox, name="cmk", volumes=[("/dev/sda1", 8, new_key(sandbox))])
    ec2 = client(sandbox, "ec2")
    refused = {"Code": "InvalidParameter",
               "Message": "Snapshots encrypted with the AWS Managed CMK can't be shared. Specify another snapshot."}
    aws_snapshot = snapshot_ids(sandbox, aws_managed)[0]
    assert error_of(ec2.modify_snapshot_attribute, SnapshotId=aws_snapshot, Attribute="createVolumePermission",
                    OperationType="add", UserIds=[B]) == refused
    assert error_of(ec2.modify_image_attribute, ImageId=aws_managed,
                    LaunchPermission={"Add": [{"UserId": B}]}) == refused
    also_by_alias = ec2.describe_snapshots(SnapshotIds=[aws_snapshot])["Snapshots"][0]["KmsKeyId"]
    assert also_by_alias == client(sandbox, "kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]

    share(sandbox, customer, B)
    shared_snapshot = snapshot_ids(sandbox, customer)[0]
    attribute = ec2.describe_snapshot_attribute(SnapshotId=shared_snapshot, Attribute="createVolumePermission")
    assert attribute["CreateVolumePermissions"] == [{"UserId": B}]
    restorable = client(sandbox, "ec2", B).describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]
    assert [(s["SnapshotId"], s["OwnerId"]) for s in restorable] == [(shared_snapshot, A)]
    assert client(sandbox, "ec2", C).describe_snapshots(RestorableByUserIds=["self"])["Snapshots"] == []


# 7. snapshots in use, deregistering ---------------------------------------------------------------
def test_an_images_snapshots_are_in_use_until_it_is_deregistered(sandbox):
    image_id = make_image(sandbox, volumes=[("/dev/sda1", 8, None), ("/dev/sdf", 8, None)])
    ec2 = client(sandbox, "ec2")
    snapshots = snapshot_ids(sandbox, image_id)
    assert len(snapshots) == 2
    for snapshot_id in snapshots:
        assert error_of(ec2.delete_snapshot, SnapshotId=snapshot_id)["Code"] == "InvalidSnapshot.InUse"
    ec2.deregister_image(ImageId=image_id)
    for snapshot_id in snapshots:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    assert error_of(ec2.deregister_image, ImageId=image_id)["Code"] == "InvalidAMIID.Unavailable"
