"""The simulator as an instrument: deterministic, its lower bound a bound, its invariants read from AWS state."""
import json
import random

import pytest
from typer.testing import CliRunner

from automation.cli import app
from automation.simulate import SimOptions, simulate
from automation.simulate.bound import concurrency_bound, paced_bound
from automation.simulate.options import disk_layouts
from automation.simulate.runbook import RunbookRun
from automation.simulate.world import World

# AWS's durations shrunk fiftyfold: the same wave in a few seconds of wall time
SMALL = dict(servers=2, time_scale=0.02)


def without_wall(summary: dict) -> str:
    return json.dumps({k: v for k, v in summary.items() if k != "sim_wall_s"}, sort_keys=True)


def assert_within_bound_and_invariants(summary: dict) -> None:
    for run in (summary, summary.get("baseline", {})):
        if run:
            assert run["lower_bound_s"] > 0
            assert run["makespan_s"] >= run["lower_bound_s"], run["lower_bound_parts_s"]
    assert summary["lost"] == summary["duplicate_source_amis"] == summary["duplicate_copies"] == 0
    assert summary["unsafe_cleanups"] == summary["disallowed_shares"] == 0


def test_same_seed_same_result_byte_for_byte_and_never_below_the_bound(tmp_path):
    options = SimOptions(seed=7, baseline="runbook", **SMALL)
    first = simulate(options)
    assert first.summary["done"] == 2 and first.summary["baseline"]["done"] == 2
    second = simulate(options)
    assert without_wall(first.summary) == without_wall(second.summary)
    assert_within_bound_and_invariants(first.summary)

    from automation.simulate.plot import plot
    picture = tmp_path / "wave.png"
    plot(first.summary, first.timelines, picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("seed, faults", [(2, "chaos"), (3, "no-events")])
def test_no_run_beats_the_lower_bound_whatever_the_faults(seed, faults):
    summary = simulate(SimOptions(seed=seed, faults=faults, **SMALL)).summary
    assert summary["jobs"] == 2
    assert_within_bound_and_invariants(summary)
    if faults == "no-events":
        assert summary["ami_events_dropped"] > 0 and summary["done"] == 2  # polling is the backstop


def test_jobs_launched_together_take_their_first_step_in_one_batch():
    """An MGN job launches its servers within minutes. Their jobs' first steps fall on a 10 s grid (a sixth of the poll grid), so a batch
    holds several, and its look-ahead reads all their instances' volumes in one DescribeVolumes; the grid is fine
    enough that CreateImage stays within its token bucket."""
    summary = simulate(SimOptions(servers=60, seed=1, targets=1)).summary
    assert summary["done"] == 60
    calls = summary["api_calls"]
    assert calls["ec2:DescribeVolumes"] <= 60 / 4
    assert calls["ec2:CreateImage"] == 60 and summary["throttled_calls"] == 0


def greedy_schedule(ready, durations, burst, rate, limit):
    """A feasible schedule: each item, in ready order, starts when it is ready, a token is in the bucket
    and a slot is free. Whatever it does, it cannot finish before the bound."""
    tokens, updated, running, finish = burst, min(ready), [], 0.0
    for r, d in sorted(zip(ready, durations)):
        start = max(r, updated)
        tokens = min(burst, tokens + (start - updated) * rate)
        if tokens < 1:
            start += (1 - tokens) / rate
            tokens = 1.0
        running = sorted(t for t in running if t > start)
        if len(running) >= limit:
            start = max(start, running[len(running) - limit])
            running = [t for t in running if t > start]
        tokens, updated = tokens - 1 + 0.0, start
        running.append(start + d)
        finish = max(finish, start + d)
    return finish


def test_the_bound_formulas_hold_for_any_schedule():
    rng = random.Random(3)
    for _ in range(300):
        n = rng.randrange(1, 40)
        ready = [rng.uniform(0, 100) for _ in range(n)]
        durations = [rng.uniform(1, 300) for _ in range(n)]
        burst, rate, limit = rng.randrange(1, 10), rng.choice([0.1, 0.5, 1.0]), rng.randrange(1, 8)
        finish = greedy_schedule(ready, durations, burst, rate, limit)
        assert finish >= paced_bound(ready, durations, burst, rate) - 1e-6
        assert finish >= concurrency_bound(ready, durations, limit) - 1e-6
        assert finish >= max(r + d for r, d in zip(ready, durations)) - 1e-6


def test_the_runbook_cleans_up_copies_that_are_still_pending_and_the_count_says_so():
    # a wave whose largest server copies for longer than the runbook's 60 polls of 60 s
    seed = next(s for s in range(1, 500) if any(root + sum(data) >= 1000 for root, data in disk_layouts(2, s)))
    options = SimOptions(servers=2, seed=seed, targets=1)
    world = World.create(options, options.distribution())
    try:
        run = RunbookRun(world)
        run.run()
        summary, _ = run.report()
        slow = [e for e in run.executions
                if world.ledger.images[e.copy_id].available > world.ledger.images[e.image_id].deregistered]
    finally:
        world.close()
    assert slow and summary["unsafe_cleanups"] == len(slow)
    # the sandbox lets a copy finish after its source is gone, so it counts as done; the cleanup was still unsafe
    assert summary["done"] == 2
    assert summary["api_calls"]["ec2:DescribeImages"] >= 60  # it polled the slow copy to the loop's end


@pytest.mark.parametrize("arguments, message", [
    (["--servers", "0"], "--servers 0"),
    (["--faults", "meteor"], "--faults 'meteor'"),
    (["--baseline", "spreadsheet"], "--baseline 'spreadsheet'"),
    (["--targets", "9"], "--targets 9"),
    (["--plot", "wave.txt"], "--plot"),
    (["--stage", "nowhere"], "no stage 'nowhere'"),
])
def test_bad_input_is_refused_before_anything_runs(arguments, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["simulate", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []
