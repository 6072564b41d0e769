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


@contextlib.contextmanager
def before_call(operation: str, handler) -> Iterator[None]:
    with _builtin_handler(f"before-call.{operation}", handler):
        yield
