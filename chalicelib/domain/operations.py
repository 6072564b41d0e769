"""What an operator may do to a job, and what it does: retry, cancel, and the verdict on a dead letter.

Pure rules on `Job`; the operator CLI (automation/operations.py) reads, applies one of these, and writes
with the service's protocol (bump version and token; send first, then write, conditional on the version read).
"""
from __future__ import annotations

from dataclasses import dataclass

from .model import Job, Reason, Stage, Status

ORDER = list(Stage)  # the stages in the order a job goes through them


class Refused(ValueError):
    """The operation does not apply to this job as it stands; the message says why and what to do."""


# A FAILED job resumes in the stage it failed in, except where that stage would only see the same
# failure again: a failed source AMI is re-made (its name is the idempotency key, so the failed one
# must be deregistered first or it is adopted again).
_RESUME_AT = {Reason.IMAGE_FAILED: Stage.CREATE_IMAGE}

# Replaying a dead letter cannot change these: the service drops every message of a terminal job.
# RETRIES_EXHAUSTED is AWS having had faults, which a replay after the outage is meant for.
REPLAY_FIXES = {Reason.RETRIES_EXHAUSTED}


def resume_stage(job: Job) -> Stage:
    if job.status is not Status.FAILED:
        return job.stage  # a CANCELLED job resumes where it was stopped
    earlier = _RESUME_AT.get(job.reason)
    return earlier if earlier and ORDER.index(earlier) < ORDER.index(job.stage) else job.stage


def stages_of(job: Job) -> list[Stage]:
    """The stages this job goes through, in order: re-encryption only for an AMI under aws/ebs, PUBLISH only
    when a target publishes."""
    skipped = set()
    if not job.needs_reencrypt:
        skipped |= {Stage.REENCRYPT, Stage.WAIT_REENCRYPT}
    if not any(t.publishes for t in job.distribution.copy_targets):
        skipped.add(Stage.PUBLISH)
    return [stage for stage in ORDER if stage not in skipped]


def first_stage(job: Job) -> Stage:
    return Stage(job.history[0].stage) if job.history else Stage.CREATE_IMAGE


def check_retry(job: Job, from_stage: Stage | None = None) -> Stage:
    """The stage a retry puts `job` back to, or `Refused`."""
    if job.status is Status.DONE:
        raise Refused(f"job {job.job_id} is DONE: nothing to retry")
    if job.status is Status.RUNNING:
        raise Refused(f"job {job.job_id} is in flight ({job.stage.value}, version {job.version}): "
                      f"cancel it first, or replay its dead letter if it has one")
    resume = resume_stage(job)
    if from_stage is None:
        return resume
    first = first_stage(job)
    path = stages_of(job)
    if (from_stage is Stage.DONE or from_stage not in path
            or not ORDER.index(first) <= ORDER.index(from_stage) <= ORDER.index(resume)):
        allowed = [s.value for s in ORDER[ORDER.index(first):ORDER.index(resume) + 1] if s in path]
        raise Refused(f"job {job.job_id} can be retried from {', '.join(allowed)}, not {from_stage.value}")
    if from_stage in (Stage.WAIT_IMAGE, Stage.SHARE, Stage.COPY) and not job.source_image_id:
        raise Refused(f"job {job.job_id} has no source AMI yet: retry it from {Stage.CREATE_IMAGE.value}")
    if from_stage is Stage.WAIT_COPY and not all(c.image_id for c in job.copies.values()):
        raise Refused(f"job {job.job_id} has not started every copy: retry it from {Stage.COPY.value}")
    return from_stage


def retry(job: Job, now: float, from_stage: Stage | None = None, by: str = "operator") -> Stage:
    """Put a FAILED (or CANCELLED) job back to work. The caller bumps version and token and enqueues it."""
    stage = check_retry(job, from_stage)
    if job.reason is Reason.COPY_FAILED:
        # each failed copy gets a fresh budget of attempts (the service counts from this grant)
        job.copy_attempts_granted = max((c.attempts + 1 for c in job.copies.values()), default=0)
    if stage is Stage.CREATE_IMAGE and job.reason is Reason.IMAGE_FAILED:
        job.source_image_id = None
    job.retries += 1
    job.status, job.reason = Status.RUNNING, None
    job.move_to(stage, now, f"retry {job.retries} by {by}")
    job.awaited_image_id = {Stage.WAIT_IMAGE: job.source_image_id,
                            Stage.WAIT_COPY: next((c.image_id for c in job.copies.values()
                                                   if c.state != "available"), None)}.get(stage)
    job.updated_at = now
    return stage


def check_cancel(job: Job) -> None:
    if job.status.terminal:
        hint = ": nothing is in flight" if job.status is Status.FAILED else ""
        raise Refused(f"job {job.job_id} is already {job.status.value}{hint}")


def cancel(job: Job, now: float, by: str = "operator") -> None:
    """CANCELLED: in-flight messages stop at their next step (the service drops messages of terminal
    jobs). Nothing is cleaned up: what the job made (AMI, shares, copies) stays, recorded on the job."""
    check_cancel(job)
    job.cancel(now, f"cancelled by {by}")
    job.updated_at = now


@dataclass(frozen=True)
class Verdict:
    action: str  # "move" (back to the jobs queue), "retry" (the job is retried, the letter dropped), "drop"
    why: str


def replay_verdict(job: Job | None, version: int, token: str) -> Verdict:
    """What replaying one dead letter (a message for `job` at `version`/`token`) should do."""
    if job is None:
        return Verdict("drop", "no such job")
    if job.status is Status.FAILED:
        if job.reason in REPLAY_FIXES:
            return Verdict("retry", f"job FAILED ({job.reason.value}): retried from {resume_stage(job).value}")
        reason = job.reason.value if job.reason else "unknown"
        return Verdict("drop", f"job FAILED ({reason}): replay cannot fix it; see `show`, then `retry`")
    if job.status.terminal:
        return Verdict("drop", f"job is {job.status.value}")
    if version == job.version and token == job.token:
        return Verdict("move", f"resumes at {job.stage.value}")
    if version > job.version:
        # sent by a step that died before its write: never current, its job still has its own message
        return Verdict("drop", f"orphan message for version {version}; the job is at {job.version}")
    return Verdict("drop", f"stale message (version {version}); the job is at {job.version}")


def stage_durations(job: Job, now: float) -> list[tuple[str, float, float]]:
    """(stage, entered at, seconds spent) per visit of a stage, from the job's history. A visit ends at the
    next transition; the last one runs to `now` while the job is RUNNING."""
    visits = []
    for index, transition in enumerate(job.history):
        if transition.status != Status.RUNNING.value:
            continue  # DONE / FAILED / CANCELLED end a visit; they are not one
        following = job.history[index + 1].at if index + 1 < len(job.history) else None
        end = following if following is not None else (now if job.status is Status.RUNNING else transition.at)
        visits.append((transition.stage, transition.at, max(0.0, end - transition.at)))
    return visits
