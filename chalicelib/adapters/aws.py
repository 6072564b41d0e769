"""boto3 clients, and ClientError turned into the domain's AwsError."""
from __future__ import annotations

import contextlib
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..domain.errors import AwsError

# botocore's standard mode retries throttles and faults a little (3 attempts unless AWS_MAX_ATTEMPTS
# says otherwise); past that the job is re-enqueued with our backoff instead of holding the Lambda.
CLIENT_CONFIG = Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=30,
                       user_agent_extra="ami-distributor")  # names our calls in CloudTrail (and in the sandbox)


def client(service: str, session: boto3.Session | None = None, region: str | None = None):
    return (session or boto3).client(service, region_name=region, config=CLIENT_CONFIG)


@contextlib.contextmanager
def aws_call(operation: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        raise AwsError(operation, details.get("Code", "Unknown"), details.get("Message", str(error))) from None
