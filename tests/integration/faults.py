"""Faults no emulator produces on its own, injected where AWS would: botocore event hooks on the
clients the handlers build (never a mock of our own code)."""
from __future__ import annotations

import contextlib
from typing import Iterator

from automation.local_lambda import InvocationCrashed
from automation.simulate.faults import builtin_handler as _builtin_handler


@contextlib.contextmanager
def crash_after(operation: str, times: int = 1) -> Iterator[list[str]]:
    """The function dies right after `operation` ("ec2.CreateImage") succeeded in AWS, `times` times."""
    crashes: list[str] = []

    def crash(**kwargs) -> None:
        if len(crashes) < times:
            crashes.append(operation)
            raise InvocationCrashed(f"injected crash after {operation}")

    with _builtin_handler(f"after-call.{operation}", crash):
        yield crashes


class CrashSwitch:
    """One hook for many crashes: `arm("ec2.CreateImage")` crashes the function right after its next
    CreateImage. Installed once, so arming and disarming rebuild no client (crash_after rebuilds them all)."""

    def __init__(self) -> None:
        self.armed: str | None = None
        self.crashes: list[str] = []

    def arm(self, operation: str | None) -> None:
        self.armed = operation

    def __call__(self, event_name: str, **kwargs) -> None:
        if self.armed and event_name == f"after-call.{self.armed}":
            self.crashes.append(self.armed)
            self.armed = None
            raise InvocationCrashed(f"injected crash after {event_name[len('after-call.'):]}")


@contextlib.contextmanager
def crash_switch() -> Iterator[CrashSwitch]:
    switch = CrashSwitch()
    with _builtin_handler("after-call", switch):
        yield switch


@contextlib.contextmanager
def before_call(operation: str, handler) -> Iterator[None]:
    with _builtin_handler(f"before-call.{operation}", handler):
        yield


@contextlib.contextmanager
def after_call(operation: str, handler) -> Iterator[None]:
    with _builtin_handler(f"after-call.{operation}", handler):
        yield
