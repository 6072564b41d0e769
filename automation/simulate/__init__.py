"""`python -m automation simulate`: a whole wave through the real handlers on a virtual clock,
measured against AWS's limits (the lower bound) and against the runbook it replaces.

Deterministic: the same options give the same JSON, byte for byte, but for `sim_wall_s`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterator

from .options import FAULT_PROFILES, SimOptions, SimulationError

__all__ = ["FAULT_PROFILES", "SimOptions", "SimResult", "SimulationError", "simulate"]


@dataclass
class SimResult:
    summary: dict
    timelines: dict[str, list[list[tuple[float, str]]]] = field(default_factory=dict)
    broken: str | None = None  # when an invariant broke: the seed, the options and the failing jobs' histories

    @property
    def invariants_hold(self) -> bool:
        return self.broken is None

    def to_json(self) -> str:
        return json.dumps(self.summary, sort_keys=True, separators=(",", ":"))


def simulate(options: SimOptions) -> SimResult:
    options.validate()
    started = time.monotonic()
    with _quiet_handlers():
        summary, timelines, broken = _run_ours(options)
        if options.baseline == "runbook":
            baseline, timelines["baseline"] = _run_runbook(options)
            summary["baseline"] = baseline
            summary["versus_baseline"] = _ratios(summary, baseline)
    summary["options"] = options.summary()
    summary["sim_wall_s"] = round(time.monotonic() - started, 1)
    return SimResult(summary, timelines, broken)


def _run_ours(options: SimOptions) -> tuple[dict, dict, str | None]:
    from . import invariants
    from .faults import FaultInjector
    from .pipeline import PipelineRun
    from .world import World

    world = World.create(options, options.distribution())
    try:
        run = PipelineRun(world)
        injector = FaultInjector(world, run)
        with injector.installed():
            run.run()
            injector.after_wave()  # the operator: fixes, replays the DLQ, retries what was fixed
        summary, timeline = run.report()
        summary["faults_injected"] = injector.counts()
        if options.fault_model.operator_at_the_end:
            summary["operator"] = dict(injector.operator)
        broken = None
        if not run.checked.holds:
            broken = invariants.report({**summary, "options": options.summary()}, world.wave.jobs(), run.checked,
                                       world, injector.log)
    finally:
        world.close()
    return summary, {"ours": timeline}, broken


def _run_runbook(options: SimOptions) -> tuple[dict, list]:
    from .runbook import RunbookRun
    from .world import World

    # the same stage and wave (so the same seeded servers and launches), the runbook instead of our handlers
    world = World.create(options, options.distribution())
    try:
        run = RunbookRun(world)
        run.run()
        return run.report()
    finally:
        world.close()


def _ratios(ours: dict, baseline: dict) -> dict:
    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 4) if b else None

    return {"makespan_ratio": ratio(ours["makespan_s"], baseline["makespan_s"]),
            "cost_ratio": ratio(ours["cost_usd_per_1000_amis"], baseline["cost_usd_per_1000_amis"]),
            "api_calls_per_ami_ratio": ratio(ours["api_calls_per_ami"], baseline["api_calls_per_ami"])}


@contextlib.contextmanager
def _quiet_handlers() -> Iterator[None]:
    """Thousands of invocations would each log JSON lines and print metrics (EMF, on stdout): silence
    both, so stdout holds only what the command prints."""
    from chalicelib.service import logger

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        logger.setLevel(level)
