"""python -m automation ...: everything that runs outside the Lambda functions."""
from __future__ import annotations

import signal
import threading

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ami-distributor operator and developer tools")


@app.command()
def sandbox(
    port: int = typer.Option(4566, help="Port on 127.0.0.1 (0 picks a free one)"),
    seed: int = typer.Option(0, help="Seed for modelled durations, failures and resource IDs"),
    speed: float = typer.Option(1.0, help="Run AWS's modelled time this many times faster than real time"),
) -> None:
    """Serve the local AWS sandbox over HTTP on loopback until stopped (Ctrl-C)."""
    from automation.sandbox import Sandbox, ScaledClock

    box = Sandbox(clock=ScaledClock(speed), seed=seed).start("http", port=port)
    typer.echo(box.endpoint_url, err=False)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()


def main() -> None:
    from automation import deployment, operations

    operations.register(app)
    deployment.register(app)
    app()
