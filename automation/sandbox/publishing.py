"""What a target account does when a copy is published: SSM parameters of data type aws:ec2:image, launch
template versions. Patches moto's models and responses, so the in-process hook and the HTTP server behave alike.

- PutParameter with DataType aws:ec2:image: "Systems Manager validates the parameter value is in the required
  format, such as ami-12345abcdeEXAMPLE, and that the specified AMI is available in your AWS account ... The
  aws:ec2:image value is validated asynchronously, and the PutParameter call returns before the validation is
  complete. If you submit an invalid AMI value, the PutParameter operation will return success, but the
  asynchronous validation will fail and the parameter will not be created or updated" (Systems Manager API
  Reference, PutParameter DataType). moto accepts any value. Here the call answers success with the version it
  would have made, and a value that is not an AMI this account can use, `available` in its region, changes
  nothing (the validation's outcome is applied at once). "You can't change a parameter to or from" aws:ec2:image
  (Systems Manager User Guide, "Parameter data types"): a ValidationException.
- CreateLaunchTemplateVersion: "If you specify [SourceVersion], the new version inherits the launch parameters
  from the source version. If you specify additional launch parameters for the new version, they overwrite any
  corresponding launch parameters inherited" (EC2 API Reference); moto ignores SourceVersion (the new version
  holds only what the request names) and ClientToken ("to ensure the idempotency of the request"): a retried
  request with the same token answers the version it made.
"""
from __future__ import annotations

import copy
import re
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ssm.exceptions import ValidationException
from moto.ssm.models import SimpleSystemManagerBackend

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox

IMAGE_DATA_TYPE = "aws:ec2:image"
_AMI_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")


class PublishingFidelity:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self._template_tokens: dict[tuple[str, str, str, str], Any] = {}
        self._originals = [(SimpleSystemManagerBackend, "put_parameter", SimpleSystemManagerBackend.__dict__["put_parameter"]),
                           (LaunchTemplates, "create_launch_template_version",
                            LaunchTemplates.__dict__["create_launch_template_version"])]
        original_put = self._originals[0][2]
        fidelity = self

        def put_parameter(backend: Any, name: str, description: str, value: str, parameter_type: str,
                          allowed_pattern: str, keyid: str, overwrite: bool, tags: list, data_type: str,
                          tier: str | None, policies: str | None) -> Any:
            versions = backend._parameters[name] if name in backend._parameters else []
            if versions and (data_type or "text") != versions[-1].data_type and IMAGE_DATA_TYPE in (
                    data_type, versions[-1].data_type):
                raise ValidationException(f"You can't change the data type of parameter {name} "
                                          f"from {versions[-1].data_type} to {data_type}")
            if data_type == IMAGE_DATA_TYPE and not fidelity.image_available(backend.account_id,
                                                                            backend.region_name, value):
                return SimpleNamespace(version=(versions[-1].version + 1) if versions else 1,
                                       tier=tier or "Standard")
            return original_put(backend, name, description, value, parameter_type, allowed_pattern, keyid,
                                overwrite, tags, data_type, tier=tier, policies=policies)

        def create_launch_template_version(response: Any) -> ActionResult:
            backend = response.ec2_backend
            name, template_id = response._get_param("LaunchTemplateName"), response._get_param("LaunchTemplateId")
            template = backend.get_launch_template_by_name(name) if name else backend.get_launch_template(template_id)
            response.error_on_dryrun()
            token = response._get_param("ClientToken")
            key = (backend.account_id, backend.region_name, template.id, token)
            version = fidelity._template_tokens.get(key) if token else None
            if version is None:
                data = response._get_param("LaunchTemplateData", {})
                source = response._get_param("SourceVersion")
                if source:
                    data = {**copy.deepcopy(template.get_version(source).data), **data}
                version = template.create_version(data, response._get_param("VersionDescription"))
                if token:
                    fidelity._template_tokens[key] = version
            return ActionResult({"LaunchTemplateVersion": {
                "CreateTime": version.create_time,
                "CreatedBy": f"arn:{response.partition}:iam::{response.current_account}:root",
                "DefaultVersion": template.is_default(version), "LaunchTemplateData": version.data,
                "LaunchTemplateId": template.id, "LaunchTemplateName": template.name,
                "VersionDescription": version.description, "VersionNumber": version.number}})

        SimpleSystemManagerBackend.put_parameter = put_parameter
        LaunchTemplates.create_launch_template_version = create_launch_template_version

    def uninstall(self) -> None:
        for owner, name, original in getattr(self, "_originals", []):
            setattr(owner, name, original)
        self._originals = []

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None

    def image_available(self, account_id: str, region: str, value: str) -> bool:
        """An AMI this account owns or may use in `region`, in state `available` (what the validation checks)."""
        from .ec2_images import ImageFidelity

        if not _AMI_ID.match(value or ""):
            return False
        try:
            image = self.sandbox.extension(ImageFidelity)._find_image(account_id, region, value)
        except EC2ClientError:
            return False
        return image.state == "available"
