"""The demo wave: a cutover of N servers through the real handlers, on the sandbox over loopback HTTP.

AWS's modelled durations are scaled down (DEMO_TIME_SCALE) so that hours of imaging and copying
take seconds; everything else (SQS delays, visibility, polling, events) runs in real time.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from automation.local_lambda import LocalLambda
from automation.provision import provision, seed_servers
from automation.sandbox import DEFAULT_REGION, RealClock, Sandbox, SandboxSettings
from automation.sandbox.settings import DurationModel
from automation.stages import function_environment
from automation.wave import Wave

DEMO_TIME_SCALE = 0.001  # a 100 GiB server: ~12 min of CreateImage becomes ~0.7 s, a ~25 min copy ~1.5 s
STAGES = ["WAIT_LAUNCH", "CREATE_IMAGE", "WAIT_IMAGE", "REENCRYPT", "WAIT_REENCRYPT", "SHARE", "COPY", "WAIT_COPY", "PUBLISH", "CLEANUP"]
CONTROL_PLANE = ("ec2", "sts", "kms", "mgn", "ssm", "events")
DOWNSTREAM_QUEUE = "ami-distributor-demo-downstream"


@dataclass
class DemoResult:
    summary: dict
    ok: bool


def demo_settings() -> SandboxSettings:
    return SandboxSettings(durations=DurationModel(time_scale=DEMO_TIME_SCALE))


def demo_environment() -> dict[str, str]:
    """The `local` stage with publishing and events on: each copy is named in an SSM parameter of its target
    (the default pattern), and every job and the wave are announced on the source account's default bus."""
    env = function_environment("local")
    distribution = json.loads(env["DISTRIBUTION"])
    for target in distribution["targets"]:
        target["publish"] = True
    env.update(DISTRIBUTION=json.dumps(distribution), EVENT_BUS_NAME="default", STAGE_NAME="local")
    return {**env, **demo_settings().durations.handler_expectations()}


def subscribe_downstream(sandbox: Sandbox, region: str = DEFAULT_REGION) -> str:
    """A downstream pipeline's queue for the distributor's events (what the demo reports it received)."""
    sqs, events = sandbox.client("sqs", region=region), sandbox.client("events", region=region)
    url = sqs.create_queue(QueueName=DOWNSTREAM_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=DOWNSTREAM_QUEUE, EventPattern=json.dumps(
        {"source": ["ami-distributor"], "detail-type": [{"prefix": "AMI Distribution "}]}))
    events.put_targets(Rule=DOWNSTREAM_QUEUE, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def downstream_events(sandbox: Sandbox, url: str, region: str = DEFAULT_REGION) -> list[dict]:
    """The events the downstream queue received (taken off it)."""
    sqs, found = sandbox.client("sqs", region=region), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _summarised(event: dict) -> dict:
    return {"detail-type": event["detail-type"], **{k: event["detail"].get(k) for k in (
        "eventId", "jobId", "wave", "status", "reason", "counts", "report") if k in event["detail"]}}


def run_demo(servers: int, endpoint_url: str | None, console: Console, live: bool) -> DemoResult:
    started = time.monotonic()
    own_sandbox = endpoint_url is None
    sandbox = (Sandbox(clock=RealClock(), settings=demo_settings(), seed=1).start("http") if own_sandbox
               else Sandbox.remote(endpoint_url))
    try:
        stage = provision(sandbox, demo_environment())
        downstream = subscribe_downstream(sandbox, stage.region)
        wave = Wave(sandbox, stage, LocalLambda(sandbox, stage))
        if own_sandbox:
            source_servers = seed_servers(sandbox, servers, stage.region, stage.source_key_arn)
        else:  # the remote sandbox was started with `sandbox --servers N`
            mgn = sandbox.client("mgn", region=stage.region)
            found = mgn.describe_source_servers(filters={"lifeCycleStates": ["READY_FOR_CUTOVER"]})["items"]
            source_servers = [s["sourceServerID"] for s in found][:servers]
        mgn = sandbox.client("mgn", region=stage.region)
        mgn_job = mgn.start_cutover(sourceServerIDs=source_servers)["job"]["jobID"]
        console.print(f"sandbox {sandbox.endpoint_url}: cutover {mgn_job} of {len(source_servers)} servers")
        _run_with_progress(wave, mgn_job, len(source_servers), console, live)
        jobs = wave.jobs()
        summary = _summary(wave, jobs, len(source_servers), sandbox, time.monotonic() - started)
        summary["events"] = [_summarised(e) for e in downstream_events(sandbox, downstream, stage.region)]
        announced = sum(e["detail-type"] == "AMI Distribution Wave Completed" for e in summary["events"])
        return DemoResult(summary, summary["done"] == len(source_servers) == len(jobs) and announced >= 1)
    finally:
        if own_sandbox:
            sandbox.stop()


def _run_with_progress(wave: Wave, mgn_job: str, servers: int, console: Console, live: bool) -> None:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            wave.run(max_real_s=600, settled=lambda: wave.mgn_job_finished(mgn_job))
        except BaseException as error:  # reported by the main thread
            failure.append(error)

    worker = threading.Thread(target=run, name="local-lambda")
    worker.start()
    if live:
        with Live(_progress_table(wave, servers), console=console, refresh_per_second=4) as display:
            while worker.is_alive():
                worker.join(timeout=0.5)
                display.update(_progress_table(wave, servers))
    else:  # not a terminal: a line each time the picture changes
        shown = None
        while worker.is_alive():
            worker.join(timeout=1.0)
            line = _progress_line(wave, servers)
            if line != shown:
                console.print(line)
                shown = line
    if failure:
        raise failure[0]


def _progress_counts(wave: Wave, servers: int) -> dict[str, int]:
    jobs = wave.jobs()
    by_stage = Counter(j["stage"] for j in jobs if j["status"] == "RUNNING")
    by_status = Counter(j["status"] for j in jobs)
    return {"launching": servers - len(jobs), **{s: by_stage.get(s, 0) for s in STAGES},
            "DONE": by_status.get("DONE", 0), "FAILED": by_status.get("FAILED", 0)}


def _progress_table(wave: Wave, servers: int) -> Table:
    counts = _progress_counts(wave, servers)
    table = Table(title=f"demo wave: {servers} servers")
    for column in counts:
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in counts.values()))
    return table


def _progress_line(wave: Wave, servers: int) -> str:
    return "  ".join(f"{stage} {n}" for stage, n in _progress_counts(wave, servers).items() if n)


def _summary(wave: Wave, jobs: list[dict], servers: int, sandbox: Sandbox, wall_s: float) -> dict:
    calls = sandbox.service_call_counts()
    return {
        "servers": servers,
        "done": sum(j["status"] == "DONE" for j in jobs),
        "failed": sum(j["status"] == "FAILED" for j in jobs),
        "cancelled": sum(j["status"] == "CANCELLED" for j in jobs),
        "jobs": [{
            "job_id": j["job_id"], "wave": j["wave"], "mgn_job_id": j["mgn_job_id"],
            "source_server_id": j["source_server_id"], "instance_id": j["instance_id"],
            "source_image_id": j["source_image_id"], "status": j["status"], "reason": j["reason"],
            "targets": [{"account": c["account_id"], "region": c["region"], "image_id": c["image_id"],
                         "state": c["state"], "parameter": c.get("parameter_name")} for c in j["copies"].values()],
        } for j in jobs],
        "api_calls": dict(sorted((k, v) for k, v in calls.items() if k.split(":")[0] in CONTROL_PLANE)),
        "sqs_requests": sum(v for k, v in calls.items() if k.startswith("sqs:")),
        "dynamodb_requests": sum(v for k, v in calls.items() if k.startswith("dynamodb:")),
        "invocations": dict(wave.runner.invocations),
        "wall_s": round(wall_s, 1),
    }


def print_summary(result: DemoResult, console: Console) -> None:
    summary = result.summary
    table = Table(title="demo wave summary")
    for column in ("server", "instance", "source AMI", "status", "copies"):
        table.add_column(column)
    for job in summary["jobs"]:
        copies = ", ".join(f"{t['account']}/{t['region']}: {t['image_id']} ({t['state']})" for t in job["targets"])
        table.add_row(job["source_server_id"] or "-", job["instance_id"], job["source_image_id"] or "-",
                      job["status"] + (f" {job['reason']}" if job["reason"] else ""), copies)
    console.print(table)
    done = max(summary["done"], 1)
    per_ami = {k: round(v / done, 2) for k, v in summary["api_calls"].items()}
    console.print(f"{summary['done']}/{summary['servers']} DONE in {summary['wall_s']} s; "
                  f"API calls per AMI {per_ami}; invocations {summary['invocations']}")
    kinds = Counter(e["detail-type"] for e in summary.get("events", []))
    console.print(f"events received downstream: {dict(kinds)}")


def to_json(result: DemoResult) -> str:
    return json.dumps(result.summary, sort_keys=True)
