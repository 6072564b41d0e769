"""What a simulation is asked to do: the wave's size and shape, its seed, the faults to inject."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field



class SimulationError(ValueError):
    """Bad input: reported to the operator before anything runs."""


@dataclass(frozen=True)
class Faults:
    ami_event_loss: float = 0.0  # share of "EC2 AMI State Change" deliveries EventBridge drops (best effort)
    duplicate_messages: bool = False  # SQS delivers every job message a second time (at-least-once)
    create_failure_rate: float = 0.0  # images that end `failed` (seeded per image)
    copy_failure_rate: float = 0.0


FAULT_PROFILES: dict[str, Faults] = {
    "none": Faults(),
    "lossy-events": Faults(ami_event_loss=0.2),
    "no-events": Faults(ami_event_loss=1.0),
    "duplicates": Faults(duplicate_messages=True),
    "image-failures": Faults(create_failure_rate=0.02, copy_failure_rate=0.02),
    "chaos": Faults(ami_event_loss=0.2, duplicate_messages=True, create_failure_rate=0.02, copy_failure_rate=0.02),
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
