"""Jobs per stage over virtual time, as stacked areas: ours beside the runbook baseline, the lower bound marked."""
from __future__ import annotations

from pathlib import Path

STAGES = ["QUEUED", "CREATE_IMAGE", "WAIT_IMAGE", "SHARE", "COPY", "WAIT_COPY", "CLEANUP", "DONE", "FAILED",
          "CANCELLED"]
COLOURS = ["#bbbbbb", "#9ecae1", "#4292c6", "#fdae6b", "#fd8d3c", "#d94801", "#a1d99b", "#31a354", "#e31a1c",
           "#6a51a3"]
POINTS = 400


def counts(timelines: list[list[tuple[float, str]]], grid: list[float]) -> dict[str, list[int]]:
    """How many jobs are in each stage at each instant of `grid` (a job is in its latest stage so far)."""
    result = {stage: [0] * len(grid) for stage in STAGES}
    for history in timelines:
        position = 0
        for index, instant in enumerate(grid):
            while position < len(history) and history[position][0] <= instant:
                position += 1
            if position:
                result[history[position - 1][1]][index] += 1
    return result


def plot(summary: dict, timelines: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ours", summary)] + ([("baseline", summary["baseline"])] if "baseline" in timelines else [])
    end = max(s["makespan_s"] for _, s in panels) * 1.02 or 1.0
    grid = [end * i / (POINTS - 1) for i in range(POINTS)]
    hours = [t / 3600 for t in grid]
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), sharey=True, squeeze=False)
    for axis, (name, result) in zip(axes[0], panels):
        stacked = counts(timelines[name], grid)
        used = [s for s in STAGES if any(stacked[s])]
        axis.stackplot(hours, [stacked[s] for s in used], labels=used,
                       colors=[COLOURS[STAGES.index(s)] for s in used])
        axis.axvline(result["lower_bound_s"] / 3600, color="black", linestyle="--", linewidth=1,
                     label=f"lower bound {result['lower_bound_s'] / 3600:.2f} h")
        title = "ami-distributor" if name == "ours" else "SSM runbook baseline (1 target)"
        axis.set_title(f"{title}: makespan {result['makespan_s'] / 3600:.2f} h, done {result['done']}")
        axis.set_xlabel("virtual time since the cutover started (h)")
        axis.set_xlim(0, hours[-1])
        axis.legend(loc="center right", fontsize=7)
    axes[0][0].set_ylabel("jobs")
    options = summary.get("options", {})
    figure.suptitle(f"{options.get('servers')} servers, seed {options.get('seed')}, "
                    f"{options.get('targets')} targets, faults {options.get('faults')}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
