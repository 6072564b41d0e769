"""What a simulation is asked to do: the wave's size and shape, its seed, the faults to inject."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field



class SimulationError(ValueError):
    """Bad input: reported to the operator before anything runs."""


@dataclass(frozen=True)
class Faults:
    """What goes wrong in a run, and how often. Each fault is drawn from a random source keyed by what it
    is about (the message, the image, the invocation's records), so a seed replays exactly; see faults.py."""

    ami_event_loss: float = 0.0  # share of "EC2 AMI State Change" deliveries EventBridge drops (best effort)
    duplicate_messages: bool = False  # SQS delivers every job message a second time (at-least-once)
    duplicate_rate: float = 0.0  # share of job messages SQS delivers a second time
    create_failure_rate: float = 0.0  # images that end `failed` (seeded per image)
    copy_failure_rate: float = 0.0
    throttle_rate: float = 0.0  # share of the service's EC2 calls refused RequestLimitExceeded beyond the buckets
    crash_rate: float = 0.0  # share of advance_jobs invocations that die at a random point
    slow_consumer_rate: float = 0.0  # share of advance_jobs invocations that outlive the visibility timeout
    assume_role_denied: bool = False  # one target's role refuses AssumeRole for a window, until an operator fixes it
    kms_denied_rate: float = 0.0  # share of (image, target) copies refused the target's KMS key, until fixed
    table_throttled_share: float = 0.0  # share of the time the jobs table refuses every request (20 s windows)
    dlq_replay: bool = False  # at the end an operator replays every dead letter and retries what was fixed

    @property
    def operator_at_the_end(self) -> bool:
        return self.dlq_replay or self.assume_role_denied or self.kms_denied_rate > 0


# the rates (issue 7); `chaos` turns every fault on at once
CHAOS = Faults(ami_event_loss=0.5, duplicate_rate=0.1, create_failure_rate=0.01, copy_failure_rate=0.01,
               throttle_rate=0.05, crash_rate=0.05, slow_consumer_rate=0.02, assume_role_denied=True,
               kms_denied_rate=0.01, table_throttled_share=20 / 3600, dlq_replay=True)
FAULT_PROFILES: dict[str, Faults] = {
    "none": Faults(),
    "throttling": Faults(throttle_rate=CHAOS.throttle_rate),
    "image-failures": Faults(create_failure_rate=CHAOS.create_failure_rate),
    "copy-failures": Faults(copy_failure_rate=CHAOS.copy_failure_rate),
    "crashes": Faults(crash_rate=CHAOS.crash_rate),
    "duplicates": Faults(duplicate_rate=CHAOS.duplicate_rate),
    "every-message-twice": Faults(duplicate_messages=True),
    "slow-consumers": Faults(slow_consumer_rate=CHAOS.slow_consumer_rate),
    "lossy-events": Faults(ami_event_loss=CHAOS.ami_event_loss),
    "no-events": Faults(ami_event_loss=1.0),
    "assume-role-denied": Faults(assume_role_denied=True),
    "kms-denied": Faults(kms_denied_rate=CHAOS.kms_denied_rate),
    "table-throttled": Faults(table_throttled_share=CHAOS.table_throttled_share),
    "dlq-replay": Faults(dlq_replay=True),
    "chaos": CHAOS,
}
BASELINES = ("runbook",)

# Target accounts and regions for --targets K: the local stage's two first, then more of the same kind.
TARGET_ACCOUNTS = [str(d) * 12 for d in range(2, 10)]
TARGET_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]

# Server disks: two volumes each (root + one data disk), sizes drawn from a mix typical of the
# enterprise Linux/Windows estates MGN migrates (small roots, data disks from tens of GiB to 1 TiB).
ROOT_GIB = {30: 0.25, 50: 0.3, 80: 0.25, 100: 0.15, 150: 0.05}
DATA_GIB = {20: 0.15, 50: 0.2, 100: 0.25, 200: 0.2, 500: 0.15, 1000: 0.05}


@dataclass(frozen=True)
class SimOptions:
    servers: int
    seed: int = 1
    targets: int = 2
    faults: str = "none"
    baseline: str | None = None
    stage: str = "local"
    cleanup: bool = True
    time_scale: float = 1.0  # shrinks every AWS duration alike (tests); 1.0 is AWS's own
    overrides: dict = field(default_factory=dict)  # extra function environment (tests: poll settings)

    def validate(self) -> None:
        problems = []
        if not 1 <= self.servers <= 20000:
            problems.append(f"--servers {self.servers}: use 1..20000")
        if not 1 <= self.targets <= len(TARGET_ACCOUNTS):
            problems.append(f"--targets {self.targets}: use 1..{len(TARGET_ACCOUNTS)}")
        if self.faults not in FAULT_PROFILES:
            problems.append(f"--faults {self.faults!r}: use one of {', '.join(FAULT_PROFILES)}")
        if self.baseline is not None and self.baseline not in BASELINES:
            problems.append(f"--baseline {self.baseline!r}: use one of {', '.join(BASELINES)}")
        if problems:
            raise SimulationError("; ".join(problems))

    def summary(self) -> dict:
        """The options as the JSON reports them (what replays the run)."""
        summary = {"servers": self.servers, "seed": self.seed, "targets": self.targets, "faults": self.faults,
                   "baseline": self.baseline, "stage": self.stage}
        if self.time_scale != 1.0 or not self.cleanup or self.overrides:
            summary.update(time_scale=self.time_scale, cleanup=self.cleanup, overrides=self.overrides)
        return summary

    @property
    def fault_model(self) -> Faults:
        return FAULT_PROFILES[self.faults]

    def target_list(self) -> list[dict]:
        return [{"accountId": TARGET_ACCOUNTS[i], "region": TARGET_REGIONS[i % len(TARGET_REGIONS)],
                 "kmsKeyId": f"arn:aws:kms:{TARGET_REGIONS[i % len(TARGET_REGIONS)]}:{TARGET_ACCOUNTS[i]}"
                             f":alias/ami-distributor-target", "copy": True}
                for i in range(self.targets)]

    def distribution(self, targets: list[dict] | None = None) -> str:
        cleanup = {"deregisterImage": self.cleanup, "deleteSnapshots": self.cleanup, "terminateInstance": self.cleanup}
        return json.dumps({"targets": targets or self.target_list(), "organizationArns": [],
                           "organizationalUnitArns": [], "cleanup": cleanup})


def disk_layouts(servers: int, seed: int) -> list[tuple[int, list[int]]]:
    """One (root GiB, [data GiB]) per server, seeded: the same seed gives the same wave."""
    rng = random.Random(f"{seed}|disks")
    roots, data = list(ROOT_GIB), list(DATA_GIB)
    return [(rng.choices(roots, weights=list(ROOT_GIB.values()))[0],
             [rng.choices(data, weights=list(DATA_GIB.values()))[0]]) for _ in range(servers)]
