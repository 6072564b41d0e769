"""Benchmark (not a test): `status` over a 5,000-job wave in the in-process sandbox.

    .venv/bin/python -m tests.operations.bench_status [JOBS]

Writes the jobs straight into the stage's table with DynamoJobStore.create (a mix of stages and
statuses, 1 % FAILED), then times the CLI's `status --wave` as an operator runs it.
"""
import json
import sys
import time

from typer.testing import CliRunner
import typer

from automation import operations
from automation.provision import provision
from automation.sandbox import SOURCE_ACCOUNT, Sandbox, VirtualClock
from automation.stages import function_environment
from chalicelib import config
from chalicelib.adapters.job_store import DynamoJobStore
from chalicelib.domain.model import Job, Reason, Stage

STAGES = [Stage.CREATE_IMAGE, Stage.WAIT_IMAGE, Stage.SHARE, Stage.COPY, Stage.WAIT_COPY, Stage.CLEANUP]


def main(count: int) -> None:
    box = Sandbox(clock=VirtualClock()).start("inprocess")
    try:
        env = function_environment("local")
        provision(box, env)
        settings = config.load(env)
        store = DynamoJobStore(box.client("dynamodb"), settings.table_name)
        started = time.perf_counter()
        for index in range(count):
            job = Job(f"i-{index:017x}-bench", "wave-bench", SOURCE_ACCOUNT, "us-east-1", f"i-{index:017x}",
                      settings.distribution, created_at=1_796_000_000.0 + index)
            job.move_to(STAGES[index % len(STAGES)], job.created_at, "created")
            if index % 100 == 7:
                job.fail(Reason.COPY_REFUSED, "InvalidParameter", "refused", job.created_at + 60)
            elif index % 3 == 0:
                job.finish(job.created_at + 3600)
            store.create(job)
        print(f"wrote {count} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        app = typer.Typer()
        operations.register(app)
        runner = CliRunner()
        environment = box.environment(SOURCE_ACCOUNT, "us-east-1")
        timings, cpu = [], []
        for _ in range(3):
            started, started_cpu = time.perf_counter(), time.process_time()
            result = runner.invoke(app, ["status", "--stage", "local", "--wave", "wave-bench", "--json"],
                                   env=environment, catch_exceptions=False)
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)  # what the machine's other load does not inflate
            assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        print(json.dumps({"jobs": summary["total"], "by_status": summary["by_status"],
                          "failed_listed": len(summary["failed"]),
                          "status_seconds": [round(t, 2) for t in timings],
                          "status_cpu_seconds": [round(t, 2) for t in cpu]}))
    finally:
        box.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
