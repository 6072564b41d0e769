"""The one place that wires settings, AWS clients and use cases together.

Built once per cold start (per distinct environment, so tests and the simulator can run several
stages in one process). `overrides` lets the simulator put the handlers on its virtual clock.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Callable

from . import config
from .adapters.aws import client
from .adapters.ec2 import Ec2Images
from .adapters.copy_slots import DynamoCopySlots
from .adapters.event_bus import EventBus
from .adapters.job_store import DynamoJobStore
from .adapters.mgn import MgnLaunches
from .adapters.queue import JobQueue
from .adapters.sessions import CrossAccountSessions
from .service import Advancer, Intake, Ports, Waker

_ENV_KEYS = ("JOBS_TABLE", "JOBS_QUEUE_URL", "JOBS_QUEUE_ARN", "DISTRIBUTION", "CROSS_ACCOUNT_ROLE_NAME",
             "CROSS_ACCOUNT_EXTERNAL_ID", "LAUNCH_TYPES", "WAIT_FOR_POST_LAUNCH_ACTIONS", "POLL_MIN_SECONDS",
             "POLL_MAX_SECONDS", "POLL_GRID_SECONDS", "EXPECTED_CREATE_SECONDS", "EXPECTED_COPY_SECONDS",
             "RETRY_BASE_SECONDS", "RETRY_MAX_SECONDS", "MAX_COPY_ATTEMPTS", "MAX_STAGE_ATTEMPTS", "JOB_TTL_DAYS",
             "EVENT_BUS_NAME", "STAGE_NAME", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
             "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS")


@dataclass
class Container:
    settings: config.Settings
    ports: Ports
    intake: Intake
    advancer: Advancer
    waker: Waker


@dataclass
class Overrides:
    now: Callable[[], float] = time.time
    draw: Callable[[], float] = random.random


overrides = Overrides()
_containers: dict[tuple, Container] = {}


def container() -> Container:
    key = tuple(os.environ.get(k) for k in _ENV_KEYS) + (id(overrides.now), id(overrides.draw))
    if key not in _containers:
        _containers[key] = build(config.load(os.environ))
    return _containers[key]


def build(settings: config.Settings) -> Container:
    now, draw = overrides.now, overrides.draw
    ports = Ports(
        store=DynamoJobStore(client("dynamodb"), settings.table_name, settings.job_ttl_days),
        copy_slots=DynamoCopySlots(client("dynamodb"), settings.table_name),
        queue=JobQueue(client("sqs"), settings.queue_url),
        source_ec2=Ec2Images(client("ec2"), client("kms")),
        targets=CrossAccountSessions(client("sts"), settings.role_name, settings.external_id, now),
        mgn=MgnLaunches(client("mgn")),
        events=EventBus(client("events"), settings.event_bus),
        now=now,
        draw=draw,
    )
    advancer = Advancer(settings, ports)
    return Container(settings, ports, Intake(settings, ports), advancer, Waker(ports, advancer))


def reset() -> None:
    _containers.clear()
