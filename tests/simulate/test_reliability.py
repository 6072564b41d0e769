"""Issue 7: the fault profiles, the invariant checker and what it prints when an invariant breaks.

Each fault is injected where AWS, Lambda or an operator would cause it (automation/simulate/faults.py);
the checker reads AWS state and the jobs table (automation/simulate/invariants.py)."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from automation.cli import app
from automation.simulate import FAULT_PROFILES, SimOptions, simulate
from automation.simulate.campaign import app as campaign_app, parse_seeds
from automation.simulate.faults import FaultInjector
from automation.simulate.invariants import INVARIANTS, check
from automation.simulate.options import Faults
from automation.simulate.pipeline import PipelineRun
from automation.simulate.world import World
from tests.simulate.test_simulator import without_wall

SMALL = dict(time_scale=0.02)
# every fault at once, at rates that make each of them happen in a wave of a few servers
STORM = Faults(ami_event_loss=0.5, duplicate_rate=0.5, create_failure_rate=0.2, copy_failure_rate=0.2,
               throttle_rate=0.2, crash_rate=0.4, slow_consumer_rate=0.4, assume_role_denied=True,
               kms_denied_rate=0.3, table_throttled_share=0.1, dlq_replay=True)


def assert_invariants_hold(result) -> None:
    summary = result.summary
    assert result.invariants_hold, result.broken
    assert summary["invariants_broken"] == 0 and summary["invariant_violations"] == []
    assert all(summary[name] == 0 for name in INVARIANTS)
    assert summary["jobs"] == summary["servers"]
    assert summary["done"] + summary["failed"] == summary["jobs"]  # every job ended, none is still running


def test_chaos_turns_every_fault_on_at_the_issues_rates():
    chaos = FAULT_PROFILES["chaos"]
    assert (chaos.ami_event_loss, chaos.duplicate_rate, chaos.create_failure_rate, chaos.copy_failure_rate,
            chaos.crash_rate) == (0.5, 0.1, 0.01, 0.01, 0.05)
    assert chaos.throttle_rate and chaos.slow_consumer_rate and chaos.kms_denied_rate and chaos.table_throttled_share
    assert chaos.assume_role_denied and chaos.dlq_replay
    # and each fault has a profile of its own with chaos's rate
    for name, field in [("throttling", "throttle_rate"), ("crashes", "crash_rate"), ("duplicates", "duplicate_rate"),
                        ("slow-consumers", "slow_consumer_rate"), ("lossy-events", "ami_event_loss"),
                        ("kms-denied", "kms_denied_rate"), ("table-throttled", "table_throttled_share"),
                        ("image-failures", "create_failure_rate"), ("copy-failures", "copy_failure_rate")]:
        profile = FAULT_PROFILES[name]
        assert getattr(profile, field) == getattr(chaos, field)
        assert profile == Faults(**{field: getattr(chaos, field)})


STORM_RUN = """
import sys
from automation.simulate import FAULT_PROFILES, SimOptions, simulate
from tests.simulate.test_reliability import STORM
FAULT_PROFILES["storm"] = STORM
result = simulate(SimOptions(servers=5, seed=4, faults="storm", time_scale=0.02))
print(result.broken or "", file=sys.stderr)
print(result.to_json())
"""


def test_a_storm_of_every_fault_loses_nothing_duplicates_nothing_and_replays_byte_for_byte():
    # Each run in a process of its own, as the CLI and the campaign run a seed: moto draws a process's first
    # sandbox's IDs differently from later ones', and under faults the order of work follows those IDs.
    runs = [subprocess.run([sys.executable, "-c", STORM_RUN], capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert without_wall(first) == without_wall(second)
    assert runs[0].stderr.strip() == ""  # no broken invariant to report
    assert first["invariants_broken"] == 0 and all(first[name] == 0 for name in INVARIANTS)
    assert first["done"] + first["failed"] == first["jobs"] == 5
    injected = first["faults_injected"]
    for kind in ("crashes", "overtaken", "duplicates", "ec2_throttled", "kms_denied", "table_throttled",
                 "denial_windows"):
        assert injected[kind] > 0, injected
    assert first["ami_events_dropped"] > 0
    assert first["throttle_failures"] == 0  # a throttle is never a failure
    assert first["operator"]["jobs_retried"] > 0 and first["operator"]["rounds"] > 0


def run_world(options: SimOptions, tamper=None):
    """A wave run to the end, then (optionally) AWS state changed behind the service's back, then checked."""
    world = World.create(options, options.distribution())
    try:
        run = PipelineRun(world)
        injector = FaultInjector(world, run)
        with injector.installed():
            run.run()
            injector.after_wave()
        if tamper:
            tamper(world)
        jobs = world.wave.jobs()
        return jobs, check(world, jobs, set()), world
    finally:
        world.close()


def test_a_denial_fails_the_job_with_the_reason_and_awss_error_and_the_operators_retry_finishes_it(monkeypatch):
    monkeypatch.setitem(FAULT_PROFILES, "denials", Faults(assume_role_denied=True, kms_denied_rate=1.0))
    jobs, checked, _ = run_world(SimOptions(servers=3, seed=2, faults="denials", **SMALL))
    assert checked.holds, checked.violations
    assert {j["status"] for j in jobs} == {"DONE"}
    notes = [t["note"] for j in jobs for t in j["history"]]
    # every copy was refused the target's key: FAILED with the reason and EC2's error, then retried by the operator
    assert sum("COPY_REFUSED: UnauthorizedOperation" in n for n in notes) == 3
    assert sum(n.startswith("retry 1 by simulated-operator") for n in notes) >= 3
    for job in jobs:
        failed = [t for t in job["history"] if t["status"] == "FAILED"]
        assert failed and all(t["note"].split(":")[0] in ("ASSUME_ROLE_DENIED", "COPY_REFUSED") for t in failed)
        assert job["retries"] == len(failed)
        # the copies made before the denial were kept: one per target, whatever the retries
        assert len(job["copies"]) == 2 and all(c["state"] == "available" for c in job["copies"].values())


def test_the_checker_reads_aws_and_the_table_not_the_services_counters():
    def tamper(world):
        jobs = world.wave.jobs()
        sandbox, region, outsider = world.sandbox, world.wave.stage.region, "999999999999"
        ec2 = sandbox.client("ec2", region=region)
        first, second, third = jobs
        # someone shares a source AMI outside the allow-list and makes it public
        ec2.modify_image_attribute(ImageId=first["source_image_id"], LaunchPermission={
            "Add": [{"UserId": outsider}, {"Group": "all"}]})
        # a target account deletes the copy of a DONE job
        copy = next(iter(second["copies"].values()))
        sandbox.client("ec2", account_id=copy["account_id"], region=copy["region"]).deregister_image(
            ImageId=copy["image_id"])
        # the third job's record says FAILED without an error, and someone terminated its instance
        dynamodb, table = sandbox.client("dynamodb", region=region), world.wave.stage.env["JOBS_TABLE"]
        for item in dynamodb.scan(TableName=table)["Items"]:
            if "doc" not in item:
                continue  # a destination's copy slots, not a job
            doc = json.loads(item["doc"]["S"])
            if doc["job_id"] == third["job_id"]:
                doc.update(status="FAILED", reason=None, last_error=None)
                dynamodb.put_item(TableName=table, Item={**item, "doc": {"S": json.dumps(doc)}})
        ec2.terminate_instances(InstanceIds=[third["instance_id"]])

    options = SimOptions(servers=3, seed=1, targets=1, faults="none", cleanup=False, **SMALL)
    jobs, checked, _ = run_world(options, tamper)
    counts = checked.counts
    assert counts["public_images"] == 1
    assert counts["disallowed_shares"] == 2  # the outsider and `all`
    assert counts["done_without_copies"] == 1
    assert counts["failed_without_error"] == 1
    assert counts["unsafe_cleanups"] == 1  # an instance terminated though its job did not end DONE
    assert counts["lost"] == counts["duplicate_source_amis"] == counts["duplicate_copies"] == 0
    assert counts["invariants_broken"] == 6
    by_job = {v["job_id"] for v in counts["invariant_violations"]}
    assert by_job == {j["job_id"] for j in jobs}


def test_a_broken_invariant_prints_the_seed_the_options_and_the_jobs_history_and_exits_1(monkeypatch):
    original = FaultInjector.after_wave

    def after_wave_and_delete_a_copy(self):  # a target account deletes a copy behind the service's back
        original(self)
        job = self.world.wave.jobs()[0]
        copy = next(iter(job["copies"].values()))
        self.world.sandbox.client("ec2", account_id=copy["account_id"], region=copy["region"]).deregister_image(
            ImageId=copy["image_id"])

    monkeypatch.setattr(FaultInjector, "after_wave", after_wave_and_delete_a_copy)
    result = CliRunner().invoke(app, ["simulate", "--servers", "2", "--seed", "5", "--targets", "1", "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["done_without_copies"] == 1 and summary["invariants_broken"] == 1
    [violation] = summary["invariant_violations"]
    report = result.stderr
    assert "INVARIANTS BROKEN: 1 (done_without_copies 1)" in report
    assert "seed 5; options" in report
    assert "replay: python -m automation simulate --servers 2 --seed 5 --targets 1 --faults none" in report
    assert f"job {violation['job_id']}: DONE DONE" in report
    for stage in ("CREATE_IMAGE", "WAIT_IMAGE", "SHARE", "WAIT_COPY", "CLEANUP", "DONE"):
        assert f" {stage} " in report  # the job's full history, transition by transition
    assert "image ami-" in report  # and the images AWS made for it


def test_the_campaign_runs_each_seed_and_reports_a_table_and_json(tmp_path):
    assert parse_seeds("1-3,7,2") == [1, 2, 3, 7]
    out = tmp_path / "campaign.json"
    result = CliRunner().invoke(campaign_app, ["--servers", "2", "--seeds", "1-2", "--faults", "chaos",
                                               "--parallel", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["all_hold"] and summary["seeds"] == [1, 2] and summary["seeds_broken"] == []
    assert [r["seed"] for r in summary["per_seed"]] == [1, 2]
    assert summary["totals"]["jobs"] == 4 and summary["totals"]["done"] + summary["totals"]["failed"] == 4
    assert json.loads(out.read_text()) == summary
    assert "chaos: 2 servers x 2 seeds" in result.stderr


def test_the_campaign_refuses_an_unknown_profile():
    result = CliRunner().invoke(campaign_app, ["--faults", "meteor"])
    assert result.exit_code == 2 and "--faults 'meteor'" in result.stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ci_chaos_at_200_servers_every_invariant_holds(seed):
    """The issue's CI job: 3 seeds x 200 servers, `--faults chaos`, AWS's own durations."""
    result = simulate(SimOptions(servers=200, seed=seed, faults="chaos"))
    assert_invariants_hold(result)
    summary = result.summary
    assert summary["faults_injected"]["crashes"] > 0 and summary["faults_injected"]["duplicates"] > 0
    assert summary["ami_events_dropped"] > 0


def test_chaos_with_copies_queued_for_their_slots_every_invariant_holds():
    """The copy line under every fault: 60 servers' 120 copies through 8 slots per destination, so most copies
    wait in line and are handed their slot by the job that gives it back, while crashes, duplicates and
    overtaken invocations hit both the giver and the waiter."""
    result = simulate(SimOptions(servers=60, seed=5, faults="chaos", overrides={"COPY_SLOTS_PER_DESTINATION": "8"}))
    assert_invariants_hold(result)
    assert result.summary["faults_injected"]["crashes"] > 0 and result.summary["faults_injected"]["overtaken"] > 0
