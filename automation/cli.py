"""python -m automation ...: everything that runs outside the Lambda functions."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ami-distributor operator and developer tools")


@app.command()
def sandbox(
    port: int = typer.Option(4566, help="Port on 127.0.0.1 (0 picks a free one)"),
    seed: int = typer.Option(0, help="Seed for modelled durations, failures and resource IDs"),
    servers: int = typer.Option(0, help="Provision the local stage, as the demo does, and seed this many MGN "
                                        "source servers (for `demo --endpoint-url`, `doctor --endpoint-url`)"),
) -> None:
    """Serve the local AWS sandbox over HTTP on 127.0.0.1 until stopped (Ctrl-C or SIGTERM)."""
    from automation.demo import demo_settings
    from automation.provision import provision, seed_servers
    from automation.sandbox import RealClock, Sandbox
    from automation.stages import function_environment

    box = Sandbox(clock=RealClock(), seed=seed, settings=demo_settings()).start("http", port=port)
    if servers:
        stage = provision(box, function_environment("local"))
        seed_servers(box, servers, stage.region, stage.source_key_arn)
    typer.echo(box.endpoint_url)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()


@app.command()
def demo(
    servers: int = typer.Option(25, min=1, max=200, help="MGN source servers in the wave (one MGN job holds 200)"),
    endpoint_url: str = typer.Option(None, help="A sandbox already running (`sandbox --servers N`)"),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object as the last line"),
) -> None:
    """A demo cutover wave through the real handlers on the sandbox; exit 0 only if every job is DONE."""
    from rich.console import Console

    from automation.demo import print_summary, run_demo, to_json

    console = Console(stderr=json_output)  # with --json, stdout holds only the JSON line
    result = run_demo(servers, endpoint_url, console, live=console.is_terminal)
    print_summary(result, console)
    if json_output:
        typer.echo(to_json(result))
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def invoke(
    name: str = typer.Argument(..., help="on_mgn_event, advance_jobs or on_ami_event"),
    event: typer.FileText = typer.Option(..., help="The event, as JSON (- for standard input)"),
    endpoint_url: str = typer.Option(None, help="A sandbox; otherwise your AWS credentials"),
    stage: str = typer.Option("local", help="Stage in .chalice/config.json"),
) -> None:
    """Run one handler locally on an event file, with the stage's environment (like `sam local invoke`)."""
    import json as json_module

    from automation.local_lambda import run_handler

    typer.echo(json_module.dumps(run_handler(name, json_module.load(event), stage, endpoint_url), default=str))


@app.command()
def run(
    endpoint_url: str = typer.Option(..., help="The sandbox whose queues to drain"),
    stage: str = typer.Option("local", help="Stage in .chalice/config.json"),
) -> None:
    """The local SQS -> Lambda and EventBridge -> Lambda poller, until no job message is in flight."""
    from automation.local_lambda import poll_until_idle

    typer.echo(json_dumps(poll_until_idle(stage, endpoint_url)))


@app.command()
def simulate(
    servers: int = typer.Option(100, help="Servers in the wave (MGN cuts them over 200 at a time)"),
    seed: int = typer.Option(1, help="Seed: disk sizes, durations, failures, jitter; same seed, same result"),
    targets: int = typer.Option(2, help="Target accounts to copy into"),
    faults: str = typer.Option("none", help="Fault profile: none, chaos (all of them), or one fault: throttling, "
                                            "image-failures, copy-failures, crashes, duplicates, every-message-twice, "
                                            "slow-consumers, lossy-events, no-events, assume-role-denied, kms-denied, "
                                            "table-throttled, dlq-replay"),
    baseline: str = typer.Option(None, help="Also run the same wave through a baseline: runbook"),
    stage: str = typer.Option("local", help="Stage in .chalice/config.json whose settings the handlers get"),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object as the last line"),
    plot: Path = typer.Option(None, help="Write a PNG of jobs per stage over time"),
) -> None:
    """A whole wave through the real handlers on the sandbox and a virtual clock, measured."""
    from automation.simulate import SimOptions, SimulationError, simulate as run_simulation
    from automation.stages import UnknownStage, function_environment

    options = SimOptions(servers=servers, seed=seed, targets=targets, faults=faults, baseline=baseline, stage=stage)
    try:
        options.validate()
        function_environment(stage)
        if plot is not None and (plot.suffix.lower() != ".png" or not plot.parent.resolve().is_dir()):
            raise SimulationError(f"--plot {plot}: name a .png file in an existing directory")
    except (SimulationError, UnknownStage) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    result = run_simulation(options)
    if plot is not None:
        from automation.simulate.plot import plot as draw

        draw(result.summary, result.timelines, plot)
    summary = result.summary
    typer.echo(f"{summary['done']}/{servers} done in {summary['makespan_s'] / 3600:.2f} h "
               f"(lower bound {summary['lower_bound_s'] / 3600:.2f} h); {summary['api_calls_per_ami']} API calls and "
               f"{summary['invocations_per_ami']} invocations per AMI; wall {summary['sim_wall_s']} s",
               err=json_output)
    if json_output:
        typer.echo(result.to_json())
    if not result.invariants_hold:
        typer.echo(result.broken, err=True)  # the seed, the options and each failing job's history: it replays
        raise typer.Exit(1)


@app.command()
def doctor(
    stage: str = typer.Option(..., "--stage", help="Stage in .chalice/config.json"),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="A sandbox; otherwise your AWS credentials"),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object as the last line"),
) -> None:
    """Check what a wave needs before the cutover (MGN encryption, key policies, target roles, the stage);
    exit 1 if any check FAILs."""
    from automation.doctor import run as run_doctor

    raise typer.Exit(run_doctor(stage, endpoint_url, json_output))


def json_dumps(value: object) -> str:
    import json as json_module

    return json_module.dumps(value, sort_keys=True, default=str)


def main() -> None:
    from automation import deployment, operations

    operations.register(app)
    deployment.register(app)
    app()
