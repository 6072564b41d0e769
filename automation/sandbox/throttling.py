"""EC2 API request throttling (token buckets) and the concurrent-AMI-copy limit.

Throttling follows "Request throttling for the Amazon EC2 API": one bucket per account, Region and
action, holding at most `burst` tokens and refilled at `rate` tokens a second; a request takes one
token, and a request that finds none fails with HTTP 503 `RequestLimitExceeded`, which every AWS SDK
retries as a throttle. A refused request takes no token and does nothing.

The copy limit follows "Copy an AMI" (destination Regions are limited to a number of concurrent AMI
copies): a CopyImage that would start one copy too many fails with `ResourceLimitExceeded`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ec2_images import ImageFidelity
from .settings import EC2_UNFILTERED_DESCRIBES
from .wire import AwsRequest, AwsResponse, ec2_error

if TYPE_CHECKING:
    from .core import Sandbox

_TOKEN_EPSILON = 1e-9  # refill arithmetic in floats: 0.1 * 10 must still buy a token


@dataclass
class TokenBucket:
    tokens: float
    updated: float  # the instant `tokens` was last brought up to date

    def refill(self, burst: float, rate: float, now: float) -> None:
        # Settings may change at run time: a smaller burst caps what the bucket already holds.
        self.tokens = min(burst, self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now

    def take(self) -> bool:
        if self.tokens + _TOKEN_EPSILON < 1:
            return False
        self.tokens -= 1
        return True


class Throttling:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.throttled: Counter[str] = Counter()  # EC2 calls refused with RequestLimitExceeded, by operation
        self.copies_refused = 0  # CopyImage calls refused for the concurrent-copy limit
        self._buckets: dict[tuple[str, str, str, bool], TokenBucket] = {}
        self._copy_tokens: set[tuple[str, str, str]] = set()  # (account, region, ClientToken) of copies let through

    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self._reset()  # a new sandbox starts with full buckets

    def uninstall(self) -> None:
        pass  # nothing of moto's is patched

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if request.service != "ec2":
            return None
        if not self._take_token(request):
            self.throttled[request.action] += 1
            return ec2_error("RequestLimitExceeded", "Request limit exceeded.", status=503)
        if request.action == "CopyImage":
            return self._check_copy_limit(request)
        return None

    # request rate limiting -----------------------------------------------------------------
    def _take_token(self, request: AwsRequest) -> bool:
        settings = self.sandbox.settings.throttling  # read per request: tests change it at run time
        if not settings.enabled:
            return True
        # Only the listed describes have an "unfiltered and unpaginated" bucket of their own.
        unfiltered = request.action in EC2_UNFILTERED_DESCRIBES and _unfiltered_and_unpaginated(request.form)
        burst, rate = settings.bucket_for(request.action, unfiltered=unfiltered)
        now = self.sandbox.clock.now()
        key = (request.account_id, request.region, request.action, unfiltered)
        bucket = self._buckets.setdefault(key, TokenBucket(tokens=burst, updated=now))
        bucket.refill(burst, rate, now)
        return bucket.take()

    # concurrent AMI copies -----------------------------------------------------------------
    def _check_copy_limit(self, request: AwsRequest) -> AwsResponse | None:
        settings = self.sandbox.settings.throttling
        account, region = request.account_id, request.region
        token = request.form.get("ClientToken")
        if token and (account, region, token) in self._copy_tokens:
            return None  # a retry of a copy already started: idempotent, it starts nothing new
        limit = settings.copy_concurrency_limit
        images = self.sandbox.extension(ImageFidelity)
        if settings.copy_concurrency_enabled and images.pending_copies(account, region) >= limit:
            self.copies_refused += 1
            # EC2's code for an in-flight copy limit, as CopySnapshot returns it (400, "Too many snapshot
            # copies in progress. The limit is 5 for this destination region."), worded for images.
            return ec2_error(
                "ResourceLimitExceeded",
                f"Too many image copies in progress. The limit is {limit} for this destination region.",
            )
        if token:
            self._copy_tokens.add((account, region, token))
        return None


def _unfiltered_and_unpaginated(form: dict[str, str]) -> bool:
    """True for a call with neither a filter (Filter.N.*) nor pagination (MaxResults, NextToken)."""
    return not any(key.startswith("Filter.") or key in ("MaxResults", "NextToken") for key in form)
