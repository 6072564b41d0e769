"""Who may assume a role, and what an assumed role may do, as far as a readiness check asks.

moto lets `sts:AssumeRole` into any role ARN succeed (even one that does not exist, whatever the trust
policy or ExternalId) and answers every EC2 `DryRun` with DryRunOperation. AWS does neither:
- AssumeRole into a role that does not exist, or whose trust policy does not allow the caller (principal,
  `sts:ExternalId`, `aws:PrincipalOrgID`, `aws:PrincipalAccount`, `aws:PrincipalArn`), fails with
  403 AccessDenied "User: <caller> is not authorized to perform: sts:AssumeRole on resource: <role>".
- An EC2 request with DryRun=true answers DryRunOperation (412) only if the caller's IAM policies allow the
  action, UnauthorizedOperation (403) otherwise ("DryRun", EC2 API Reference, common parameters), before
  looking at the request's resources (moto validates those first: CreateTags on an unknown image fails).

Only the sandbox's own entry role (SANDBOX_ROLE, never created in IAM) keeps moto's behaviour, so that
`Sandbox.credentials()` can act as any account. Evaluation covers Allow/Deny, Action wildcards and the
String* condition operators; resources are not evaluated (a readiness check asks "may it call X at all").
"""
from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from .wire import AwsRequest, AwsResponse, ec2_error, request_id

if TYPE_CHECKING:
    from .core import Sandbox

PARTITION = "aws"


class IamAccess:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox

    def uninstall(self) -> None:
        pass

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if request.service == "sts" and request.action == "AssumeRole":
            return self._assume_role(request)
        if request.service == "ec2" and request.form.get("DryRun", "").lower() == "true":
            return self._dry_run(request)
        return None

    # sts:AssumeRole --------------------------------------------------------------------------
    def _assume_role(self, request: AwsRequest) -> AwsResponse | None:
        from .core import SANDBOX_ROLE

        role_arn = request.form.get("RoleArn", "")
        if role_arn.endswith(f":role/{SANDBOX_ROLE}"):
            return None
        caller_account, caller_arn = request.account_id, _caller_arn(request)
        role = _role(role_arn)
        context = {"sts:externalid": request.form.get("ExternalId"), "aws:principalaccount": caller_account,
                   "aws:principalarn": _principal_arn(caller_arn)}
        organization = self.sandbox.directory.organization_of(caller_account)
        if organization:
            context["aws:principalorgid"] = organization.rsplit("/", 1)[1]
        if role is not None and _trusts(json.loads(role.assume_role_policy_document), caller_account, caller_arn,
                                        context):
            return None
        message = f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        body = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                f"<Code>AccessDenied</Code><Message>{message}</Message></Error>"
                f"<RequestId>{request_id()}</RequestId></ErrorResponse>")
        return AwsResponse(403, body.encode(), {"Content-Type": "text/xml"})

    # EC2 DryRun -----------------------------------------------------------------------------
    def _dry_run(self, request: AwsRequest) -> AwsResponse | None:
        assumed = _assumed_role(request)
        if assumed is None:
            return None  # a plain sandbox identity: moto's answer (DryRunOperation)
        role = _role(assumed.role_arn)
        if role is None:
            return None
        action = f"ec2:{request.action}"
        if _identity_allows(role, action):
            # AWS checks permission before the request's resources exist (moto validates them first)
            return ec2_error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
        return ec2_error("UnauthorizedOperation", f"You are not authorized to perform this operation. User: "
                         f"{_caller_arn(request)} is not authorized to perform: {action}", 403)


def _assumed_role(request: AwsRequest) -> Any:
    from moto.sts.models import sts_backends

    for account_backends in list(sts_backends.values()):
        found = account_backends["global"].get_assumed_role_from_access_key(request.access_key)
        if found is not None:
            return found
    return None


def _caller_arn(request: AwsRequest) -> str:
    assumed = _assumed_role(request)
    if assumed is None:
        return f"arn:{PARTITION}:iam::{request.account_id}:root"
    role_name = assumed.role_arn.rsplit("/", 1)[1]
    return f"arn:{PARTITION}:sts::{assumed.account_id}:assumed-role/{role_name}/{assumed.session_name}"


def _principal_arn(caller_arn: str) -> str:
    """aws:PrincipalArn of an assumed-role session is the role's ARN."""
    if ":assumed-role/" in caller_arn:
        account = caller_arn.split(":")[4]
        return f"arn:{PARTITION}:iam::{account}:role/{caller_arn.split('/')[1]}"
    return caller_arn


def _role(role_arn: str) -> Any:
    from moto.iam.models import iam_backends

    parts = role_arn.split(":")
    if len(parts) < 6 or parts[4] not in iam_backends:
        return None
    try:
        return iam_backends[parts[4]][PARTITION].get_role_by_arn(role_arn)
    except Exception:  # moto's IAM NotFoundException
        return None


def _statements(document: dict) -> list[dict]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _names(patterns: Any, action: str) -> bool:
    return any(fnmatchcase(action.lower(), p.lower()) for p in _listed(patterns))


def _trusts(document: dict, caller_account: str, caller_arn: str, context: dict[str, str | None]) -> bool:
    principal_arn = _principal_arn(caller_arn)
    for statement in _statements(document):
        if statement.get("Effect") != "Allow" or not _names(statement.get("Action"), "sts:AssumeRole"):
            continue
        principal = statement.get("Principal")
        aws = ["*"] if principal == "*" else _listed((principal or {}).get("AWS"))
        if not any(p == "*" or p == caller_account or p == f"arn:{PARTITION}:iam::{caller_account}:root"
                   or p in (principal_arn, caller_arn) for p in aws):
            continue
        if _conditions_hold(statement.get("Condition") or {}, context):
            return True
    return False


def _conditions_hold(condition: dict, context: dict[str, str | None]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = context.get(key.lower())
            if actual is None:
                return False  # a condition on a value the request lacks never matches
            if operator == "StringEquals" and actual not in _listed(expected):
                return False
            if operator == "StringLike" and not any(fnmatchcase(actual, e) for e in _listed(expected)):
                return False
            if operator not in ("StringEquals", "StringLike"):
                return False  # not modelled: fail closed, as an unmet condition would
    return True


def _identity_allows(role: Any, action: str) -> bool:
    documents = [json.loads(d) if isinstance(d, str) else d for d in role.policies.values()]
    for policy in role.managed_policies.values():
        default = next(v for v in policy.versions if v.is_default)
        documents.append(json.loads(default.document) if isinstance(default.document, str) else default.document)
    allowed = False
    for document in documents:
        for statement in _statements(document):
            if not _names(statement.get("Action"), action):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed
