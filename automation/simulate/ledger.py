"""What AWS did, read from the sandbox rather than from the service: every image made (when, from
what, with which permissions), every state change, every instance MGN launched.

It also keys each image's modelled duration (and failure draw) to the image's identity, the
server and the target it is for, instead of to the order images happen to be made in. So the same
seed gives the same durations to our pipeline and to the runbook baseline, and the lower bound can
be computed from the model before any schedule is chosen.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from automation.sandbox import Sandbox
from automation.sandbox.ec2_images import AMI_STATE_CHANGE, ImageFidelity
from automation.sandbox.mgn import MgnService

_SOURCE_AMI = re.compile(r"from SourceAmi (ami-[0-9a-f]+)")


def image_draws(seed: int, key: str) -> random.Random:
    """The random source of one image's duration and failure draws (`key`: what the image is)."""
    return random.Random(f"{seed}|{key}")


def create_key(hostname: str) -> str:
    return f"create:{hostname}"


def copy_key(hostname: str, account: str, region: str, attempt: int) -> str:
    return f"copy:{hostname}:{account}/{region}:{attempt}"


@dataclass
class ImageRecord:
    image_id: str
    kind: str  # create | copy
    account: str
    region: str
    name: str
    started: float
    key: str
    hostname: str
    source_image_id: str | None = None
    available: float | None = None
    failed: float | None = None
    deregistered: float | None = None
    ami: Any = field(default=None, repr=False)  # moto's image: its permissions outlive deregistration
    devices: list = field(default_factory=list, repr=False)


@dataclass
class Launch:
    instance_id: str
    hostname: str
    at: float


class Ledger:
    def __init__(self, sandbox: Sandbox, seed: int) -> None:
        self.sandbox, self.seed = sandbox, seed
        self.images: dict[str, ImageRecord] = {}
        self.launches: dict[str, Launch] = {}  # instance ID ->
        self.failed_launches = 0
        self._copy_attempts: dict[tuple[str, str, str], int] = {}
        self._mgn = sandbox.extension(MgnService)
        fidelity = sandbox.extension(ImageFidelity)
        original_start = fidelity._start

        def start(ami: Any, kind: str, devices: list) -> None:
            record = self._record(ami, kind, devices)
            saved = sandbox.rng
            sandbox.rng = image_draws(seed, record.key)
            try:
                original_start(ami, kind, devices)
            finally:
                sandbox.rng = saved

        fidelity._start = start  # instance attribute: lives and dies with this sandbox's extension
        sandbox.subscribe(self._on_event)

    # recording --------------------------------------------------------------------------------
    def _record(self, ami: Any, kind: str, devices: list) -> ImageRecord:
        account, region, now = ami.owner_id, ami.ec2_backend.region_name, self.sandbox.clock.now()
        source_id = None
        if kind == "create":
            launch = self.launches.get(ami.instance_id)
            hostname = launch.hostname if launch else f"instance:{ami.instance_id}"
            key = create_key(hostname)
        else:
            found = _SOURCE_AMI.search(devices[0].snapshot.description) if devices else None
            source_id = found.group(1) if found else None
            source = self.images.get(source_id or "")
            hostname = source.hostname if source else f"image:{source_id}"
            attempt = self._copy_attempts.get((hostname, account, region), 0)
            self._copy_attempts[(hostname, account, region)] = attempt + 1
            key = copy_key(hostname, account, region, attempt)
        record = ImageRecord(ami.id, kind, account, region, ami.name or "", now, key, hostname, source_id,
                             ami=ami, devices=list(devices))
        self.images[ami.id] = record
        return record

    def _on_event(self, event: Any) -> None:
        if event.detail_type == AMI_STATE_CHANGE:
            record = self.images.get(event.detail.get("ImageId", ""))
            if record is not None:
                setattr(record, {"available": "available", "failed": "failed"}.get(event.detail["State"],
                                                                                   "deregistered"), event.time)
        elif event.source == "aws.mgn":
            if not event.detail.get("state", "").endswith("_SUCCEEDED"):
                self.failed_launches += 1
                return
            server_id = event.resources[0].rsplit("/", 1)[1]
            server = self._mgn.servers[(event.account, event.region)][server_id]
            instance_id = server.launched_instance["ec2InstanceID"]
            self.launches[instance_id] = Launch(instance_id, server.hostname, event.time)

    # what it tells -----------------------------------------------------------------------------
    def sources(self) -> list[ImageRecord]:
        return [r for r in self.images.values() if r.kind == "create"]

    def copies_of(self, source_id: str) -> list[ImageRecord]:
        return [r for r in self.images.values() if r.kind == "copy" and r.source_image_id == source_id]

    def invariants(self, name_prefix: str, copy_targets: int, allowed_accounts: set[str],
                   allowed_arns: set[str]) -> dict[str, int]:
        """Counts of broken invariants, from the images AWS holds (or held): see invariants.py."""
        from .invariants import image_violations

        counts = dict.fromkeys(("duplicate_source_amis", "duplicate_copies", "unsafe_cleanups", "disallowed_shares"), 0)
        for violation in image_violations(self, name_prefix, copy_targets, allowed_accounts, allowed_arns):
            if violation.invariant in counts:
                counts[violation.invariant] += 1
        return counts
