"""The account settings a readiness check reads that moto lacks or gets wrong.

- EC2 GetEbsDefaultKmsKeyId: not implemented in moto. AWS answers the key that EBS encryption by
  default (and MGN's "DEFAULT" EBS encryption) uses in the region: the ARN set by
  ModifyEbsDefaultKmsKeyId, or "alias/aws/ebs" (the AWS-managed key) when none was set.
- EC2 Get/Enable/DisableImageBlockPublicAccess: not implemented in moto. The account's "block public
  access for AMIs" setting per region: "unblocked" until enabled, then "block-new-sharing". (Only the
  setting is kept: the pipeline never asks for public sharing, so nothing here refuses it.)
- KMS GetKeyPolicy / PutKeyPolicy: `PolicyName` has been optional since 2023 (it defaults to
  "default", the only name there is); moto answers NotFoundException without it. The response
  also names the policy (PolicyName), as AWS's does.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .wire import AwsRequest, AwsResponse, ec2_error, json_response, request_id

if TYPE_CHECKING:
    from .core import Sandbox

AWS_MANAGED_EBS_ALIAS = "alias/aws/ebs"
_BLOCK_PUBLIC_ACCESS = ("GetImageBlockPublicAccessState", "EnableImageBlockPublicAccess", "DisableImageBlockPublicAccess")


class KmsEbsSettings:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.image_block_public_access: dict[tuple[str, str], str] = {}

    def uninstall(self) -> None:
        self.image_block_public_access = {}

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if request.service == "ec2" and request.action == "GetEbsDefaultKmsKeyId":
            return self._ebs_default_key(request)
        if request.service == "ec2" and request.action in _BLOCK_PUBLIC_ACCESS:
            return self._image_block_public_access(request)
        if request.service == "kms" and request.action == "GetKeyPolicy":
            return self._get_key_policy(request)
        if request.service == "kms" and request.action == "PutKeyPolicy" and not request.json.get("PolicyName"):
            from moto.kms.models import kms_backends

            body = request.json
            kms = kms_backends[request.account_id][request.region]
            try:
                kms.put_key_policy(kms.get_key_id(body.get("KeyId", "")), body.get("Policy", ""))
            except KeyError:
                return _kms_not_found(body.get("KeyId", ""))
            return json_response({}, "application/x-amz-json-1.1")
        return None

    @staticmethod
    def _ebs_default_key(request: AwsRequest) -> AwsResponse | None:
        from moto.ec2.models import ec2_backends

        if request.form.get("DryRun", "").lower() == "true":
            return None  # moto's DryRunOperation (or IamAccess's answer) stands
        backend = ec2_backends[request.account_id][request.region]
        key = backend.default_kms_key_id or AWS_MANAGED_EBS_ALIAS
        body = ('<GetEbsDefaultKmsKeyIdResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                f"<requestId>{request_id()}</requestId><kmsKeyId>{key}</kmsKeyId></GetEbsDefaultKmsKeyIdResponse>")
        return AwsResponse(200, body.encode(), {"Content-Type": "text/xml"})

    def _image_block_public_access(self, request: AwsRequest) -> AwsResponse | None:
        if request.form.get("DryRun", "").lower() == "true":
            return None
        where = (request.account_id, request.region)
        if request.action == "EnableImageBlockPublicAccess":
            wanted = request.form.get("ImageBlockPublicAccessState", "")
            if wanted != "block-new-sharing":
                return ec2_error("InvalidParameterValue", f"Value ({wanted}) for parameter "
                                 "ImageBlockPublicAccessState is invalid. Valid value: block-new-sharing")
            self.image_block_public_access[where] = wanted
        elif request.action == "DisableImageBlockPublicAccess":
            self.image_block_public_access.pop(where, None)
        state = self.image_block_public_access.get(where, "unblocked")
        extra = "<managedBy>account</managedBy>" if request.action == "GetImageBlockPublicAccessState" else ""
        body = (f'<{request.action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                f"<requestId>{request_id()}</requestId><imageBlockPublicAccessState>{state}"
                f"</imageBlockPublicAccessState>{extra}</{request.action}Response>")
        return AwsResponse(200, body.encode(), {"Content-Type": "text/xml"})

    @staticmethod
    def _get_key_policy(request: AwsRequest) -> AwsResponse:
        from moto.kms.models import kms_backends

        body = request.json
        name = body.get("PolicyName") or "default"
        key_id = body.get("KeyId", "")
        if name != "default":
            return _kms_error("NotFoundException", "No such policy exists")
        kms = kms_backends[request.account_id][request.region]
        if key_id.startswith("alias/") or ":alias/" in key_id:
            # GetKeyPolicy takes a key ID or key ARN only
            return _kms_error("NotFoundException", f"Invalid keyId {key_id}")
        try:
            key = kms.keys[kms.get_key_id(key_id)]
        except KeyError:
            return _kms_not_found(key_id)
        return json_response({"Policy": key.policy or "{}", "PolicyName": name}, "application/x-amz-json-1.1")


def _kms_not_found(key_id: str) -> AwsResponse:
    return _kms_error("NotFoundException", f"Invalid keyId {key_id}")


def _kms_error(code: str, message: str, status: int = 400) -> AwsResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    return AwsResponse(status, body, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id()})
