"""Sessions in target accounts through the cross-account role, cached per role for their lifetime."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import boto3

from .aws import aws_call, client

REFRESH_MARGIN_S = 300  # renew a little before AWS would expire the credentials mid-call


@dataclass
class CrossAccountSessions:
    sts: object
    role_name: str
    external_id: str | None
    now: Callable[[], float]
    partition: str = "aws"
    _cache: dict[str, tuple[boto3.Session, float]] = field(default_factory=dict)
    _clients: dict[tuple[str, str, str], tuple[object, boto3.Session]] = field(default_factory=dict)

    def role_arn(self, account_id: str) -> str:
        return f"arn:{self.partition}:iam::{account_id}:role/{self.role_name}"

    def session(self, account_id: str, job_id: str) -> boto3.Session:
        arn = self.role_arn(account_id)
        cached = self._cache.get(arn)
        if cached and cached[1] - REFRESH_MARGIN_S > self.now():
            return cached[0]
        request = {"RoleArn": arn, "RoleSessionName": session_name(job_id)}
        if self.external_id:
            request["ExternalId"] = self.external_id
        with aws_call("sts:AssumeRole"):
            credentials = self.sts.assume_role(**request)["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        self._cache[arn] = (session, credentials["Expiration"].timestamp())
        return session

    def ec2(self, account_id: str, region: str, job_id: str):
        return self.client("ec2", account_id, region, job_id)

    def ssm(self, account_id: str, region: str, job_id: str):
        return self.client("ssm", account_id, region, job_id)

    def client(self, service: str, account_id: str, region: str, job_id: str):
        """A client per target and service, rebuilt only when its session is renewed (building one costs ~50 ms)."""
        session = self.session(account_id, job_id)
        cached = self._clients.get((service, account_id, region))
        if cached is None or cached[1] is not session:
            cached = (client(service, session, region), session)
            self._clients[(service, account_id, region)] = cached
        return cached[0]


def session_name(job_id: str) -> str:
    """RoleSessionName: 2-64 of [\\w+=,.@-]; CloudTrail in the target shows which job acted."""
    return re.sub(r"[^\w+=,.@-]", "-", f"amid-{job_id}")[:64]
