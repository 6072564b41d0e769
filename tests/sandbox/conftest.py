"""The fidelity suite runs every behaviour against the in-process sandbox and the HTTP server.

SANDBOX_FIDELITY=off runs the same tests on plain moto (the layer switched off): each test
is written so that it fails there, which is how the layer's behaviours are shown to be its own.
"""
import os

import pytest

from automation.sandbox import Sandbox, SandboxSettings, VirtualClock

FIDELITY = os.environ.get("SANDBOX_FIDELITY", "on") != "off"


@pytest.fixture(params=["inprocess", "http"])
def sandbox_mode(request):
    return request.param


@pytest.fixture
def make_sandbox(sandbox_mode):
    """Start a sandbox with chosen settings, in the test's transport; stopped after the test."""
    started = []

    def make(settings: SandboxSettings | None = None, seed: int = 7, clock=None) -> Sandbox:
        sandbox = Sandbox(settings=settings, seed=seed, clock=clock or VirtualClock(), fidelity=FIDELITY)
        started.append(sandbox.start(sandbox_mode))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox):
    return make_sandbox()
