"""Does a KMS key let another account use it for a cross-account AMI copy? Pure: policies in, verdicts out.

A target account copies a shared, encrypted AMI with CopyImage; EBS then uses the SOURCE key on the
target's behalf. The source key's policy (or a grant) must let the target account (or the role that
copies) use it: Decrypt, ReEncrypt*, GenerateDataKey*, DescribeKey and CreateGrant (AWS's "Allow use of
the key" for cross-account EBS). Without them CopyImage fails late and opaquely; this module says which
statement is missing, before any image is made.

What is evaluated (the AWS policy evaluation logic, cut to what key policies use):
- statements with Effect Allow / Deny; an explicit Deny wins;
- Principal as "*", {"AWS": account ID | arn:...:root | role/user ARN | "*"}; NotPrincipal is not
  evaluated (an Allow with it counts for nothing, a Deny with it is reported);
- Action / NotAction with wildcards ("kms:ReEncrypt*", "kms:*");
- Condition operators String*/Arn*/Bool (with IfExists and ForAnyValue:/ForAllValues:) on the keys the
  caller gives a value for (aws:PrincipalOrgID, aws:PrincipalAccount, aws:PrincipalArn,
  kms:CallerAccount, kms:ViaService, kms:GrantIsForAWSResource). An Allow with a condition on any
  other key is not counted (it cannot be proven to apply); a Deny with one is not applied but noted.
- grants (ListGrants) to the account root or the role: their Operations allow those actions.
Resource is always "*" in a key policy and is ignored.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Iterable, Mapping

# The permission names AWS documents for cross-account use of an EBS key, and the API actions behind each.
CROSS_ACCOUNT_COPY: dict[str, tuple[str, ...]] = {
    "kms:Decrypt": ("kms:Decrypt",),
    "kms:ReEncrypt*": ("kms:ReEncryptFrom", "kms:ReEncryptTo"),
    "kms:GenerateDataKey*": ("kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"),
    "kms:DescribeKey": ("kms:DescribeKey",),
    "kms:CreateGrant": ("kms:CreateGrant",),
}
SUGGESTED_SID = "AllowAmiDistributorTargetsToCopy"
_ACCOUNT_ID = re.compile(r"^\d{12}$")


class PolicyError(ValueError):
    """The key policy is not a policy document (so nothing in it can be evaluated)."""


@dataclass(frozen=True)
class Caller:
    """Who would use the key: an account, optionally as a particular role, in an organization."""

    account_id: str
    principal_arn: str | None = None  # the role that copies; None: any principal of the account
    organization_id: str | None = None
    via_service: str | None = None  # e.g. "ec2.us-east-1.amazonaws.com": CopyImage reaches KMS through EC2

    def context(self, action: str) -> dict[str, list[str]]:
        values = {"aws:PrincipalAccount": [self.account_id], "kms:CallerAccount": [self.account_id]}
        if self.principal_arn:
            values["aws:PrincipalArn"] = [self.principal_arn]
        if self.organization_id:
            values["aws:PrincipalOrgID"] = [self.organization_id]
        if self.via_service:
            values["kms:ViaService"] = [self.via_service]
        if action == "kms:CreateGrant":  # EBS creates the grant for the volume it makes
            values["kms:GrantIsForAWSResource"] = ["true"]
        return values


@dataclass(frozen=True)
class Verdict:
    account_id: str
    missing: tuple[str, ...]  # permission names from CROSS_ACCOUNT_COPY the account may not use
    denied_by: tuple[str, ...] = ()  # Sids (or positions) of Deny statements that apply
    notes: tuple[str, ...] = ()  # statements that could not be evaluated

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def refused(self) -> bool:
        """Certainly refused: something is missing and no statement that might grant it went unevaluated
        (or an explicit Deny applies, which nothing else can undo)."""
        return bool(self.missing) and (bool(self.denied_by) or not self.notes)

    def suggested_statement(self) -> dict[str, Any]:
        return suggested_statement([self.account_id], self.missing)

    def explain(self, key: str) -> str:
        """One line for a job's reason or doctor's fix: what is missing and the statement that adds it."""
        if self.ok:
            return f"key {key} lets account {self.account_id} copy"
        text = f"key {key} does not let account {self.account_id} use {', '.join(self.missing)}"
        if self.denied_by:
            text += f" (denied by statement {', '.join(self.denied_by)}: remove or narrow it)"
        else:
            text += f"; add to its key policy: {json.dumps(self.suggested_statement(), sort_keys=True)}"
        return text


@dataclass
class _Statement:
    sid: str
    effect: str
    principals: list[str] | None  # None: NotPrincipal
    actions: list[str]
    not_actions: bool
    condition: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse(policy: str | Mapping[str, Any]) -> list[_Statement]:
    try:
        document = json.loads(policy) if isinstance(policy, str) else dict(policy)
    except json.JSONDecodeError as error:
        raise PolicyError(f"the key policy is not JSON: {error}") from None
    raw = document.get("Statement", [])
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list):
        raise PolicyError("the key policy's Statement must be a list")
    statements = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"statement {index} has no Effect Allow or Deny")
        not_actions = "NotAction" in item
        actions = _as_list(item.get("NotAction" if not_actions else "Action"))
        principals = None if "NotPrincipal" in item else _principals(item.get("Principal"))
        statements.append(_Statement(str(item.get("Sid") or f"#{index}"), item["Effect"], principals,
                                     [a.lower() for a in actions], not_actions, dict(item.get("Condition") or {})))
    return statements


def evaluate(policy: str | Mapping[str, Any], caller: Caller, grants: Iterable[Mapping[str, Any]] = (),
             required: Mapping[str, tuple[str, ...]] = CROSS_ACCOUNT_COPY) -> Verdict:
    """Which of `required` (permission name -> API actions) the policy and grants do not allow `caller`."""
    statements = parse(policy)
    granted = _granted_operations(grants, caller)
    missing, denied_by, notes = [], [], []
    for name, actions in required.items():
        for action in actions:
            context = caller.context(action)
            allowed, denied = action.split(":", 1)[1] in granted, False
            for statement in statements:
                if not _names_action(statement, action):
                    continue
                if statement.principals is None:
                    if statement.effect == "Deny":
                        notes.append(f"{statement.sid}: NotPrincipal is not evaluated")
                    continue
                if not _names_principal(statement.principals, caller):
                    continue
                applies = _conditions_hold(statement.condition, context)
                if applies is None:
                    notes.append(f"{statement.sid}: a condition on a key doctor cannot know")
                    continue
                if applies and statement.effect == "Deny":
                    denied = True
                    denied_by.append(statement.sid)
                elif applies:
                    allowed = True
            if denied or not allowed:
                missing.append(name)
                break
    return Verdict(caller.account_id, tuple(missing), tuple(dict.fromkeys(denied_by)), tuple(dict.fromkeys(notes)))


def suggested_statement(account_ids: Iterable[str], permissions: Iterable[str] = CROSS_ACCOUNT_COPY) -> dict[str, Any]:
    """The statement AWS documents for letting other accounts use an EBS key ("Allow use of the key")."""
    return {"Sid": SUGGESTED_SID, "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in sorted(set(account_ids))]},
            "Action": list(permissions), "Resource": "*"}


# helpers --------------------------------------------------------------------------------------
def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _principals(value: Any) -> list[str]:
    if value == "*":
        return ["*"]
    if isinstance(value, dict):
        return _as_list(value.get("AWS"))  # Service principals never match an account
    return []


def _names_action(statement: _Statement, action: str) -> bool:
    matched = any(fnmatchcase(action.lower(), pattern) for pattern in statement.actions)
    return not matched if statement.not_actions else matched


def _names_principal(principals: list[str], caller: Caller) -> bool:
    for principal in principals:
        if principal == "*":
            return True
        if _ACCOUNT_ID.match(principal) and principal == caller.account_id:
            return True
        if principal.startswith("arn:") and principal.split(":")[4:5] == [caller.account_id]:
            resource = principal.split(":", 5)[5]
            if resource == "root" or (caller.principal_arn and fnmatchcase(caller.principal_arn, principal)):
                return True
    return False


def _granted_operations(grants: Iterable[Mapping[str, Any]], caller: Caller) -> set[str]:
    root = f"arn:aws:iam::{caller.account_id}:root"
    operations: set[str] = set()
    for grant in grants:
        grantee = grant.get("GranteePrincipal", "")
        if grantee in (root, caller.account_id) or (caller.principal_arn and grantee == caller.principal_arn):
            operations.update(grant.get("Operations", []))
    return operations


def _conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, list[str]]) -> bool | None:
    """True / False when every condition could be evaluated; None when one names a key without a value."""
    for raw_operator, tests in condition.items():
        qualifier, _, operator = raw_operator.rpartition(":")
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            actual = context.get(key) if key in context else next(
                (v for k, v in context.items() if k.lower() == key.lower()), None)
            if actual is None:
                if if_exists:
                    continue
                return None
            result = _compare(operator, actual, _as_list(expected), qualifier)
            if result is None:
                return None
            if not result:
                return False
    return True


def _compare(operator: str, actual: list[str], expected: list[str], qualifier: str) -> bool | None:
    negate = operator.startswith(("StringNot", "ArnNot"))
    base = operator.replace("Not", "", 1) if negate else operator
    if base in ("StringEquals", "ArnEquals"):
        match = lambda value, pattern: value == pattern  # noqa: E731
    elif base == "StringEqualsIgnoreCase":
        match = lambda value, pattern: value.lower() == pattern.lower()  # noqa: E731
    elif base in ("StringLike", "ArnLike"):
        match = fnmatchcase
    elif base == "Bool":
        match = lambda value, pattern: value.lower() == pattern.lower()  # noqa: E731
    else:
        return None
    hits = [any(match(value, pattern) for pattern in expected) for value in actual]
    result = all(hits) if qualifier == "ForAllValues" else any(hits)
    return not result if negate else result
