"""AMIs and snapshots as AWS has them: real block devices, pending state, sharing across accounts, CopyImage.

Everything here patches moto's EC2 models (and two response methods whose parameters moto drops),
so the in-process hook and the HTTP server behave alike. What differs from plain moto:

- Sharing. An image is visible to another account (DescribeImages by ID, ExecutableUsers, no
  filter) when a launch permission grants it: a UserId, or an organization / OU the account belongs
  to per `Sandbox.directory`. `Group: all` keeps moto's meaning (not visible across accounts). The
  account it is shared with sees its own tags on it, never the owner's ("When you share an AMI, your
  user-defined tags are not available to any AWS account that the AMI is shared with", EC2 User
  Guide, "Share an AMI with specific AWS accounts"). Only the owner may modify it.
- CreateImage keeps the instance's EBS volumes (one snapshot each: size, encryption, KMS key,
  device name) instead of moto's one fake 15 GiB snapshot, takes `snapshot` TagSpecifications,
  rejects a duplicate or malformed name.
- Images stay `pending` for `settings.durations` (the jitter draw is taken from `sandbox.rng` when
  the image is made), then become `available`, or `failed` (seeded rate, or `fail_image`). Their
  snapshots go `pending` -> `completed` / `error`. "EC2 AMI State Change" events follow.
- CopyImage honours ClientToken, Encrypted, KmsKeyId, CopyImageTags and TagSpecifications, reads a
  source shared from another account, and refuses one whose snapshots the caller cannot read.
- Snapshots under the AWS managed key (aws/ebs) cannot be shared, as AMI or as snapshot.
- DescribeSnapshots shows snapshots shared with the caller (RestorableByUserIds, OwnerIds).
- Time-based copies: CopyImage's SnapshotCopyCompletionDurationMinutes, "in 15 minute increments" (EC2 API
  Reference, CopyImage), 15 to 2880 (Amazon EBS User Guide, "Time-based copies"), else InvalidParameterValue;
  such a copy completes within that duration ("Each snapshot associated with the AMI will be completed within
  the specified completion duration"), scaled like every modelled duration.
- Deregistration protection: EnableImageDeregistrationProtection (moto has none), shown by DescribeImages'
  DeregistrationProtection; "When deregistration protection is enabled, the AMI can't be deregistered" (EC2 API
  Reference): DeregisterImage is refused (the error code here is the sandbox's choice: AWS documents none).
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIIdError,
    InvalidParameterDependency,
    InvalidSnapshotIdError,
    InvalidTaggableResourceType,
    MalformedAMIIdError,
    UnvailableAMIIdError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import generic_filter, random_ami_id, random_snapshot_id
from moto.kms.models import KmsBackend, kms_backends

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox

AMI_STATE_CHANGE = "EC2 AMI State Change"

# CreateImage / CopyImage `Name`: "3-128 alphanumeric characters, parentheses (()), square brackets
# ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or
# underscores (_)" (EC2 API Reference). The error text is what the EC2 API returns.
_AMI_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
_AMI_NAME_MALFORMED = (
    "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, "
    "'(', ')', '.', '-', '/' and '_'"
)
# ModifySnapshotAttribute / ModifyImageAttribute on aws/ebs-encrypted storage (seen verbatim from
# the EC2 API, e.g. github.com/DataDog/stratus-red-team/issues/109).
_AWS_MANAGED_KEY_CODE = "InvalidParameter"
_AWS_MANAGED_KEY_MESSAGE = "Snapshots encrypted with the AWS Managed CMK can't be shared. Specify another snapshot."
# CopyImage of another account's AMI whose snapshots do not grant the caller createVolumePermission
# ("An error occurred (InvalidRequest) when calling the CopyImage operation: You do not have
# permission to access the storage of this ami", e.g. github.com/clong/DetectionLab/issues/422).
_NO_STORAGE_ACCESS_CODE = "InvalidRequest"
_NO_STORAGE_ACCESS_MESSAGE = "You do not have permission to access the storage of this ami"
COPY_MINUTES_STEP, COPY_MINUTES_MAX = 15, 2880
PROTECTION_DISABLED = "disabled"
_PROTECTED_CODE = "OperationNotPermitted"
_ABSENT = object()  # a patched-in attribute moto does not have: removed again on uninstall
_EVENT_NAMESPACE = uuid.UUID("6f1c2a40-5d2e-4b8a-9c3e-2a1f0e9d8c7b")  # RequestIds: stable per image


@dataclass
class Device:
    """One EBS block device of an image, as BlockDeviceMappings lists it."""

    name: str
    snapshot: Snapshot
    size: int
    volume_type: str
    delete_on_termination: bool = True

    def mapping(self) -> dict[str, Any]:
        return {
            "DeviceName": self.name,
            "Ebs": {
                "DeleteOnTermination": self.delete_on_termination,
                "SnapshotId": self.snapshot.id,
                "VolumeSize": self.size,
                "VolumeType": self.volume_type,
                "Encrypted": self.snapshot.encrypted,
            },
        }


@dataclass
class ImageJob:
    """An image the sandbox is still making (CreateImage or CopyImage)."""

    ami: Ami
    kind: str  # "create" | "copy"
    request_id: str
    devices: list[Device]
    fail_reason: str | None = None  # set: the image ends `failed` with this "Code: message"

    @property
    def account(self) -> str:
        return self.ami.owner_id

    @property
    def region(self) -> str:
        return self.ami.ec2_backend.region_name


class ImageFidelity:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self._pending: dict[str, ImageJob] = {}
        self._client_tokens: dict[tuple[str, str, str], Ami] = {}
        self._originals: list[tuple[type, str, Any]] = []
        for owner, name, replacement in self._replacements():
            self._originals.append((owner, name, owner.__dict__.get(name, _ABSENT)))
            setattr(owner, name, replacement)

    def uninstall(self) -> None:
        for owner, name, original in reversed(getattr(self, "_originals", [])):
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._originals = []

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None

    # what the rest of the sandbox asks ------------------------------------------------------
    def fail_image(self, image_id: str, reason: str | None = None) -> None:
        """Make a pending image end `failed` (with `reason`, "Code: message") when its time comes."""
        job = self._pending.get(image_id)
        if job is None:
            raise ValueError(f"{image_id} is not a pending image: only a pending image can be made to fail")
        job.fail_reason = reason or self.sandbox.settings.failures.reason

    def pending_copies(self, account_id: str, region: str) -> int:
        """Copies into `account_id`/`region` still pending (the concurrent-copy limit counts these)."""
        return sum(1 for job in self._pending.values()
                   if job.kind == "copy" and job.account == account_id and job.region == region)

    # the image life cycle -------------------------------------------------------------------
    def _start(self, ami: Ami, kind: str, devices: list[Device]) -> None:
        settings = self.sandbox.settings
        draw, fail_draw = self.sandbox.rng.random(), self.sandbox.rng.random()
        total_gib = sum(device.size for device in devices)
        if kind == "create":
            seconds = settings.durations.create_seconds(total_gib, draw)
            rate = settings.failures.create_failure_rate
        else:
            seconds = settings.durations.copy_seconds(total_gib, draw)
            within_minutes = ami.__dict__.get("sandbox_within_minutes")
            if within_minutes:  # a time-based copy ends within its duration, at the model's time scale
                seconds = min(seconds, within_minutes * 60 * settings.durations.time_scale)
            rate = settings.failures.copy_failure_rate
        job = ImageJob(ami, kind, _request_id(ami.id, kind), devices,
                       fail_reason=settings.failures.reason if fail_draw < rate else None)
        ami.state = "pending"
        ami.creation_date = datetime.fromtimestamp(self.sandbox.clock.now(), timezone.utc).replace(tzinfo=None)
        for device in devices:
            device.snapshot.status = "pending"
            device.snapshot.start_time = ami.creation_date
        self._pending[ami.id] = job
        self.sandbox.scheduler.after(seconds, lambda: self._finish(job))

    def _finish(self, job: ImageJob) -> None:
        failed = job.fail_reason is not None
        for device in job.devices:
            device.snapshot.status = "error" if failed else "completed"
        if self._pending.pop(job.ami.id, None) is None:
            return  # deregistered while pending
        if failed:
            # StateReason as EC2 gives it: {"Code": "Client.InternalError", "Message": "Client.InternalError: ..."}
            code, colon, _ = job.fail_reason.partition(": ")
            job.ami.state = "failed"
            job.ami.state_reason = {"Code": code if colon and " " not in code else "Client.InternalError",
                                    "Message": job.fail_reason}
        else:
            job.ami.state = "available"
        self._publish(job.ami, job.ami.state, job.request_id, job.fail_reason or "")

    def _publish(self, ami: Ami, state: str, request_id: str, error: str) -> None:
        region = ami.ec2_backend.region_name
        self.sandbox.publish(
            account=ami.owner_id, region=region, source="aws.ec2", detail_type=AMI_STATE_CHANGE,
            detail={"RequestId": request_id, "ImageId": ami.id, "State": state, "ErrorMessage": error},
            resources=[f"arn:aws:ec2:{region}::image/{ami.id}"],
        )

    # sharing ----------------------------------------------------------------------------------
    def _grants(self, ami: Ami, account_id: str) -> bool:
        return any(self.sandbox.directory.grants(permission, account_id)
                   for permission in ami.launch_permissions)

    def _shared_images(self, account_id: str, region: str) -> Iterator[Ami]:
        """Other accounts' images in `region` whose launch permissions grant `account_id`."""
        for owner, region_name, backend in list(ec2_backends.iter_backends()):
            if owner != account_id and region_name == region:
                yield from (ami for ami in list(backend.amis.values()) if self._grants(ami, account_id))

    def _own_image(self, backend: Any, image_id: str) -> Ami:
        """The caller's own image: only the owner may share, modify or deregister an AMI."""
        if image_id in backend.amis:
            return backend.amis[image_id]
        if image_id in backend.deleted_amis:
            raise UnvailableAMIIdError(image_id)
        if any(ami.id == image_id for ami in self._shared_images(backend.account_id, backend.region_name)):
            # what EC2 answers a non-owner (as EC2-compatible APIs reproduce it: "AuthFailure", "Not
            # authorized for image:ami-..."); an image the caller cannot see at all is NotFound
            raise EC2ClientError("AuthFailure", f"Not authorized for image:{image_id}")
        raise InvalidAMIIdError(image_id)

    def _find_image(self, account_id: str, region: str, image_id: str) -> Ami:
        """The image `account_id` may use as a source in `region`: its own, or one shared with it."""
        own = ec2_backends[account_id][region].amis.get(image_id)
        if own is not None:
            return own
        found = next((ami for ami in self._shared_images(account_id, region) if ami.id == image_id), None)
        if found is None:
            raise InvalidAMIIdError(image_id)
        return found

    # the patches ------------------------------------------------------------------------------
    def _replacements(self) -> list[tuple[type, str, Any]]:
        fidelity = self
        original_bdm = Ami.__dict__["block_device_mappings"]
        original_deregister = AmiBackend.__dict__["deregister_image"]
        original_modify_image = AmiBackend.__dict__["modify_image_attribute"]
        original_add_permission = EBSBackend.__dict__["add_create_volume_permission"]
        original_default_key = EBSBackend.__dict__["_create_default_encryption_key"]
        original_kms_defaults = KmsBackend.__dict__["_generate_default_keys"]

        def block_device_mappings(ami: Ami) -> list[dict[str, Any]]:
            devices = ami.__dict__.get("sandbox_devices")
            return original_bdm.fget(ami) if devices is None else [device.mapping() for device in devices]

        def create_image(backend: Any, instance_id: str, name: str, description: str,
                         tag_specifications: list[dict[str, Any]]) -> Ami:
            _check_name(name)
            instance = backend.get_instance(instance_id)  # InvalidInstanceID.NotFound
            duplicate = next((ami for ami in backend.amis.values() if ami.name == name), None)
            if duplicate is not None:
                raise EC2ClientError("InvalidAMIName.Duplicate",
                                     f"AMI name {name} is already in use by AMI {duplicate.id}")
            image_tags, snapshot_tags = _split_tag_specifications(tag_specifications)
            ami = _new_ami(backend, instance=instance, name=name, description=description)
            ami.root_device_name = instance.root_device_name
            ami.root_device_type = "ebs"
            devices = []
            for device_name, block in instance.get_block_device_mapping:
                volume = backend.get_volume(block.volume_id)
                snapshot = _new_snapshot(
                    backend, volume.id, volume.size, f"Created by CreateImage({instance_id}) for {ami.id}",
                    volume.encrypted, _key_arn(volume.kms_key_id, backend) if volume.encrypted else None,
                    ami.id, snapshot_tags)
                devices.append(Device(device_name, snapshot, volume.size, volume.volume_type,
                                      bool(block.delete_on_termination)))
            return _register(fidelity, backend, ami, devices, image_tags, "create")

        def copy_image(backend: Any, source_image_id: str, source_region: str, name: str | None = None,
                       description: str | None = None, client_token: str | None = None,
                       encrypted: bool = False, kms_key_id: str | None = None,
                       copy_image_tags: bool = False,
                       tag_specifications: list[dict[str, Any]] | None = None,
                       completion_minutes: int | None = None) -> Ami:
            caller, region = backend.account_id, backend.region_name
            token = (caller, region, client_token) if client_token else None
            if token in fidelity._client_tokens:
                return fidelity._client_tokens[token]
            if kms_key_id and not encrypted:
                raise InvalidParameterDependency("KmsKeyId", "Encrypted")
            if completion_minutes is not None and not (
                    COPY_MINUTES_STEP <= completion_minutes <= COPY_MINUTES_MAX and completion_minutes % COPY_MINUTES_STEP == 0):
                raise EC2ClientError("InvalidParameterValue",
                                     f"SnapshotCopyCompletionDurationMinutes must be {COPY_MINUTES_STEP} to "
                                     f"{COPY_MINUTES_MAX}, in increments of {COPY_MINUTES_STEP}")
            source = fidelity._find_image(caller, source_region, source_image_id)
            cross_account = source.owner_id != caller
            source_devices = _devices(source)
            if cross_account and not all(_may_read(device.snapshot, caller) for device in source_devices):
                raise EC2ClientError(_NO_STORAGE_ACCESS_CODE, _NO_STORAGE_ACCESS_MESSAGE)
            if name is not None:
                _check_name(name)
            image_tags, snapshot_tags = _split_tag_specifications(tag_specifications or [])
            if copy_image_tags:
                # "You can only copy user-defined AMI tags that you attached to the source AMI ...
                # tags that are attached by other AWS accounts will not be copied" (Copy an AMI).
                own_view = ec2_backends[caller][source_region]
                copied = {t["key"]: t["value"] for t in own_view.describe_tags(filters={"resource-id": [source.id]})
                          if not t["key"].startswith("aws:")}
                image_tags = {**copied, **image_tags}
            ami = _new_ami(backend, source_ami=source, name=name, description=description)
            ami.root_device_name, ami.root_device_type = source.root_device_name, source.root_device_type
            same_keys = not cross_account and source_region == region
            devices = []
            for device in source_devices:
                old = device.snapshot
                if encrypted:
                    key = _key_arn(kms_key_id, backend) if kms_key_id else _default_key(backend)
                elif old.encrypted:
                    key = old.kms_key_id if same_keys and old.kms_key_id else _default_key(backend)
                else:
                    key = None
                snapshot = _new_snapshot(
                    backend, "vol-ffffffff", device.size,
                    f"Copied for DestinationAmi {ami.id} from SourceAmi {source.id} for SourceSnapshot {old.id}",
                    key is not None, key, ami.id, snapshot_tags)
                devices.append(Device(device.name, snapshot, device.size, device.volume_type,
                                      device.delete_on_termination))
            _register(fidelity, backend, ami, devices, image_tags, "copy", completion_minutes)
            if token:
                fidelity._client_tokens[token] = ami
            return ami

        def describe_images(backend: Any, ami_ids: list[str] | None = None, filters: Any = None,
                            exec_users: list[str] | None = None, owners: list[str] | None = None) -> list[Any]:
            caller = backend.account_id
            images: list[Any] = list(backend.amis.values())
            images += [SharedAmi(ami, backend) for ami in fidelity._shared_images(caller, backend.region_name)]
            if ami_ids:
                malformed = [ami_id for ami_id in ami_ids if not ami_id.startswith("ami-")]
                if malformed:
                    raise MalformedAMIIdError(malformed)
                images = [ami for ami in images if ami.id in ami_ids]
                if not images and not any(ami_id in backend.deleted_amis for ami_id in ami_ids):
                    raise InvalidAMIIdError(ami_ids)
            if exec_users:
                users = {caller if user == "self" else user for user in exec_users}
                images = [ami for ami in images
                          if ami.is_public or any(fidelity._grants(ami, user) for user in users)]
            if owners:
                wanted = {caller if owner == "self" else owner for owner in owners}
                images = [ami for ami in images if ami.owner_id in wanted or ami.owner_alias in wanted]
            return generic_filter(filters, images) if filters else images

        def modify_image_attribute(backend: Any, ami_id: str, launch_permissions_to_add: list[dict[str, str]],
                                   launch_permissions_to_remove: list[dict[str, str]]) -> None:
            ami = fidelity._own_image(backend, ami_id)
            sharing = any(permission != {"Group": "all"} for permission in launch_permissions_to_add)
            if sharing and any(_aws_managed(device.snapshot) for device in _devices(ami)):
                raise EC2ClientError(_AWS_MANAGED_KEY_CODE, _AWS_MANAGED_KEY_MESSAGE)
            original_modify_image(backend, ami_id, launch_permissions_to_add, launch_permissions_to_remove)

        def deregister_image(backend: Any, ami_id: str) -> None:
            ami = fidelity._own_image(backend, ami_id)
            if ami.__dict__.get("deregistration_protection", PROTECTION_DISABLED) != PROTECTION_DISABLED:
                raise EC2ClientError(_PROTECTED_CODE, f"The image {ami_id} has deregistration protection enabled: "
                                                      f"disable it first")
            original_deregister(backend, ami_id)
            fidelity._pending.pop(ami_id, None)
            fidelity._publish(ami, "deregistered", _request_id(ami_id, "deregister"), "")

        def add_create_volume_permission(backend: Any, snapshot_id: str, user_ids: list[str],
                                         groups: list[str]) -> None:
            if user_ids and _aws_managed(backend.get_snapshot(snapshot_id)):
                raise EC2ClientError(_AWS_MANAGED_KEY_CODE, _AWS_MANAGED_KEY_MESSAGE)
            original_add_permission(backend, snapshot_id, user_ids, groups)

        def describe_snapshots(backend: Any, snapshot_ids: list[str] | None = None, filters: Any = None,
                               owner_ids: list[str] | None = None,
                               restorable_by: list[str] | None = None) -> list[Snapshot]:
            caller = backend.account_id
            visible = list(backend.snapshots.values())
            for owner, region_name, other in list(ec2_backends.iter_backends()):
                if owner != caller and region_name == backend.region_name:
                    visible += [s for s in list(other.snapshots.values())
                                if caller in s.create_volume_permission_userids]
            matches = visible
            if snapshot_ids:
                matches = [snapshot for snapshot in visible if snapshot.id in snapshot_ids]
                if len(snapshot_ids) > len(matches):
                    raise InvalidSnapshotIdError()
            if owner_ids:
                wanted = {caller if owner == "self" else owner for owner in owner_ids}
                matches = [snapshot for snapshot in matches if snapshot.owner_id in wanted]
            if restorable_by:
                matches = [snapshot for snapshot in matches
                           if any(_restorable(snapshot, user, caller) for user in restorable_by)]
            return generic_filter(filters, matches) if filters else matches

        def default_encryption_key(backend: Any) -> str:
            arn = original_default_key(backend)
            _mark_aws_managed(kms_backends[backend.account_id][backend.region_name], arn)
            return arn

        def generate_default_keys(kms: Any, alias_name: str) -> str | None:
            key_id = original_kms_defaults(kms, alias_name)
            if key_id:
                _mark_aws_managed(kms, key_id)
            return key_id

        def copy_image_response(response: Any) -> ActionResult:
            source_image_id = response._get_param("SourceImageId")
            source_region = response._get_param("SourceRegion")
            name = response._get_param("Name")
            description = response._get_param("Description")
            client_token = response._get_param("ClientToken")
            encrypted = response._get_bool_param("Encrypted", False)
            kms_key_id = response._get_param("KmsKeyId")
            copy_image_tags = response._get_bool_param("CopyImageTags", False)
            tag_specifications = response._get_param("TagSpecifications", [])
            completion_minutes = response._get_int_param("SnapshotCopyCompletionDurationMinutes")
            response.error_on_dryrun()
            image = response.ec2_backend.copy_image(
                source_image_id, source_region, name, description, client_token=client_token,
                encrypted=encrypted, kms_key_id=kms_key_id, copy_image_tags=copy_image_tags,
                tag_specifications=tag_specifications, completion_minutes=completion_minutes)
            return ActionResult({"ImageId": image.id})

        def enable_deregistration_protection_response(response: Any) -> ActionResult:
            ami = fidelity._own_image(response.ec2_backend, response._get_param("ImageId"))
            response.error_on_dryrun()
            with_cooldown = response._get_bool_param("WithCooldown", False)
            ami.deregistration_protection = "enabled-with-cooldown" if with_cooldown else "enabled-without-cooldown"
            return ActionResult({"Return": "true"})

        def describe_snapshots_response(response: Any) -> ActionResult:
            snapshots = response.ec2_backend.describe_snapshots(
                snapshot_ids=response._get_param("SnapshotIds", []),
                filters=response._filters_from_querystring(),
                owner_ids=response._get_param("OwnerIds", []),
                restorable_by=response._get_param("RestorableByUserIds", []),
            )
            return ActionResult({"Snapshots": snapshots})

        def modify_snapshot_attribute_response(response: Any) -> EmptyResult:
            # moto reads only UserIds/GroupNames; CreateVolumePermission={"Add"|"Remove": [...]} is the other form.
            snapshot_id = response._get_param("SnapshotId")
            operation = response._get_param("OperationType")
            changes = {"add": ([], []), "remove": ([], [])}
            if operation in changes:
                changes[operation][0].extend(response._get_param("UserIds", []))
                changes[operation][1].extend(response._get_param("GroupNames", []))
            for op, entries in (response._get_param("CreateVolumePermission", {}) or {}).items():
                for entry in entries:
                    if "UserId" in entry:
                        changes[op.lower()][0].append(entry["UserId"])
                    if "Group" in entry:
                        changes[op.lower()][1].append(entry["Group"])
            response.error_on_dryrun()
            backend = response.ec2_backend
            if any(changes["add"]):
                backend.add_create_volume_permission(snapshot_id, user_ids=changes["add"][0],
                                                     groups=changes["add"][1])
            if any(changes["remove"]):
                backend.remove_create_volume_permission(snapshot_id, user_ids=changes["remove"][0],
                                                        groups=changes["remove"][1])
            return EmptyResult()

        return [
            (Ami, "block_device_mappings", property(block_device_mappings)),
            (AmiBackend, "create_image", create_image),
            (AmiBackend, "copy_image", copy_image),
            (AmiBackend, "describe_images", describe_images),
            (AmiBackend, "modify_image_attribute", modify_image_attribute),
            (AmiBackend, "deregister_image", deregister_image),
            (EBSBackend, "add_create_volume_permission", add_create_volume_permission),
            (EBSBackend, "describe_snapshots", describe_snapshots),
            (EBSBackend, "_create_default_encryption_key", default_encryption_key),
            (KmsBackend, "_generate_default_keys", generate_default_keys),
            (AmisResponse, "copy_image", copy_image_response),
            (AmisResponse, "enable_image_deregistration_protection", enable_deregistration_protection_response),
            (Ami, "deregistration_protection", PROTECTION_DISABLED),
            (ElasticBlockStore, "describe_snapshots", describe_snapshots_response),
            (ElasticBlockStore, "modify_snapshot_attribute", modify_snapshot_attribute_response),
        ]


class SharedAmi:
    """Another account's image as the account it is shared with sees it: that account's own tags."""

    def __init__(self, ami: Ami, viewer: Any) -> None:
        self._ami = ami
        self._viewer = viewer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ami, name)

    def get_tags(self) -> list[dict[str, str]]:
        return self._viewer.describe_tags(filters={"resource-id": [self._ami.id]})

    tag_set = property(get_tags)
    tag_list = property(get_tags)

    def get_filter_value(self, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name.startswith("tag"):
            return TaggedEC2Resource.get_filter_value(self, filter_name, method_name)  # type: ignore[arg-type]
        return self._ami.get_filter_value(filter_name, method_name)


# helpers ----------------------------------------------------------------------------------------
def _request_id(image_id: str, what: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{what}:{image_id}"))


def _check_name(name: str | None) -> None:
    if not name or not _AMI_NAME.fullmatch(name):
        raise EC2ClientError("InvalidAMIName.Malformed", _AMI_NAME_MALFORMED)


def _split_tag_specifications(specifications: Iterable[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    tags: dict[str, dict[str, str]] = {"image": {}, "snapshot": {}}
    for specification in specifications:
        resource_type = specification.get("ResourceType")
        if resource_type not in tags:
            raise InvalidTaggableResourceType(resource_type)
        tags[resource_type].update({t["Key"]: t["Value"] for t in specification.get("Tags", [])})
    return tags["image"], tags["snapshot"]


def _new_ami(backend: Any, **kwargs: Any) -> Ami:
    """moto's Ami, without the made-up 15 GiB snapshot its constructor leaves behind."""
    ami = Ami(backend, random_ami_id(), **kwargs)
    backend.snapshots.pop(ami.ebs_snapshot.id, None)
    return ami


def _register(fidelity: ImageFidelity, backend: Any, ami: Ami, devices: list[Device],
              image_tags: dict[str, str], kind: str, within_minutes: int | None = None) -> Ami:
    ami.sandbox_devices = devices
    if devices:
        ami.ebs_snapshot = devices[0].snapshot
    ami.add_tags(image_tags)
    backend.amis[ami.id] = ami
    ami.sandbox_within_minutes = within_minutes
    fidelity._start(ami, kind, devices)
    return ami


def _new_snapshot(backend: Any, volume_id: str, size: int, description: str, encrypted: bool,
                  kms_key_id: str | None, image_id: str, tags: dict[str, str]) -> Snapshot:
    # A volume of its own, frozen at snapshot time (the instance's volume may change or go away).
    volume = Volume(backend, volume_id, size, None, encrypted=encrypted, kms_key_id=kms_key_id)
    snapshot = Snapshot(backend, random_snapshot_id(), volume, description, encrypted=encrypted,
                        kms_key_id=kms_key_id, from_ami=image_id)  # from_ami: DeleteSnapshot -> InUse
    backend.snapshots[snapshot.id] = snapshot
    snapshot.add_tags(tags)
    return snapshot


def _devices(ami: Ami) -> list[Device]:
    devices = ami.__dict__.get("sandbox_devices")
    if devices is not None:
        return devices
    # an image the sandbox did not make (RegisterImage, moto's defaults): its one snapshot
    return [Device(ami.root_device_name, ami.ebs_snapshot, ami.ebs_snapshot.volume_size, "standard", False)]


def _may_read(snapshot: Snapshot, account_id: str) -> bool:
    return (snapshot.owner_id == account_id or account_id in snapshot.create_volume_permission_userids
            or "all" in snapshot.create_volume_permission_groups)


def _restorable(snapshot: Snapshot, user: str, caller: str) -> bool:
    """RestorableByUserIds: 'self' = owned or explicitly shared; 'all' = public; an ID = shared with it."""
    if user == "all":
        return "all" in snapshot.create_volume_permission_groups
    if user in ("self", caller):
        return snapshot.owner_id == caller or caller in snapshot.create_volume_permission_userids
    return snapshot.owner_id == caller and user in snapshot.create_volume_permission_userids


def _kms_key(key_id: str, backend: Any) -> Any:
    """The KMS key a key ID, ARN, alias or alias ARN names (in the ARN's account), or None."""
    account, region = backend.account_id, backend.region_name
    if key_id.startswith("arn:"):
        parts = key_id.split(":")
        region, account = parts[3], parts[4]
    try:
        return kms_backends[account][region].describe_key(key_id)
    except (KeyError, AttributeError):  # moto: unknown key ID / unknown alias
        return None


def _key_arn(key_id: str | None, backend: Any) -> str | None:
    if not key_id:
        return None
    key = _kms_key(key_id, backend)
    return key.arn if key is not None else key_id  # moto accepts keys that do not exist; so do we


def _default_key(backend: Any) -> str:
    return backend.default_kms_key_id or backend._create_default_encryption_key()


def _aws_managed(snapshot: Snapshot) -> bool:
    """Encrypted under an AWS managed key (aws/ebs): such storage cannot be shared."""
    if not snapshot.encrypted:
        return False
    if not snapshot.kms_key_id:
        return True
    key = _kms_key(snapshot.kms_key_id, snapshot.ec2_backend)
    if key is None:
        return "alias/aws/" in snapshot.kms_key_id
    return key.key_manager == "AWS" or any(alias.startswith("alias/aws/") for alias in key.aliases)


def _mark_aws_managed(kms: Any, key_id: str) -> None:
    """moto makes aws/ebs a CUSTOMER key; AWS reports KeyManager AWS (what a preflight checks)."""
    kms.describe_key(key_id).key_manager = "AWS"

