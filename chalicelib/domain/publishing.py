"""What a finished copy is published as (SSM parameter, tags) and what a job or wave announces on EventBridge.

Pure: names, tags and event details from a job. The adapters put them; service.py decides when.

The events' contract, for the pipelines that consume them:
- `AMI Distribution Job Completed` / `AMI Distribution Job Failed`: one per job reaching DONE / FAILED;
  `AMI Distribution Wave Completed`: once every job of a wave is terminal (DONE, FAILED or CANCELLED).
  Source `ami-distributor`, on the stage's bus (EVENT_BUS_NAME).
- Delivery is at least once. An event is put before the job records it as put (the same send-then-write
  rule as the job's messages), so a crash in between puts it again; two jobs ending together may both see
  their wave complete. `detail.eventId` is stable for the same fact: consumers dedupe on it (EventBridge's
  own `id` differs between two puts of the same event).
- A wave's report is where `detail.report` says: `python -m automation report --wave W --stage S`, or the
  jobs table's `by-wave` index queried with `wave = W`.
"""
from __future__ import annotations

import hashlib
import re
import string
from typing import Any

from .model import Job, Status, Target

EVENT_SOURCE = "ami-distributor"
JOB_COMPLETED = "AMI Distribution Job Completed"
JOB_FAILED = "AMI Distribution Job Failed"
WAVE_COMPLETED = "AMI Distribution Wave Completed"
WAVE_INDEX = "by-wave"

PARAMETER_FIELDS = ("wave", "source_server_id", "instance_id", "job_id", "account_id", "region")
# SSM: "Parameter names can consist of these symbols and letters only: a-zA-Z0-9_.-" and "/" as the path
# separator; a name can't be prefixed with "aws" or "ssm"; 1011 characters at most, 15 levels of hierarchy
# (Systems Manager User Guide, "Creating Parameter Store parameters").
PARAMETER_NAME = re.compile(r"^/[A-Za-z0-9_.\-/]{1,1010}$")
RESERVED_PREFIX = re.compile(r"^/?(aws|ssm)", re.IGNORECASE)
MAX_PARAMETER_LEVELS = 15
# An SSM tag value: letters, digits, spaces and _ . : / = + - @ (Systems Manager, "Tagging parameters")
_TAG_VALUE_UNSAFE = re.compile(r"[^\w .:/=+\-@]")


class PatternError(ValueError):
    pass


def check_parameter_pattern(pattern: str) -> None:
    """A pattern is valid when every name it can make is: its fields known, the rest a valid name."""
    fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    unknown = sorted(set(fields) - set(PARAMETER_FIELDS))
    if unknown:
        raise PatternError(f"unknown field(s) {unknown}: use {', '.join('{' + f + '}' for f in PARAMETER_FIELDS)}")
    sample = pattern.format(**{f: "x" for f in PARAMETER_FIELDS})
    _check_name(sample)


def _check_name(name: str) -> None:
    if not PARAMETER_NAME.match(name) or "//" in name or name.endswith("/"):
        raise PatternError(f"{name!r} is not a parameter path: '/' then a-z A-Z 0-9 _ . - and '/', 1011 at most")
    if RESERVED_PREFIX.match(name):
        raise PatternError(f"{name!r}: a parameter name may not begin with 'aws' or 'ssm'")
    if name.count("/") > MAX_PARAMETER_LEVELS:
        raise PatternError(f"{name!r} has more than {MAX_PARAMETER_LEVELS} levels")


def parameter_name(target: Target, job: Job) -> str:
    """The parameter for this job's copy in `target`. A job without an MGN source server (an operator's
    "Distribute Instances") is named by its instance in that field."""
    fields = {"wave": job.wave, "source_server_id": job.source_server_id or job.instance_id,
              "instance_id": job.instance_id, "job_id": job.job_id, "account_id": target.account_id,
              "region": target.region}
    name = (target.parameter_pattern or "").format(**{k: re.sub(r"[^A-Za-z0-9_.\-]", "-", v) for k, v in fields.items()})
    _check_name(name)
    return name


def copy_tags(job: Job, target: Target) -> dict[str, str]:
    """The copy's tags: the target's own, then the provenance tags (which a target's tags cannot override)."""
    return {**dict(target.tags), **job.provenance_tags, "ami-distributor:target": target.key}


def parameter_tags(job: Job, target: Target) -> dict[str, str]:
    return {k: _TAG_VALUE_UNSAFE.sub("-", v) for k, v in copy_tags(job, target).items()}


def client_token(job: Job, target: Target, what: str) -> str:
    """Idempotency for a publishing call that takes a ClientToken: one per (job, copy, call)."""
    copy = job.copy_for(target)
    return hashlib.sha256(f"{job.job_id}|{target.key}|{copy.image_id}|{what}".encode()).hexdigest()[:64]


# events ------------------------------------------------------------------------------------------
def _event_id(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def job_event(job: Job, report: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(detail-type, detail) for a job that ended DONE or FAILED."""
    detail_type = JOB_COMPLETED if job.status is Status.DONE else JOB_FAILED
    finished = job.history[-1].at if job.history else job.updated_at
    detail: dict[str, Any] = {
        # the same job ending the same way again (after an operator's retry) is a new fact: `retries` says so
        "eventId": _event_id("job", job.job_id, job.status.value, job.retries),
        "jobId": job.job_id, "wave": job.wave, "status": job.status.value,
        "sourceAccount": job.source_account, "region": job.region, "instanceId": job.instance_id,
        "sourceServerId": job.source_server_id, "mgnJobId": job.mgn_job_id, "sourceImageId": job.source_image_id,
        "copies": [{"accountId": c.account_id, "region": c.region, "imageId": c.image_id, "state": c.state,
                    "parameterName": c.parameter_name, "launchTemplateVersion": c.launch_template_version}
                   for c in job.copies.values()],
        "startedAt": job.created_at, "finishedAt": finished, "report": report,
    }
    if job.status is Status.FAILED:
        detail["reason"] = job.reason.value if job.reason else None
        detail["error"] = ({"code": job.last_error.code, "message": job.last_error.message,
                            "stage": job.last_error.stage} if job.last_error else None)
    return detail_type, detail


def wave_event(wave: str, counts: dict[str, int], report: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(detail-type, detail) for a wave whose every job is terminal. Its ID is the wave and its counts: the
    same wave seen complete twice is one event; a wave that grew (another operator event) is a new one."""
    counts = {status: counts.get(status, 0) for status in ("DONE", "FAILED", "CANCELLED")}
    return WAVE_COMPLETED, {
        "eventId": _event_id("wave", wave, *sorted(counts.items())),
        "wave": wave, "jobs": sum(counts.values()), "counts": counts, "report": report,
    }


def report_location(wave: str, table_name: str, stage_name: str | None) -> dict[str, str]:
    """Where a wave's report is: the operator command (when the stage is known) and the table query it runs."""
    location = {"jobsTable": table_name, "index": WAVE_INDEX, "keyCondition": f"wave = {wave}"}
    if stage_name:
        location["command"] = f"python -m automation report --wave {wave} --stage {stage_name}"
    return location
