import pytest

from automation.provision import provision, seed_servers
from automation.sandbox import SOURCE_ACCOUNT, Sandbox, VirtualClock
from automation.stages import function_environment


@pytest.fixture
def sandbox():
    box = Sandbox(clock=VirtualClock(), seed=5).start("inprocess")
    yield box
    box.stop()


@pytest.fixture
def stage(sandbox):
    """The local stage, provisioned as the demo provisions it, with a few MGN source servers."""
    provisioned = provision(sandbox, function_environment("local"))
    seed_servers(sandbox, 3, provisioned.region, provisioned.source_key_arn)
    return provisioned


@pytest.fixture
def diagnose(sandbox):
    from automation.doctor import diagnose as run

    def diagnose(stage_name: str = "local"):
        checks = run(stage_name, session=sandbox.session(SOURCE_ACCOUNT, "us-east-1"))
        return {(c.check, c.subject): c for c in checks}, checks
    return diagnose
