"""A reliability campaign: the same wave under a fault profile for many seeds, every invariant checked on each.

    python -m automation.simulate.campaign --servers 1000 --seeds 1-20 --faults chaos [--parallel 2]

Each seed runs as its own `python -m automation simulate ... --json` process (one sandbox per process, as
moto's state is global), so a seed that breaks an invariant is replayed by the very command the table
names. Prints a table on stderr and, as the last line of stdout, one JSON object: per seed, the totals and
whether every invariant held. Exit 1 if any seed broke one (its report, with the failing jobs' histories,
goes to stderr), 2 on bad input.
"""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .invariants import INVARIANTS
from .options import FAULT_PROFILES

app = typer.Typer(add_completion=False)


def parse_seeds(text: str) -> list[int]:
    """"1-20", "3,5,9" or "1-3,7": the seeds, in order, once each."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use e.g. 1-20 or 1,4,9") from None
    if not seeds:
        raise typer.BadParameter(f"{text!r} names no seed")
    return list(dict.fromkeys(seeds))


def command(servers: int, seed: int, faults: str, targets: int) -> list[str]:
    return [sys.executable, "-m", "automation", "simulate", "--servers", str(servers), "--seed", str(seed),
            "--faults", faults, "--targets", str(targets), "--json"]


def run_seed(servers: int, seed: int, faults: str, targets: int) -> dict:
    done = subprocess.run(command(servers, seed, faults, targets), capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        summary = None
    return {"seed": seed, "exit_code": done.returncode, "summary": summary,
            "stderr": done.stderr if done.returncode else ""}


def row(outcome: dict) -> dict:
    summary = outcome["summary"] or {}
    broken = {k: summary.get(k, 0) for k in INVARIANTS if summary.get(k)}
    return {"seed": outcome["seed"], "holds": outcome["exit_code"] == 0 and summary.get("invariants_broken") == 0,
            "exit_code": outcome["exit_code"], "jobs": summary.get("jobs"), "done": summary.get("done"),
            "failed": summary.get("failed"), "broken": broken, "faults_injected": summary.get("faults_injected", {}),
            "operator": summary.get("operator", {}), "ami_events_dropped": summary.get("ami_events_dropped", 0),
            "makespan_h": round(summary.get("makespan_s", 0) / 3600, 3),
            "makespan_over_bound": round(summary["makespan_s"] / summary["lower_bound_s"], 4)
            if summary.get("lower_bound_s") else None, "sim_wall_s": summary.get("sim_wall_s")}


@app.command()
def campaign(
    servers: int = typer.Option(1000, help="Servers in each wave"),
    seeds: str = typer.Option("1-20", help="Seeds: 1-20, or 1,4,9"),
    faults: str = typer.Option("chaos", help=f"Fault profile: {', '.join(FAULT_PROFILES)}"),
    targets: int = typer.Option(2, help="Target accounts"),
    parallel: int = typer.Option(1, min=1, help="Seeds run at once (each is one process)"),
    out: Optional[typer.FileTextWrite] = typer.Option(None, help="Also write the JSON summary here"),
) -> None:
    """Run the wave under FAULTS for every seed and check every invariant on each."""
    if faults not in FAULT_PROFILES:
        typer.echo(f"error: --faults {faults!r}: use one of {', '.join(FAULT_PROFILES)}", err=True)
        raise typer.Exit(2)
    seed_list = parse_seeds(seeds)
    console = Console(stderr=True, highlight=False, width=200)  # the table's columns, whatever the terminal
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        outcomes = list(pool.map(lambda s: run_seed(servers, s, faults, targets), seed_list))
    rows = [row(o) for o in outcomes]
    table = Table("seed", "holds", "done", "failed", "broken", "crashes", "overtaken", "duplicates", "throttled",
                  "denied", "events lost", "retried", "replayed", "makespan h", "/ bound", "wall s",
                  title=f"{faults}: {servers} servers x {len(seed_list)} seeds")
    for r in rows:
        injected, operator = r["faults_injected"], r["operator"]
        table.add_row(str(r["seed"]), "yes" if r["holds"] else "NO", str(r["done"]), str(r["failed"]),
                      ", ".join(f"{k} {v}" for k, v in r["broken"].items()) or "-",
                      *(str(injected.get(k, 0)) for k in ("crashes", "overtaken", "duplicates")),
                      str(injected.get("ec2_throttled", 0) + injected.get("table_throttled", 0)),
                      str(injected.get("kms_denied", 0)), str(r["ami_events_dropped"]),
                      str(operator.get("jobs_retried", 0)), str(operator.get("dead_letters_replayed", 0)),
                      str(r["makespan_h"]), str(r["makespan_over_bound"]), str(r["sim_wall_s"]))
    console.print(table)
    for outcome in outcomes:
        if outcome["stderr"]:
            console.print(f"seed {outcome['seed']} (exit {outcome['exit_code']}):\n{outcome['stderr']}", markup=False)
    totals = {"jobs": sum(r["jobs"] or 0 for r in rows), "done": sum(r["done"] or 0 for r in rows),
              "failed": sum(r["failed"] or 0 for r in rows)}
    for r in rows:
        for kind, n in {**r["faults_injected"], "ami_events_dropped": r["ami_events_dropped"]}.items():
            totals[f"faults.{kind}"] = totals.get(f"faults.{kind}", 0) + n
    result = {"servers": servers, "faults": faults, "targets": targets, "seeds": seed_list,
              "all_hold": all(r["holds"] for r in rows), "seeds_broken": [r["seed"] for r in rows if not r["holds"]],
              "totals": totals, "per_seed": rows}
    text = json.dumps(result, sort_keys=True)
    if out is not None:
        out.write(text + "\n")
    typer.echo(text)
    raise typer.Exit(0 if result["all_hold"] else 1)


if __name__ == "__main__":
    app()
