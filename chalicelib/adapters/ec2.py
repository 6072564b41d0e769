"""EC2 images, snapshots and instances, in one account and region (source or target)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..domain.errors import AwsError, Kind
from .aws import aws_call


@dataclass(frozen=True)
class Volume:
    volume_id: str
    size_gib: int
    encrypted: bool
    kms_key_id: str | None


@dataclass(frozen=True)
class Image:
    image_id: str
    state: str  # pending | available | failed | ... | missing (not visible to this account)
    snapshot_ids: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class Ec2Images:
    ec2: object
    kms: object | None = None
    _key_managers: dict[str, str] = field(default_factory=dict)
    _key_policies: dict[str, str] = field(default_factory=dict)
    _key_grants: dict[str, list[dict]] = field(default_factory=dict)

    def volumes_of(self, instance_ids: list[str]) -> dict[str, list[Volume]]:
        """The EBS volumes attached to each of the instances, in one call (an instance with none is left out)."""
        with aws_call("ec2:DescribeVolumes"):
            answer = self.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": instance_ids}])
        found: dict[str, list[Volume]] = {}
        for volume in answer["Volumes"]:
            for attachment in volume.get("Attachments", []):
                if attachment.get("InstanceId") in instance_ids:
                    found.setdefault(attachment["InstanceId"], []).append(Volume(
                        volume["VolumeId"], volume["Size"], volume.get("Encrypted", False), volume.get("KmsKeyId")))
        return found

    def instance_volumes(self, instance_id: str) -> list[Volume]:
        """The instance's EBS volumes: one call by the volumes' attachment; only an instance with none attached
        (gone, or instance-store only) is looked up itself."""
        attached = self.volumes_of([instance_id]).get(instance_id)
        if attached:
            return attached
        with aws_call("ec2:DescribeInstances"):
            reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        if not [i for r in reservations for i in r["Instances"] if i["State"]["Name"] != "terminated"]:
            raise AwsError("ec2:DescribeInstances", "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
        return []  # running on instance-store volumes only

    def key_manager(self, key_id: str) -> str:
        """AWS (aws/ebs and other AWS-managed keys) or CUSTOMER; cached per key for the container's life."""
        if key_id not in self._key_managers:
            with aws_call("kms:DescribeKey"):
                metadata = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
            self._key_managers[key_id] = metadata.get("KeyManager", "CUSTOMER")
        return self._key_managers[key_id]

    def key_policy(self, key_id: str) -> str:
        """The key's policy document (JSON text); cached per key like key_manager (a wave reads one key)."""
        if key_id not in self._key_policies:
            with aws_call("kms:GetKeyPolicy"):
                self._key_policies[key_id] = self.kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        return self._key_policies[key_id]

    def key_grants(self, key_id: str) -> list[dict]:
        """The key's grants (a grant can let a target use the key where the policy does not); cached like the policy."""
        if key_id not in self._key_grants:
            grants, request = [], {"KeyId": key_id}
            while True:
                with aws_call("kms:ListGrants"):
                    page = self.kms.list_grants(**request)
                grants += page.get("Grants", [])
                if not page.get("Truncated"):
                    break
                request["Marker"] = page["NextMarker"]
            self._key_grants[key_id] = grants
        return self._key_grants[key_id]

    def create_image(self, instance_id: str, name: str, tags: dict[str, str], replace_failed: bool = True) -> str:
        """CreateImage has no ClientToken: the name is the idempotency key, and a duplicate is adopted, unless AWS
        gave up on it (`failed`: a retried job's earlier image), which is deregistered to free the name."""
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            with aws_call("ec2:CreateImage"):
                return self.ec2.create_image(
                    InstanceId=instance_id, Name=name, NoReboot=True,
                    TagSpecifications=[{"ResourceType": "image", "Tags": tag_list},
                                       {"ResourceType": "snapshot", "Tags": tag_list}],
                )["ImageId"]
        except AwsError as error:
            if error.code != "InvalidAMIName.Duplicate":
                raise
        with aws_call("ec2:DescribeImages"):
            found = self.ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        if not found:
            raise AwsError("ec2:CreateImage", "InvalidAMIName.Duplicate", f"{name} is in use but not visible")
        if found[0].get("State") == "failed" and replace_failed:
            self.deregister(found[0]["ImageId"])
            return self.create_image(instance_id, name, tags, replace_failed=False)
        return found[0]["ImageId"]

    def images(self, image_ids: list[str]) -> dict[str, Image]:
        """One DescribeImages for many images; an image this account cannot see is `missing`."""
        if not image_ids:
            return {}
        try:
            with aws_call("ec2:DescribeImages"):
                found = self.ec2.describe_images(ImageIds=image_ids)["Images"]
        except AwsError as error:
            if error.kind is not Kind.GONE or len(image_ids) == 1:
                if error.kind is Kind.GONE:
                    return {image_ids[0]: Image(image_ids[0], "missing")}
                raise
            # one unknown ID fails the whole call: ask one by one
            return {k: v for image_id in image_ids for k, v in self.images([image_id]).items()}
        result = {image_id: Image(image_id, "missing") for image_id in image_ids}
        for image in found:
            snapshots = tuple(m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
                              if "Ebs" in m and "SnapshotId" in m["Ebs"])
            reason = image.get("StateReason", {}).get("Message", "")
            result[image["ImageId"]] = Image(image["ImageId"], image["State"], snapshots, reason)
        return result

    def share_image(self, image_id: str, accounts: tuple[str, ...], organization_arns: tuple[str, ...],
                    ou_arns: tuple[str, ...]) -> None:
        """Launch permission for every target in one call (adding one that exists is a no-op)."""
        additions = ([{"UserId": a} for a in accounts] + [{"OrganizationArn": a} for a in organization_arns]
                     + [{"OrganizationalUnitArn": a} for a in ou_arns])
        with aws_call("ec2:ModifyImageAttribute"):
            self.ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": additions})

    def share_snapshot(self, snapshot_id: str, accounts: tuple[str, ...]) -> None:
        """createVolumePermission for every target account: without it a target cannot copy the image."""
        with aws_call("ec2:ModifySnapshotAttribute"):
            self.ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                               OperationType="add", UserIds=list(accounts))

    def copy_image(self, *, source_image_id: str, source_region: str, name: str, kms_key_id: str | None,
                   client_token: str, description: str, tags: dict[str, str],
                   completion_minutes: int | None = None) -> str:
        """The copy is the caller's (the target's), encrypted with its key. CopyImageTags brings only the
        caller's own tags on the source, never the owner's, so provenance tags are set explicitly."""
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        with aws_call("ec2:CopyImage"):
            return self.ec2.copy_image(
                SourceImageId=source_image_id, SourceRegion=source_region, Name=name, Description=description,
                Encrypted=True, ClientToken=client_token, CopyImageTags=True,
                TagSpecifications=[{"ResourceType": "image", "Tags": tag_list},
                                   {"ResourceType": "snapshot", "Tags": tag_list}],
                **({"KmsKeyId": kms_key_id} if kms_key_id else {}),
                # a time-based copy: each snapshot completes within this duration (EC2 API Reference, CopyImage)
                **({"SnapshotCopyCompletionDurationMinutes": completion_minutes} if completion_minutes else {}),
            )["ImageId"]

    def protect(self, image_id: str, with_cooldown: bool) -> None:
        """Deregistration protection: enabling it again is a no-op."""
        with aws_call("ec2:EnableImageDeregistrationProtection"):
            self.ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=with_cooldown)

    def deregister(self, image_id: str) -> None:
        self._gone_is_done("ec2:DeregisterImage", lambda: self.ec2.deregister_image(ImageId=image_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._gone_is_done("ec2:DeleteSnapshot", lambda: self.ec2.delete_snapshot(SnapshotId=snapshot_id))

    def terminate(self, instance_id: str) -> None:
        self._gone_is_done("ec2:TerminateInstances", lambda: self.ec2.terminate_instances(InstanceIds=[instance_id]))

    @staticmethod
    def _gone_is_done(operation: str, call) -> None:
        try:
            with aws_call(operation):
                call()
        except AwsError as error:
            if error.kind is not Kind.GONE:
                raise
