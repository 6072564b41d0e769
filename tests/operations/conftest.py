"""The operator CLI, run in-process against the in-process sandbox with the stage account's credentials
(the path an operator takes with their own AWS credentials); one test also goes over loopback HTTP."""
import json

import pytest
import typer
from typer.testing import CliRunner

from automation import operations
from automation.sandbox import SOURCE_ACCOUNT, Sandbox, VirtualClock
from automation.sandbox.mgn import MgnService
from automation.wave import Wave
from chalicelib import bootstrap
from tests.integration.conftest import fast_settings, make_sandbox, sandbox, start_wave  # noqa: F401 (fixtures)


class Cli:
    def __init__(self, sandbox) -> None:
        self.app = typer.Typer()
        operations.register(self.app)
        self.runner = CliRunner()
        # the operator's own credentials; rich wraps tables to the terminal: keep rows whole
        self.env = {**sandbox.environment(SOURCE_ACCOUNT, "us-east-1"), "COLUMNS": "250"}

    def __call__(self, *args, expect: int = 0):
        result = self.runner.invoke(self.app, [str(a) for a in args], env=self.env, catch_exceptions=False)
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args, expect: int = 0) -> dict:
        result = self(*args, "--json", expect=expect)
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def cli(sandbox):
    return Cli(sandbox)


@pytest.fixture(scope="module")
def finished_wave():
    """One wave for the read-only commands: two servers DONE, one FAILED (its volume uses aws/ebs,
    which AWS cannot share). Read-only tests share it; tests that change jobs make their own."""
    box = Sandbox(clock=VirtualClock(), seed=5, settings=fast_settings()).start("inprocess")
    try:
        wave = Wave.start(box)
        wave.cutover(2)
        legacy = box.extension(MgnService).add_source_server(
            SOURCE_ACCOUNT, "us-east-1", "legacy.corp.example",
            [{"device": "/dev/sda1", "size_gib": 20, "kms_key_id": "aws/ebs"}])
        box.client("mgn").start_cutover(sourceServerIDs=[legacy])
        wave.run()
        yield wave, Cli(box)
    finally:
        box.stop()
        bootstrap.overrides = bootstrap.Overrides()
        bootstrap.reset()
