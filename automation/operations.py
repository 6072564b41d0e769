"""Operator commands (issue 4): status, show, report, dlq list / replay, retry, cancel.

Each reads and writes jobs through chalicelib's job store and queue, with the service's protocol: a
write bumps version and token and is conditional on the version read; a retry SENDS its message first
and WRITES second (as Advancer.handle does), so a crash between the two leaves only a stale orphan.
Bad input (unknown stage, job or wave, a queue that is not the stage's DLQ, a move task already
running, a job the operation does not apply to) exits 2 before anything is changed.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import sys
import time
import uuid
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from automation.operator_aws import DeadLetter, NotADeadLetterQueue, StageConnection, connect
from automation.stages import UnknownStage
from chalicelib.adapters.job_store import StaleJob
from chalicelib.config import ConfigError
from chalicelib.domain import operations as rules
from chalicelib.domain.errors import AwsError
from chalicelib.domain.model import Job, Stage, Status
from chalicelib.events import InvalidEvent, JobMessage, parse_job_message
from chalicelib.service import new_token

SEND_CHUNK = 10  # one SendMessageBatch
CANCEL_TRIES = 5  # a running job moves on while we cancel it: read again and retry the write
FAILED_SHOWN = 20


class ReportFormat(str, Enum):
    csv = "csv"
    json = "json"
    html = "html"


# ---- plumbing -------------------------------------------------------------------------------------
StageOption = typer.Option(..., "--stage", help="Stage in .chalice/config.json (its table and queues)")
EndpointOption = typer.Option(None, "--endpoint-url", help="A sandbox; otherwise your AWS credentials")
JsonOption = typer.Option(False, "--json", help="Print one JSON object as the last line")


class Out:
    """Human output on stdout, or on stderr with --json, so that stdout's last line is the JSON object."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output
        self.console = Console(stderr=json_output, highlight=False)

    def print(self, *things: Any) -> None:
        self.console.print(*things)

    def result(self, value: dict) -> None:
        if self.json_output:
            sys.stdout.write(json.dumps(value, sort_keys=True, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def guarded(stage: str, endpoint_url: str | None) -> Iterator[StageConnection]:
    """The stage's connection; a bad stage is bad input (2), an AWS error is a failure (1)."""
    try:
        connection = connect(stage, endpoint_url)
    except (UnknownStage, ConfigError) as error:
        fail(str(error))
    try:
        yield connection
    except AwsError as error:
        fail(f"AWS refused: {error}", 1)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (drawn only on a terminal, cleared when done)."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def load_jobs(connection: StageConnection, job_ids: list[str]) -> list[Job]:
    jobs, unknown = [], []
    for job_id in dict.fromkeys(job_ids):
        job = connection.store.get(job_id)
        (jobs.append(job) if job else unknown.append(job_id))
    if unknown:
        fail(f"no such job in stage {connection.name}: {', '.join(unknown)}")
    return jobs


def require_wave(connection: StageConnection, wave: str) -> None:
    if next(connection.store.summaries(wave), None) is None:
        fail(f"wave {wave!r} has no jobs in stage {connection.name}")


def iso(at: float | None) -> str:
    from automation.operator_report import iso as to_iso

    return to_iso(at)


def operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a minimal container: still say who did it, as far as known
        return "operator"


def waiting_on(job: Job) -> str:
    if job.stage is Stage.WAIT_LAUNCH:
        return f"MGN post-launch actions of {job.mgn_job_id}"
    if job.stage is Stage.WAIT_IMAGE:
        return f"source AMI {job.source_image_id} to be available"
    if job.stage is Stage.WAIT_COPY:
        pending = [f"{c.image_id} ({c.key})" for c in job.copies.values() if c.state != "available"]
        return "copies " + ", ".join(pending) if pending else "its copies"
    return f"its {job.stage.value} step (queued)"


# ---- status / show / report -----------------------------------------------------------------------
def status(
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    wave: Optional[str] = typer.Option(None, help="The wave; otherwise every active (RUNNING) job"),
    status_filter: Optional[str] = typer.Option(None, "--status", help="Only jobs of this status"),
    json_output: bool = JsonOption,
) -> None:
    """Counts per stage and status, the oldest job still waiting and on what, the failed ones and why."""
    if status_filter is not None and status_filter.upper() not in Status.__members__:
        fail(f"--status {status_filter!r}: use one of {', '.join(Status.__members__)}")
    wanted = status_filter.upper() if status_filter else (None if wave else Status.RUNNING.value)
    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        counts: Counter[tuple[str, str]] = Counter()
        oldest, failed_ids = None, []
        with progress("reading jobs") as step:
            for summary in connection.store.summaries(wave, wanted):
                counts[(summary.status, summary.stage)] += 1
                # a wave is read oldest first; a scan carries created_at instead
                if summary.status == Status.RUNNING.value and (oldest is None or (
                        summary.created_at is not None and summary.created_at < oldest.created_at)):
                    oldest = summary
                if summary.status == Status.FAILED.value:
                    failed_ids.append(summary.job_id)
                step(1)
        if not counts and wave is not None:
            require_wave(connection, wave)  # exits when the wave has no jobs at all
        oldest_job = connection.store.get(oldest.job_id) if oldest else None
        failed = sorted(connection.store.get_many(failed_ids), key=lambda j: j.created_at)
    by_status: Counter[str] = Counter()
    nested: dict[str, dict[str, int]] = {}
    for (state, stage_name), n in counts.items():
        by_status[state] += n
        nested.setdefault(state, {})[stage_name] = n
    result = {
        "stage": stage, "wave": wave, "status_filter": wanted, "total": sum(counts.values()),
        "by_status": dict(by_status), "counts": nested,
        "oldest_waiting": None if oldest_job is None else {
            "job_id": oldest_job.job_id, "instance_id": oldest_job.instance_id, "stage": oldest_job.stage.value,
            "waiting_on": waiting_on(oldest_job), "created_at": iso(oldest_job.created_at),
            "since": iso(oldest_job.history[-1].at if oldest_job.history else oldest_job.created_at),
            "next_wake_at": iso(oldest_job.next_wake_at),
            "last_error": oldest_job.last_error.code if oldest_job.last_error else None},
        "failed": [{"job_id": j.job_id, "instance_id": j.instance_id, "stage": j.stage.value,
                    "reason": j.reason.value if j.reason else None,
                    "error": f"{j.last_error.code}: {j.last_error.message}" if j.last_error else None}
                   for j in failed],
    }
    _print_status(out, result)
    out.result(result)


def _print_status(out: Out, result: dict) -> None:
    scope = f"wave {result['wave']}" if result["wave"] else "active jobs"
    out.print(f"[bold]{scope}[/] in stage {result['stage']}: {result['total']} jobs "
              + ", ".join(f"{n} {s}" for s, n in sorted(result["by_status"].items())))
    statuses = [s.value for s in Status if s.value in result["by_status"]]
    if statuses:
        table = Table("stage", *statuses)
        for stage in Stage:
            cells = [result["counts"].get(s, {}).get(stage.value, 0) for s in statuses]
            if any(cells):
                table.add_row(stage.value, *(str(c) if c else "" for c in cells))
        out.print(table)
    oldest = result["oldest_waiting"]
    if oldest:
        out.print(f"oldest waiting: {oldest['job_id']} ({oldest['instance_id']}), created {oldest['created_at']}, "
                  f"in {oldest['stage']} since {oldest['since']}, waiting on {oldest['waiting_on']}")
    if result["failed"]:
        table = Table("failed job", "instance", "stage", "reason", "error", title="failed")
        for row in result["failed"][:FAILED_SHOWN]:
            table.add_row(row["job_id"], row["instance_id"], row["stage"], row["reason"] or "", row["error"] or "")
        out.print(table)
        if len(result["failed"]) > FAILED_SHOWN:
            out.print(f"... and {len(result['failed']) - FAILED_SHOWN} more (--json lists them all)")


def show(
    job_id: str = typer.Argument(..., help="The job's ID"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """One job's record and its history of transitions, with the time spent in each stage."""
    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        [job] = load_jobs(connection, [job_id])
    now = time.time()
    visits = rules.stage_durations(job, now)
    record = Table(show_header=False, box=None)
    for label, value in (("job", job.job_id), ("wave", job.wave), ("instance", job.instance_id),
                         ("server", job.source_server_id or ""), ("status", job.status.value),
                         ("stage", job.stage.value), ("reason", job.reason.value if job.reason else ""),
                         ("version", str(job.version)), ("retries", str(job.retries)),
                         ("source AMI", job.source_image_id or ""),
                         *((f"copy {k}", f"{c.image_id or ''} {c.state or ''}") for k, c in job.copies.items()),
                         ("last error", f"{job.last_error.code}: {job.last_error.message}" if job.last_error else "")):
        record.add_row(label, value)
    out.print(record)
    history = Table("at", "stage", "status", "note", "seconds in stage", title="history")
    durations = {(stage_name, entered): seconds for stage_name, entered, seconds in visits}
    for transition in job.history:
        seconds = durations.get((transition.stage, transition.at)) if transition.status == "RUNNING" else None
        history.add_row(iso(transition.at), transition.stage, transition.status, transition.note,
                        f"{seconds:.0f}" if seconds is not None else "")
    out.print(history)
    out.result({"job": job.to_dict(), "stages": [{"stage": s, "entered": iso(at), "seconds": round(d, 3)}
                                                  for s, at, d in visits]})


def report(
    wave: str = typer.Option(..., help="The wave"),
    output_format: ReportFormat = typer.Option(..., "--format", help="csv, json or html"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write here instead of standard output"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """A per-server report of a wave: server, instance, source AMI, each target's copy and state, times, reason."""
    from automation import operator_report

    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        jobs = []
        with progress(f"reading wave {wave}") as step:
            for job in connection.store.jobs_of_wave(wave):
                jobs.append(job)
                step(1)
        if not jobs:
            fail(f"wave {wave!r} has no jobs in stage {stage}")
    text = {ReportFormat.csv: lambda: operator_report.to_csv(jobs),
            ReportFormat.json: lambda: operator_report.to_json(wave, jobs),
            ReportFormat.html: lambda: operator_report.to_html(wave, stage, jobs, time.time())}[output_format]()
    if out_file is not None:
        out_file.write_text(text)
        out.print(f"wrote {output_format.value} report of {len(jobs)} servers to {out_file}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    out.result({"wave": wave, "format": output_format.value, "jobs": len(jobs),
                "out": str(out_file) if out_file else None})


# ---- dead letters ---------------------------------------------------------------------------------
def _letter_view(letter: DeadLetter, connection: StageConnection, cache: dict[str, Job | None]) -> dict:
    try:
        message: JobMessage | None = parse_job_message(letter.body)
    except InvalidEvent as error:
        message, malformed = None, str(error)
    view = {"message_id": letter.message_id, "receive_count": letter.receive_count, "sent_at": iso(letter.sent_at)}
    if message is None:
        view.update(job_id=None, verdict="drop", why=f"malformed message: {malformed}", body=letter.body[:200])
        return view
    if message.job_id not in cache:
        cache[message.job_id] = connection.store.get(message.job_id)
    job = cache[message.job_id]
    verdict = rules.replay_verdict(job, message.version, message.token)
    view.update(job_id=message.job_id, version=message.version, verdict=verdict.action, why=verdict.why,
                job_status=job.status.value if job else None, job_stage=job.stage.value if job else None,
                last_error=f"{job.last_error.code}: {job.last_error.message}" if job and job.last_error else None)
    return view


def dlq_list(
    limit: Optional[int] = typer.Option(None, min=1, help="At most this many messages"),
    dlq_url: Optional[str] = typer.Option(None, help="The DLQ's URL (default: the jobs queue's redrive target)"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """The dead letters, with their jobs, receive counts and the jobs' last errors; nothing is consumed."""
    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        try:
            dlq = connection.dead_letters(dlq_url)
        except NotADeadLetterQueue as error:
            fail(str(error))
        held: list[DeadLetter] = []
        views, cache = [], {}
        try:
            with progress("reading the DLQ") as step:
                for letter in dlq.hold(limit):
                    held.append(letter)
                    views.append(_letter_view(letter, connection, cache))
                    step(1)
        finally:
            dlq.release(held)  # a look, not a receive: every message is visible again at once
    table = Table("message", "job", "receives", "sent", "job status", "stage", "last error", "replay would",
                  title=f"{len(views)} dead letters in {dlq.url.rsplit('/', 1)[-1]}")
    for view in views:
        table.add_row(view["message_id"][:8], view.get("job_id") or "?", str(view["receive_count"]), view["sent_at"],
                      view.get("job_status") or "", view.get("job_stage") or "", view.get("last_error") or "",
                      f"{view['verdict']}: {view['why']}")
    out.print(table)
    out.result({"dlq": dlq.url, "count": len(views), "messages": views})


def dlq_replay(
    job_ids: Optional[list[str]] = typer.Option(None, "--job-id", help="Only this job's dead letters (repeatable)"),
    max_messages: Optional[int] = typer.Option(None, "--max", min=1, help="Handle at most this many dead letters"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would happen; change nothing"),
    wait: bool = typer.Option(False, "--wait", help="Without filters: follow the move task until it ends"),
    dlq_url: Optional[str] = typer.Option(None, help="The DLQ's URL (default: the jobs queue's redrive target)"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """Move dead letters back to the jobs queue: all with an SQS move task, or only the matching ones
    (receive, send, then delete). A job's letter resumes it at its recorded stage; letters of DONE,
    CANCELLED or (unfixably) FAILED jobs, stale and orphan ones are reported and dropped."""
    out = Out(json_output)
    filtered = bool(job_ids) or max_messages is not None
    with guarded(stage, endpoint_url) as connection:
        try:
            dlq = connection.dead_letters(dlq_url)
        except NotADeadLetterQueue as error:
            fail(str(error))
        if job_ids:
            load_jobs(connection, job_ids)  # an unknown job is bad input: exits before anything moves
        task = dlq.latest_task()
        if task and task.status in ("RUNNING", "CANCELLING"):
            fail(f"a move task is already {task.status} on {dlq.arn} ({task.moved} of {task.to_move} moved); "
                 f"wait for it (dlq replay --wait cannot join it) or cancel it in the SQS console")
        outcome = _replay(connection, dlq, set(job_ids or ()), max_messages, filtered, dry_run)
        if not dry_run and not filtered and outcome["to_move"]:
            outcome["task"] = _move_all(connection, dlq, wait)
    _print_replay(out, outcome, dry_run)
    out.result(outcome)
    raise typer.Exit(1 if outcome["lost_race"] else 0)


def _replay(connection: StageConnection, dlq, wanted: set[str], limit: int | None, filtered: bool,
            dry_run: bool, now: float | None = None, who: str | None = None) -> dict:
    outcome: dict[str, Any] = {"dry_run": dry_run, "moved": [], "retried": [], "dropped": [], "lost_race": [],
                               "to_move": [], "left": 0, "task": None}
    held, cache, handled = [], {}, 0
    try:
        with progress("replaying dead letters") as step:
            for letter in dlq.hold():
                view = _letter_view(letter, connection, cache)
                selected = (not wanted or view.get("job_id") in wanted) and (limit is None or handled < limit)
                if not selected:
                    held.append(letter)
                    outcome["left"] += 1
                    continue
                handled += 1
                step(1)
                entry = {k: view.get(k) for k in ("message_id", "job_id", "version", "why")}
                if dry_run:
                    held.append(letter)
                    outcome[{"move": "to_move", "retry": "retried", "drop": "dropped"}[view["verdict"]]].append(entry)
                elif view["verdict"] == "drop":
                    dlq.delete(letter)
                    outcome["dropped"].append(entry)
                elif view["verdict"] == "retry":
                    job = connection.store.get(view["job_id"])
                    if job is not None and _retry_and_enqueue(connection, [job], None, now=now, who=who) == []:
                        dlq.delete(letter)
                        outcome["retried"].append(entry)
                    else:
                        held.append(letter)
                        outcome["lost_race"].append(entry)
                elif filtered:
                    message = parse_job_message(letter.body)
                    connection.queue.send([(message, 0)])
                    dlq.delete(letter)  # only once the send succeeded: a crash in between duplicates, never loses
                    outcome["moved"].append(entry)
                else:
                    held.append(letter)  # the move task takes it
                    outcome["to_move"].append(entry)
    finally:
        dlq.release(held)
    return outcome


def _move_all(connection: StageConnection, dlq, wait: bool) -> dict:
    handle = dlq.start_move(connection.settings.queue_arn)
    task = dlq.latest_task()
    if wait and task is not None:
        with progress("move task", total=task.to_move or None) as step:
            done = 0
            while task.status in ("RUNNING", "CANCELLING"):
                time.sleep(1)
                task = dlq.latest_task()
                step(task.moved - done)
                done = task.moved
    return {"handle": handle, "status": task.status if task else None, "moved": task.moved if task else 0,
            "to_move": task.to_move if task else 0, "failure": task.failure if task else None}


def _print_replay(out: Out, outcome: dict, dry_run: bool) -> None:
    prefix = "(dry run) would be " if dry_run else ""
    for key, label in (("moved", "moved back"), ("to_move", "moved by the task"), ("retried", "retried"),
                       ("dropped", "dropped"), ("lost_race", "left (its job changed meanwhile)")):
        for entry in outcome[key]:
            out.print(f"{prefix}{label}: {entry['job_id'] or '?'} (message {entry['message_id'][:8]}): {entry['why']}")
    task = outcome.get("task")
    if task:
        out.print(f"move task {task['status']}: {task['moved']} of {task['to_move']} moved")
    if outcome["left"]:
        out.print(f"{outcome['left']} dead letters not selected, left in place")


# ---- retry / cancel -------------------------------------------------------------------------------
def _retry_and_enqueue(connection: StageConnection, jobs: list[Job], from_stage: Stage | None,
                       step: Callable[[int], None] = lambda n: None, now: float | None = None,
                       who: str | None = None) -> list[str]:
    """Retry each job: bump version and token, SEND its message, then WRITE it (Advancer.handle's order).
    Returns the jobs that changed under us (their message is an orphan that will be stale).
    `now` and `who`: the simulator's virtual clock and operator (the CLI: the wall clock and the user)."""
    lost = []
    now, who = (time.time() if now is None else now), (who or operator())
    for start in range(0, len(jobs), SEND_CHUNK):
        chunk = jobs[start:start + SEND_CHUNK]
        read_versions = [job.version for job in chunk]
        for job in chunk:
            rules.retry(job, now, from_stage, by=who)
            job.version += 1
            job.token = new_token(job.job_id, job.version, "operator-retry", uuid.uuid4().hex)
        connection.queue.send([(JobMessage(job.job_id, job.version, job.token), 0) for job in chunk])
        for job, read_version in zip(chunk, read_versions):
            try:
                connection.store.save(job, read_version)
            except StaleJob:
                lost.append(job.job_id)
            step(1)
    return lost


def retry(
    job_ids: Optional[list[str]] = typer.Argument(None, help="Jobs to retry"),
    wave: Optional[str] = typer.Option(None, help="With --failed: every FAILED job of the wave"),
    failed: bool = typer.Option(False, "--failed", help="With --wave: its FAILED jobs"),
    from_stage: Optional[Stage] = typer.Option(None, case_sensitive=False,
                                               help="Resume here (the failed stage or an earlier one)"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """Put FAILED (or CANCELLED) jobs back to the stage they stopped in, or an earlier one, and enqueue them."""
    if bool(job_ids) == bool(wave):
        fail("name jobs, or --wave W --failed (not both)")
    if wave and not failed:
        fail("--wave needs --failed: retry puts a wave's FAILED jobs back, nothing else")
    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        if wave:
            require_wave(connection, wave)
            jobs = list(connection.store.jobs_with_status(wave, Status.FAILED.value))
        else:
            jobs = load_jobs(connection, job_ids)
        refused = []
        for job in jobs:
            try:
                rules.check_retry(job, from_stage)
            except rules.Refused as error:
                refused.append(str(error))
        if refused:
            fail("nothing retried:\n  " + "\n  ".join(refused))
        resumes = {job.job_id: rules.check_retry(job, from_stage).value for job in jobs}
        with progress("retrying", total=len(jobs)) as step:
            lost = _retry_and_enqueue(connection, jobs, from_stage, step)
    retried = [{"job_id": job.job_id, "stage": resumes[job.job_id], "retries": job.retries}
               for job in jobs if job.job_id not in lost]
    for row in retried:
        out.print(f"retried {row['job_id']}: resumes at {row['stage']} (retry {row['retries']})")
    for job_id in lost:
        out.print(f"not retried {job_id}: it changed while we wrote; look at it again")
    if not jobs:
        out.print(f"wave {wave} has no FAILED jobs: nothing to retry")
    out.result({"retried": retried, "lost_race": lost})
    raise typer.Exit(1 if lost else 0)


def cancel(
    job_ids: Optional[list[str]] = typer.Argument(None, help="Jobs to cancel"),
    wave: Optional[str] = typer.Option(None, help="Every RUNNING job of the wave"),
    stage: str = StageOption,
    endpoint_url: Optional[str] = EndpointOption,
    json_output: bool = JsonOption,
) -> None:
    """Mark jobs CANCELLED: their in-flight messages stop at the next step. Nothing is cleaned up."""
    if bool(job_ids) == bool(wave):
        fail("name jobs, or --wave W (not both)")
    out = Out(json_output)
    with guarded(stage, endpoint_url) as connection:
        if wave:
            require_wave(connection, wave)
            ids = [s.job_id for s in connection.store.summaries(wave, Status.RUNNING.value)]
        else:
            refused = []
            for job in load_jobs(connection, job_ids):
                try:
                    rules.check_cancel(job)
                except rules.Refused as error:
                    refused.append(str(error))
            if refused:
                fail("nothing cancelled:\n  " + "\n  ".join(refused))
            ids = list(dict.fromkeys(job_ids))
        cancelled, skipped, who = [], [], operator()
        with progress("cancelling", total=len(ids)) as step:
            for job_id in ids:
                outcome = _cancel_one(connection, job_id, who)
                (cancelled if outcome is None else skipped).append(
                    {"job_id": job_id} if outcome is None else {"job_id": job_id, "why": outcome})
                step(1)
    for row in cancelled:
        out.print(f"cancelled {row['job_id']}")
    for row in skipped:
        out.print(f"not cancelled {row['job_id']}: {row['why']}")
    if not ids:
        out.print(f"wave {wave} has no RUNNING jobs: nothing to cancel")
    out.result({"cancelled": cancelled, "skipped": skipped})


def _cancel_one(connection: StageConnection, job_id: str, who: str) -> str | None:
    """Cancel with the optimistic lock; a running job may move on meanwhile, so read again and retry."""
    for _ in range(CANCEL_TRIES):
        job = connection.store.get(job_id)
        try:
            rules.check_cancel(job)
        except rules.Refused as error:
            return str(error)  # it finished (or failed) while we were at it
        read_version = job.version
        rules.cancel(job, time.time(), by=who)
        job.version += 1
        job.token = new_token(job.job_id, job.version, "operator-cancel", uuid.uuid4().hex)
        # its wave may end with it: its message lets the consumer say so (Advancer._announce, when the stage
        # puts events). Sent before written, like every message: if the write loses, the message is stale.
        job.announce_pending = True
        connection.queue.send([(JobMessage(job.job_id, job.version, job.token), 0)])
        try:
            connection.store.save(job, read_version)
            return None
        except StaleJob:
            continue
    return f"it kept changing ({CANCEL_TRIES} tries); run cancel again"


def register(app: typer.Typer) -> None:
    for command in (status, show, report, retry, cancel):
        app.command()(command)
    dlq = typer.Typer(no_args_is_help=True, help="The jobs queue's dead letters: list and replay")
    dlq.command("list")(dlq_list)
    dlq.command("replay")(dlq_replay)
    app.add_typer(dlq, name="dlq")
