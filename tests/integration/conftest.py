import json

import pytest

from automation.sandbox import Sandbox, SandboxSettings, VirtualClock
from automation.sandbox.settings import DurationModel
from automation.wave import Wave
from chalicelib import bootstrap

TARGET_A = ("222222222222", "us-east-1")
TARGET_B = ("333333333333", "us-west-2")


def fast_settings(**changes) -> SandboxSettings:
    """AWS's durations shrunk tenfold: the same behaviour in fewer polls (tests are about logic, not time)."""
    return SandboxSettings(durations=DurationModel(time_scale=0.1), **changes)


@pytest.fixture
def make_sandbox():
    started = []

    def make(settings: SandboxSettings | None = None, seed: int = 11) -> Sandbox:
        box = Sandbox(clock=VirtualClock(), seed=seed, settings=settings or fast_settings()).start("inprocess")
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()
    bootstrap.overrides = bootstrap.Overrides()
    bootstrap.reset()


@pytest.fixture
def sandbox(make_sandbox):
    return make_sandbox()


@pytest.fixture
def start_wave(sandbox):
    def start(distribution: dict | None = None, **env_overrides) -> Wave:
        env = {k: str(v) for k, v in env_overrides.items()}
        if distribution is not None:
            env["DISTRIBUTION"] = json.dumps(distribution)
        return Wave.start(sandbox, env_overrides=env)
    return start


def target(account: str, region: str, copy: bool = True) -> dict:
    spec = {"accountId": account, "region": region, "copy": copy}
    if copy:
        spec["kmsKeyId"] = f"arn:aws:kms:{region}:{account}:alias/ami-distributor-target"
    return spec


def distribution(*targets: dict, cleanup: bool = True) -> dict:
    return {"targets": list(targets),
            "cleanup": {"deregisterImage": cleanup, "deleteSnapshots": cleanup, "terminateInstance": cleanup}}
