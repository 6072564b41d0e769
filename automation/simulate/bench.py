"""`python -m automation.simulate.bench`: the issue's targets, each with the value measured now.

Runs the wave once per seed (with the runbook baseline, and again with AMI events off), then
measures cold start in fresh interpreters. Worst case over the seeds is what the table shows.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import SimOptions, simulate


def import_seconds(module: str, runs: int = 5, cwd: Path | None = None) -> float:
    """The median time to import `module` in a fresh interpreter that cannot cache bytecode, as in Lambda."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True, cwd=cwd, env=env).stdout) for _ in range(runs))


def cold_start_seconds(runs: int = 9) -> tuple[float, float]:
    """(import boto3, import app): app as the deploy paths ship it (app.py and chalicelib/ with its bytecode,
    automation.deployment.precompile_lambda_code), boto3 precompiled as the Lambda runtime's is."""
    from automation.deployment import precompile_lambda_code
    from automation.stages import PROJECT_ROOT

    with tempfile.TemporaryDirectory() as task:
        shutil.copy(PROJECT_ROOT / "app.py", task)
        shutil.copytree(PROJECT_ROOT / "chalicelib", Path(task) / "chalicelib",
                        ignore=shutil.ignore_patterns("__pycache__"))
        precompile_lambda_code(Path(task))
        boto3_s = import_seconds("boto3", runs, cwd=Path(task))
        return boto3_s, import_seconds("app", runs, cwd=Path(task))


def _measure(servers: int, seed: int, targets: int, faults: str) -> tuple[dict, dict]:
    """One seed's run: with the runbook baseline (events on), or alone with a fault profile; and its timelines."""
    baseline = "runbook" if faults == "none" else None
    result = simulate(SimOptions(servers=servers, seed=seed, targets=targets, faults=faults, baseline=baseline))
    return result.summary, result.timelines


def per_seed(seeds: list[int], runs: list[dict], quiet: list[dict]) -> list[str]:
    """One line per seed, so the worst case in the table can be traced to its seed."""
    lines = ["| seed | makespan / bound | api calls per AMI | invocations per AMI | table writes per AMI "
             "| lag off (median share of the wait) | vs runbook (makespan, cost) | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, run, off in zip(seeds, runs, quiet):
        vs = run["versus_baseline"]
        lines.append(f"| {seed} | {run['makespan_s'] / run['lower_bound_s']:.4f} | {run['api_calls_per_ami']} "
                     f"| {run['invocations_per_ami']} | {run['dynamodb_writes_per_ami']} "
                     f"| {off['detection_lag_ratio']['median']:.1%} | {vs['makespan_ratio']}, {vs['cost_ratio']} "
                     f"| {run['sim_wall_s']} |")
    return lines


def table(servers: int, seeds: list[int], targets: int = 2, jobs: int = 1,
          plot_to: Path | None = None) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """Every seed twice (events on with the baseline; every AMI event lost), `jobs` runs at a time: each run is
    deterministic on its own, so running them side by side changes no figure but the wall times. Returns the
    targets' rows and each seed's own line."""
    plan = [(servers, seed, targets, faults) for faults in ("none", "no-events") for seed in seeds]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        measured = list(pool.map(_measure, *zip(*plan)))
    runs = [summary for summary, _ in measured[:len(seeds)]]
    quiet = [summary for summary, _ in measured[len(seeds):]]
    if plot_to is not None:
        from .plot import plot

        plot(runs[0], measured[0][1], plot_to)
    worst = lambda key, pick=max, src=runs: pick(r[key] for r in src)  # noqa: E731
    ratio = max(r["makespan_s"] / r["lower_bound_s"] for r in runs)
    lag_on = max(r["detection_lag_s"]["median"] for r in runs)
    lag_off = max(r["detection_lag_ratio"]["median"] for r in quiet)
    vs = [r["versus_baseline"] for r in runs]
    unsafe_ok = all(r["unsafe_cleanups"] == 0 for r in runs)
    boto3_s, app_s = cold_start_seconds()
    rows = [
        ("makespan <= 1.05 x lower bound", f"{ratio:.3f} x", ratio <= 1.05),
        ("throttled calls <= 1% and none a failure",
         f"{worst('throttled_share'):.2%}, {worst('throttle_failures')} failures",
         worst("throttled_share") <= 0.01 and worst("throttle_failures") == 0),
        (f"done = {servers}", str(worst("done", min)), worst("done", min) == servers),
        ("api_calls_per_ami <= 14", str(worst("api_calls_per_ami")), worst("api_calls_per_ami") <= 14),
        ("invocations_per_ami <= 5", str(worst("invocations_per_ami")), worst("invocations_per_ami") <= 5),
        ("detection lag median <= 2 s (events on)", f"{lag_on} s", lag_on <= 2),
        ("detection lag median <= 10% of the wait (events off)", f"{lag_off:.1%}", lag_off <= 0.10),
        ("makespan ratio vs runbook <= 0.25", str(max(v["makespan_ratio"] for v in vs)),
         max(v["makespan_ratio"] for v in vs) <= 0.25),
        ("cost ratio vs runbook <= 0.2", str(max(v["cost_ratio"] for v in vs)), max(v["cost_ratio"] for v in vs) <= 0.2),
        ("0 unsafe cleanups (runbook: " + str(sum(r["baseline"]["unsafe_cleanups"] for r in runs)) + ")",
         str(sum(r["unsafe_cleanups"] for r in runs)), unsafe_ok),
        (f"simulation wall time ({servers} servers; target: 10,000 in < 600 s)",
         f"{worst('sim_wall_s')} s", servers >= 10000 and worst("sim_wall_s") < 600),
        ("cold start: import app <= 1.3 x import boto3", f"{app_s / boto3_s:.2f} x ({app_s:.3f} / {boto3_s:.3f} s)",
         app_s / boto3_s <= 1.3),
    ]
    return rows, per_seed(seeds, runs, quiet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--seeds", default="1-5", help="a range, e.g. 1-5")
    parser.add_argument("--jobs", type=int, default=2, help="simulations run side by side (one per core)")
    parser.add_argument("--plot", type=Path, help="a PNG of the first seed's wave beside the runbook's")
    args = parser.parse_args()
    low, _, high = args.seeds.partition("-")
    rows, seed_lines = table(args.servers, list(range(int(low), int(high or low) + 1)), jobs=args.jobs,
                             plot_to=args.plot)
    print("| target | measured | met |\n| --- | --- | --- |")
    for name, value, met in rows:
        print(f"| {name} | {value} | {'yes' if met else 'no'} |")
    print("\n" + "\n".join(seed_lines))


if __name__ == "__main__":
    main()
