"""`python -m automation doctor --stage NAME`: is everything a wave needs in place, before the cutover?

Reads the stage's configuration, then AWS (or a sandbox with --endpoint-url), and reports each check as
PASS / WARN / FAIL with the exact fix (automation/doctor_checks.py). Exit 1 when any check FAILs, 2 on
bad input (an unknown stage, an invalid configuration), 0 otherwise.
"""
from __future__ import annotations

import json
from collections import Counter

import boto3
from rich.table import Table

from automation.deployment import DeployError, StageSpec
from automation.doctor_checks import Check, Doctor, Status
from automation.stages import UnknownStage, function_environment
from chalicelib import config

STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def diagnose(stage: str, session: boto3.Session | None = None, endpoint_url: str | None = None) -> list[Check]:
    """Every check for `stage`. `session`: the source account (default: the operator's credentials, or the
    stage's account in the sandbox at `endpoint_url`). Raises UnknownStage / ConfigError / DeployError."""
    settings = config.load(function_environment(stage))
    spec = StageSpec.load(stage)
    if session is None:
        if endpoint_url:
            from automation.sandbox.core import Sandbox  # enter the stage's account, as its operator

            session = Sandbox.remote(endpoint_url).session(spec.account, spec.region)
        else:
            session = boto3.Session(region_name=spec.region)
    return Doctor(settings, spec, session, endpoint_url).run()


def summary(stage: str, checks: list[Check]) -> dict:
    counts = Counter(c.status.value for c in checks)
    return {"stage": stage, "ok": not counts.get("FAIL"), "counts": {s.value: counts.get(s.value, 0) for s in Status},
            "checks": [c.to_dict() for c in checks]}


def table(stage: str, checks: list[Check]) -> Table:
    view = Table(title=f"doctor: stage {stage}", show_lines=True)
    for column, width in (("", 4), ("check", 24), ("subject", 28), ("finding", 50), ("fix", 50)):
        view.add_column(column, max_width=width if column in ("finding", "fix") else None, overflow="fold")
    for check in checks:
        view.add_row(f"[{STYLE[check.status]}]{check.status.value}[/]", check.check, check.subject, check.detail,
                     check.fix if check.status is not Status.PASS else "")
    return view


def run(stage: str, endpoint_url: str | None, json_output: bool) -> int:
    from automation.operations import Out, fail

    out = Out(json_output)
    try:
        checks = diagnose(stage, endpoint_url=endpoint_url)
    except (UnknownStage, config.ConfigError, DeployError) as error:
        fail(str(error))
    result = summary(stage, checks)
    out.print(table(stage, checks))
    counts = result["counts"]
    out.print(f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed: "
              + ("ready for a wave" if result["ok"] else "fix every FAIL before the cutover"))
    out.result(result)
    return 0 if result["ok"] else 1


def to_json(stage: str, checks: list[Check]) -> str:
    return json.dumps(summary(stage, checks), sort_keys=True)
