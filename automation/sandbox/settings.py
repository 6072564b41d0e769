"""Every knob of the sandbox's AWS model, with the figure it follows and where the figure comes from."""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.config import DEFAULT_POLL_GRID_S, DEFAULT_POLL_MIN_S

SOURCE_ACCOUNT = "111111111111"
DEFAULT_REGION = "us-east-1"


@dataclass
class DurationModel:
    """How long AWS keeps an image `pending`: base + per-GiB time, with seeded jitter.

    AWS publishes no duration for CreateImage or CopyImage; they are bounded by EBS snapshot
    throughput. These defaults are modelled on commonly reported figures (a first, full snapshot
    of a fresh volume moves on the order of 100-200 MiB/s; a cross-account, re-encrypting copy is
    slower): a 100 GiB server takes ~12 min to image and ~25 min to copy. `time_scale` shrinks
    every duration alike (the demo uses it to show hour-long waves in seconds).
    """

    create_base_s: float = 120.0
    create_s_per_gib: float = 6.0
    copy_base_s: float = 300.0
    copy_s_per_gib: float = 12.0
    jitter: float = 0.2  # each duration is multiplied by a seeded factor in [1 - jitter, 1 + jitter]
    time_scale: float = 1.0

    def create_seconds(self, total_gib: float, draw: float) -> float:
        return self._scaled(self.create_base_s + self.create_s_per_gib * total_gib, draw)

    def copy_seconds(self, total_gib: float, draw: float) -> float:
        return self._scaled(self.copy_base_s + self.copy_s_per_gib * total_gib, draw)

    def _scaled(self, seconds: float, draw: float) -> float:
        return seconds * (1 + self.jitter * (2 * draw - 1)) * self.time_scale

    def handler_expectations(self) -> dict[str, str]:
        """The stage settings that tell the handlers how long this model's images take and how often to look
        (their poll plan), at its time scale: what an operator would set from the durations seen in their account."""
        def seconds(value: float) -> str:
            return f"{value * self.time_scale:.6f}".rstrip("0").rstrip(".")

        def whole(value: float) -> str:
            return str(max(1, round(value * self.time_scale)))

        return {"EXPECTED_CREATE_SECONDS": f"{seconds(self.create_base_s)}+{seconds(self.create_s_per_gib)}/GiB",
                "EXPECTED_COPY_SECONDS": f"{seconds(self.copy_base_s)}+{seconds(self.copy_s_per_gib)}/GiB",
                # the stage defaults, on the same time scale
                "POLL_MIN_SECONDS": whole(DEFAULT_POLL_MIN_S), "POLL_GRID_SECONDS": whole(DEFAULT_POLL_GRID_S)}


@dataclass
class FailureModel:
    """Images that end `failed` instead of `available`: a seeded fraction, or ones chosen by ID."""

    create_failure_rate: float = 0.0
    copy_failure_rate: float = 0.0
    reason: str = "Client.InternalError: Internal error while creating the snapshot"


# EC2 API request throttling (token bucket: burst capacity, refill per second), from
# "Request throttling for the Amazon EC2 API" (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html).
# Actions the service calls that AWS lists with their own bucket ("Uncategorized actions"); the others
# it calls (CreateImage, DescribeInstances, ...) fall in a category below.
EC2_BUCKETS: dict[str, tuple[float, float]] = {
    "CopyImage": (100, 1),
    "CreateTags": (100, 10),
    "ModifyImageAttribute": (100, 5),
    "ModifySnapshotAttribute": (100, 5),
    "DeregisterImage": (100, 5),
    "DeleteSnapshot": (100, 5),
    "TerminateInstances": (100, 5),
    "DescribeImages": (100, 20),
}
EC2_DEFAULT_MUTATING_BUCKET = (50, 5)     # "Mutating actions": everything not non-mutating nor listed
EC2_DEFAULT_DESCRIBE_BUCKET = (100, 20)   # "Non-mutating actions": Describe*, List*, Search*, Get*
EC2_NON_MUTATING_PREFIXES = ("Describe", "List", "Search", "Get")
# "Unfiltered and unpaginated non-mutating actions": these, called with neither a filter nor pagination,
# draw from a smaller bucket of their own.
EC2_UNFILTERED_DESCRIBES = frozenset({
    "DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces", "DescribeSecurityGroups",
    "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes",
})
EC2_UNFILTERED_DESCRIBE_BUCKET = (50, 10)


@dataclass
class ThrottleSettings:
    enabled: bool = True
    scale: float = 1.0  # multiplies every burst and refill rate
    overrides: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Concurrent AMI copies in flight per destination account and region
    # ("Copy an AMI": 300 per destination Region; older documents say 100).
    copy_concurrency_enabled: bool = True
    copy_concurrency_limit: int = 300

    def bucket_for(self, operation: str, unfiltered: bool = False) -> tuple[float, float]:
        """(burst, refill per second) of `operation`'s bucket; `unfiltered`: a call with neither filter nor pagination.

        An override replaces the operation's buckets as given (unscaled)."""
        if operation in self.overrides:
            return self.overrides[operation]
        if unfiltered and operation in EC2_UNFILTERED_DESCRIBES:
            burst, rate = EC2_UNFILTERED_DESCRIBE_BUCKET
        else:
            burst, rate = EC2_BUCKETS.get(operation) or (
                EC2_DEFAULT_DESCRIBE_BUCKET if operation.startswith(EC2_NON_MUTATING_PREFIXES)
                else EC2_DEFAULT_MUTATING_BUCKET
            )
        return burst * self.scale, rate * self.scale


@dataclass
class SandboxSettings:
    durations: DurationModel = field(default_factory=DurationModel)
    failures: FailureModel = field(default_factory=FailureModel)
    throttling: ThrottleSettings = field(default_factory=ThrottleSettings)
    # SQS StartMessageMoveTask: at most 500 messages per second (SQS developer guide, DLQ redrive).
    move_task_max_rate: int = 500
    # MGN post-launch actions: how long the SSM documents run after the instance launches.
    post_launch_actions_s: float = 300.0
    # MGN launch job: snapshot, conversion and boot of each server, from StartTest/StartCutover to
    # LAUNCHED. MGN publishes no figure; a few minutes is typical. Each server draws a seeded factor
    # in [1 - durations.jitter, 1 + durations.jitter]; durations.time_scale applies.
    mgn_launch_s: float = 180.0
