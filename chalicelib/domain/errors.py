"""AWS errors classified once, in one table (as botocore does for its retries).

Adapters raise `AwsError` with the service's error code; the service asks `classify()` what the
code means for a job, never matching strings anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    THROTTLED = "THROTTLED"      # AWS asked us to slow down: re-enqueue with backoff, never a failure
    BUSY = "BUSY"                # a limit on work in flight (concurrent copies): wait for capacity
    TRANSIENT = "TRANSIENT"      # AWS had a fault: retry a bounded number of times
    GONE = "GONE"                # the resource no longer exists
    DENIED = "DENIED"            # permissions or key policy: a person must fix it
    INVALID = "INVALID"          # the request can never succeed as made


_KINDS: dict[str, Kind] = {
    # throttling (EC2, STS, KMS, SSM, MGN, DynamoDB, SQS)
    "RequestLimitExceeded": Kind.THROTTLED,
    "Throttling": Kind.THROTTLED,
    "ThrottlingException": Kind.THROTTLED,
    "ThrottledException": Kind.THROTTLED,
    "TooManyRequestsException": Kind.THROTTLED,
    "RequestThrottled": Kind.THROTTLED,
    "RequestThrottledException": Kind.THROTTLED,
    "ProvisionedThroughputExceededException": Kind.THROTTLED,
    "SlowDown": Kind.THROTTLED,
    # capacity
    "ResourceLimitExceeded": Kind.BUSY,
    "AMIQuotaExceeded": Kind.BUSY,
    "CopySlotsTaken": Kind.BUSY,  # ours (adapters/copy_slots.py): every slot for the destination is held
    # AWS-side faults
    "InternalError": Kind.TRANSIENT,
    "InternalFailure": Kind.TRANSIENT,
    "ServiceUnavailable": Kind.TRANSIENT,
    "Unavailable": Kind.TRANSIENT,
    "InternalServerException": Kind.TRANSIENT,
    "IncorrectState": Kind.TRANSIENT,
    "IncorrectInstanceState": Kind.TRANSIENT,
    "KMSInternalException": Kind.TRANSIENT,
    # gone
    "InvalidInstanceID.NotFound": Kind.GONE,
    "InvalidAMIID.NotFound": Kind.GONE,
    "InvalidAMIID.Unavailable": Kind.GONE,
    "InvalidSnapshot.NotFound": Kind.GONE,
    "InvalidVolume.NotFound": Kind.GONE,
    "ResourceNotFoundException": Kind.GONE,
    "NotFoundException": Kind.GONE,
    # denied
    "AccessDenied": Kind.DENIED,
    "AccessDeniedException": Kind.DENIED,
    "UnauthorizedOperation": Kind.DENIED,
    "AuthFailure": Kind.DENIED,
    "KMSInvalidStateException": Kind.DENIED,
    "DisabledException": Kind.DENIED,
    "InvalidKeyUsageException": Kind.DENIED,
    "NotAuthorizedException": Kind.DENIED,
}


def classify(code: str) -> Kind:
    return _KINDS.get(code, Kind.INVALID)


@dataclass
class AwsError(Exception):
    """An AWS call failed: the operation, the service's error code and its message."""

    operation: str
    code: str
    message: str

    @property
    def kind(self) -> Kind:
        return classify(self.code)

    def __str__(self) -> str:
        return f"{self.operation}: {self.code}: {self.message}"
