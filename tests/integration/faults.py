"""Faults no emulator produces on its own, injected where AWS would: botocore event hooks on the
clients the handlers build (never a mock of our own code)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import boto3
from botocore.handlers import BUILTIN_HANDLERS

from automation.local_lambda import InvocationCrashed
from chalicelib import bootstrap


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
def _builtin_handler(event: str, handler) -> Iterator[None]:
    """Registered for every botocore session made from now on (the handlers' clients, target sessions)."""
    entry = (event, handler)
    BUILTIN_HANDLERS.append(entry)
    boto3.DEFAULT_SESSION = None
    bootstrap.reset()
    try:
        yield
    finally:
        BUILTIN_HANDLERS.remove(entry)
        boto3.DEFAULT_SESSION = None
        bootstrap.reset()


@contextlib.contextmanager
def before_call(operation: str, handler) -> Iterator[None]:
    with _builtin_handler(f"before-call.{operation}", handler):
        yield
