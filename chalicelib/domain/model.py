"""What a distribution job is: where it stands, what it made, what went wrong.

A job is one (instance, distribution) pair. It moves through `Stage`s one step per message;
`version` and `token` implement the message protocol described in service.py.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Stage(str, Enum):
    WAIT_LAUNCH = "WAIT_LAUNCH"
    CREATE_IMAGE = "CREATE_IMAGE"
    WAIT_IMAGE = "WAIT_IMAGE"
    REENCRYPT = "REENCRYPT"
    WAIT_REENCRYPT = "WAIT_REENCRYPT"
    SHARE = "SHARE"
    COPY = "COPY"
    WAIT_COPY = "WAIT_COPY"
    PUBLISH = "PUBLISH"
    CLEANUP = "CLEANUP"
    DONE = "DONE"


class Status(str, Enum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING


class Reason(str, Enum):
    """Why a job FAILED: machine-readable, stable (operators and alarms key on these)."""

    INSTANCE_NOT_FOUND = "INSTANCE_NOT_FOUND"
    AWS_MANAGED_KEY = "AWS_MANAGED_KEY"
    SOURCE_KEY_UNUSABLE = "SOURCE_KEY_UNUSABLE"
    IMAGE_FAILED = "IMAGE_FAILED"
    SHARE_REFUSED = "SHARE_REFUSED"
    ASSUME_ROLE_DENIED = "ASSUME_ROLE_DENIED"
    COPY_REFUSED = "COPY_REFUSED"
    COPY_FAILED = "COPY_FAILED"
    CLEANUP_REFUSED = "CLEANUP_REFUSED"
    LAUNCH_NOT_FOUND = "LAUNCH_NOT_FOUND"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    NOT_ALLOWED = "NOT_ALLOWED"
    PUBLISH_REFUSED = "PUBLISH_REFUSED"


DEFAULT_PARAMETER_PATTERN = "/migrated/{wave}/{source_server_id}"


@dataclass(frozen=True, repr=False)
class Target:
    """One destination of the copy: an account in a region, re-encrypted with that region's key, and what
    is published there once the copy is available (Image Builder's distribution settings, per target)."""

    account_id: str
    region: str
    kms_key_id: str | None = None
    copy: bool = True
    parameter_pattern: str | None = None  # an SSM parameter (aws:ec2:image) named by this pattern holds the copy
    launch_template: str | None = None  # a launch template whose new default version launches the copy
    tags: tuple[tuple[str, str], ...] = ()  # added to the copy, its snapshots and the parameter
    copy_minutes: int | None = None  # a time-based copy: SnapshotCopyCompletionDurationMinutes
    protection: str | None = None  # deregistration protection of the copy: "on" or "cooldown" (24 h)

    @property
    def key(self) -> str:
        return f"{self.account_id}/{self.region}"

    @property
    def publishes(self) -> bool:
        return bool(self.copy and (self.parameter_pattern or self.launch_template or self.protection))

    def __repr__(self) -> str:
        # The distribution's fingerprint (and so every job ID) is this repr: a target without the options
        # added later keeps the repr, and the job IDs, it always had.
        text = (f"Target(account_id={self.account_id!r}, region={self.region!r}, kms_key_id={self.kms_key_id!r}, "
                f"copy={self.copy!r}")
        for name in ("parameter_pattern", "launch_template", "tags", "copy_minutes", "protection"):
            value = getattr(self, name)
            if value:
                text += f", {name}={value!r}"
        return text + ")"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Target":
        values = dict(data)
        values["tags"] = tuple(tuple(pair) for pair in values.get("tags", ()))
        return cls(**values)


@dataclass(frozen=True)
class Cleanup:
    deregister_image: bool = False
    delete_snapshots: bool = False
    terminate_instance: bool = False

    @property
    def any(self) -> bool:
        return self.deregister_image or self.delete_snapshots or self.terminate_instance


@dataclass(frozen=True, repr=False)
class Distribution:
    """Where a job's AMI goes: Image Builder's distribution shape, cut to what this service does."""

    targets: tuple[Target, ...]
    organization_arns: tuple[str, ...] = ()
    organizational_unit_arns: tuple[str, ...] = ()
    cleanup: Cleanup = Cleanup()
    # an AMI of volumes under aws/ebs is copied in the source account with this customer-managed key, and
    # that copy (the intermediate) is shared and copied; None: such a job fails (AWS_MANAGED_KEY)
    reencrypt_key_id: str | None = None

    def __repr__(self) -> str:
        # the fingerprint (every job ID) is this repr: without re-encryption it is the one it always was
        text = (f"Distribution(targets={self.targets!r}, organization_arns={self.organization_arns!r}, "
                f"organizational_unit_arns={self.organizational_unit_arns!r}, cleanup={self.cleanup!r}")
        return text + (f", reencrypt_key_id={self.reencrypt_key_id!r})" if self.reencrypt_key_id else ")")

    @property
    def share_accounts(self) -> tuple[str, ...]:
        return tuple(sorted({t.account_id for t in self.targets}))

    @property
    def copy_targets(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.copy)

    def outside(self, allowed: "Distribution") -> list[str]:
        """What this distribution names that `allowed` does not (empty when it is within the allow-list)."""
        allowed_targets = {(t.account_id, t.region) for t in allowed.targets}
        return ([t.key for t in self.targets if (t.account_id, t.region) not in allowed_targets]
                + [a for a in self.organization_arns if a not in allowed.organization_arns]
                + [a for a in self.organizational_unit_arns if a not in allowed.organizational_unit_arns])

    def fingerprint(self) -> str:
        """Stable identity of the distribution: one job per (instance, distribution)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


@dataclass
class TargetCopy:
    account_id: str
    region: str
    image_id: str | None = None
    state: str | None = None  # the copy's image state as last seen
    attempts: int = 0  # CopyImage attempts (a failed copy is retried with a fresh ClientToken)
    started_at: float | None = None  # when CopyImage was called (the poll plan counts from it)
    parameter_name: str | None = None  # the SSM parameter that names this copy (PUBLISH)
    launch_template_version: int | None = None  # the launch template version made the default (PUBLISH)

    @property
    def key(self) -> str:
        return f"{self.account_id}/{self.region}"


@dataclass
class ErrorRecord:
    code: str
    message: str
    stage: str
    at: float


@dataclass
class Transition:
    stage: str
    status: str
    at: float
    note: str = ""


@dataclass
class Job:
    job_id: str
    wave: str
    source_account: str
    region: str
    instance_id: str
    distribution: Distribution
    source_server_id: str | None = None
    mgn_job_id: str | None = None
    launch_type: str | None = None
    stage: Stage = Stage.CREATE_IMAGE
    status: Status = Status.RUNNING
    version: int = 1
    token: str = ""
    source_image_id: str | None = None
    snapshot_ids: list[str] = field(default_factory=list)
    size_gib: int = 0  # the instance's EBS volumes: how long its image and copies are expected to take
    image_started_at: float | None = None  # when CreateImage was called
    completed: list[str] = field(default_factory=list)  # side effects done ("share:snap-1"): a retried stage resumes
    copies: dict[str, TargetCopy] = field(default_factory=dict)
    attempt: int = 0  # consecutive retries of the current stage (backoff grows with it)
    polls: int = 0  # looks taken in the current wait (for the record: the poll plan counts time, not looks)
    reason: Reason | None = None
    last_error: ErrorRecord | None = None
    history: list[Transition] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    next_wake_at: float | None = None
    awaited_image_id: str | None = None  # the image whose state change wakes this job (GSI)
    retries: int = 0  # operator retries (automation/operations.py)
    copy_attempts_granted: int = 0  # extra CopyImage attempts per target, granted by an operator's retry
    announce_pending: bool = False  # terminal, and its events not yet put (service.py: the announcement)
    needs_reencrypt: bool = False  # a volume is under aws/ebs: its AMI is re-encrypted before it is shared
    reencrypted_image_id: str | None = None  # the intermediate: shared and copied, removed once the copies are made
    reencrypted_snapshot_ids: list[str] = field(default_factory=list)

    @staticmethod
    def make_id(instance_id: str, distribution: Distribution) -> str:
        return f"{instance_id}-{distribution.fingerprint()}"

    @property
    def image_name(self) -> str:
        """Deterministic, so a re-run adopts the AMI it made instead of making a second one.
        AMI names are 3-128 chars of [A-Za-z0-9()[] ./'@_-]; the job ID fits."""
        return f"ami-distributor-{self.job_id}"

    @property
    def provenance_tags(self) -> dict[str, str]:
        tags = {"ami-distributor:job-id": self.job_id, "ami-distributor:wave": self.wave,
                "ami-distributor:instance-id": self.instance_id}
        if self.source_server_id:
            tags["ami-distributor:source-server-id"] = self.source_server_id
        if self.source_image_id:
            tags["ami-distributor:source-image-id"] = self.source_image_id
        return tags

    @property
    def shared_image_id(self) -> str | None:
        """The AMI the targets get: the re-encrypted intermediate when there is one, else the source AMI."""
        return self.reencrypted_image_id or self.source_image_id

    @property
    def shared_snapshot_ids(self) -> list[str]:
        return self.reencrypted_snapshot_ids if self.reencrypted_image_id else self.snapshot_ids

    def copy_for(self, target: Target) -> TargetCopy:
        return self.copies.setdefault(target.key, TargetCopy(target.account_id, target.region))

    def client_token(self, target: Target) -> str:
        """CopyImage idempotency: the same (job, target, attempt) never makes a second copy."""
        attempt = self.copy_for(target).attempts
        return hashlib.sha256(f"{self.job_id}|{target.key}|{attempt}".encode()).hexdigest()[:64]

    # transitions: every change of stage or status goes through these, so history is complete
    def move_to(self, stage: Stage, now: float, note: str = "") -> None:
        self.stage = stage
        self.attempt = 0
        self.polls = 0
        self.next_wake_at = None  # a new stage starts now; the step that moved it says when to look next
        self.history.append(Transition(stage.value, self.status.value, now, note))

    def finish(self, now: float) -> None:
        self.status = Status.DONE
        self.stage = Stage.DONE
        self.awaited_image_id = None
        self.history.append(Transition(Stage.DONE.value, Status.DONE.value, now))

    def fail(self, reason: Reason, code: str, message: str, now: float) -> None:
        self.status = Status.FAILED
        self.reason = reason
        self.last_error = ErrorRecord(code, message, self.stage.value, now)
        self.awaited_image_id = None
        self.history.append(Transition(self.stage.value, Status.FAILED.value, now, f"{reason.value}: {code}"))

    def cancel(self, now: float, note: str = "") -> None:
        self.status = Status.CANCELLED
        self.awaited_image_id = None
        self.history.append(Transition(self.stage.value, Status.CANCELLED.value, now, note))

    def note_error(self, code: str, message: str, now: float) -> None:
        self.last_error = ErrorRecord(code, message, self.stage.value, now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        values = dict(data)
        spec = values["distribution"]
        values["distribution"] = Distribution(
            targets=tuple(Target.from_dict(t) for t in spec["targets"]),
            organization_arns=tuple(spec.get("organization_arns", ())),
            organizational_unit_arns=tuple(spec.get("organizational_unit_arns", ())),
            cleanup=Cleanup(**spec.get("cleanup", {})),
            reencrypt_key_id=spec.get("reencrypt_key_id"),
        )
        values["stage"] = Stage(values["stage"])
        values["status"] = Status(values["status"])
        values["reason"] = Reason(values["reason"]) if values.get("reason") else None
        values["copies"] = {k: TargetCopy(**v) for k, v in values.get("copies", {}).items()}
        values["last_error"] = ErrorRecord(**values["last_error"]) if values.get("last_error") else None
        values["history"] = [Transition(**t) for t in values.get("history", [])]
        return cls(**values)
