"""A wave's per-server report (what a migration lead sends to application owners): CSV, JSON, or one
self-contained HTML file with a timeline chart of the wave (jobs by stage over time, inline SVG)."""
from __future__ import annotations

import csv
import html
import io
import json
from datetime import datetime, timezone

from chalicelib.domain.model import Job, Stage, Status
from chalicelib.domain.operations import stage_durations

# what the chart stacks, bottom to top: finished work first, so the band of work in progress rides on it
BANDS = [Status.DONE.value, Status.FAILED.value, Status.CANCELLED.value] + [
    s.value for s in Stage if s is not Stage.DONE]
COLOURS = {"DONE": "#2e7d32", "FAILED": "#c62828", "CANCELLED": "#757575", "WAIT_LAUNCH": "#6a1b9a",
           "CREATE_IMAGE": "#1565c0", "WAIT_IMAGE": "#42a5f5", "REENCRYPT": "#5c6bc0", "WAIT_REENCRYPT": "#9fa8da", "SHARE": "#00838f", "COPY": "#ef6c00",
           "WAIT_COPY": "#ffb74d", "PUBLISH": "#9e9d24", "CLEANUP": "#8d6e63"}
CHART_W, CHART_H, MARGIN, SAMPLES = 900, 260, 40, 200


def iso(at: float | None) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if at else ""


def finished_at(job: Job) -> float | None:
    return job.history[-1].at if job.status.terminal and job.history else None


def targets_of(jobs: list[Job]) -> list[str]:
    return sorted({t.key for job in jobs for t in job.distribution.copy_targets})


def rows(jobs: list[Job]) -> list[dict]:
    targets = targets_of(jobs)
    out = []
    for job in jobs:
        end = finished_at(job)
        row = {
            "job_id": job.job_id, "server": job.source_server_id or "", "instance": job.instance_id,
            "status": job.status.value, "stage": job.stage.value, "reason": job.reason.value if job.reason else "",
            "source_ami": job.source_image_id or "", "started": iso(job.created_at), "finished": iso(end),
            "duration_s": round(end - job.created_at, 1) if end else "",
            "error": f"{job.last_error.code}: {job.last_error.message}" if job.last_error and job.status is not
            Status.DONE else "",
        }
        for key in targets:
            copy = job.copies.get(key)
            row[f"copy {key}"] = (copy.image_id or "") if copy else ""
            row[f"state {key}"] = (copy.state or "") if copy else ""
        out.append(row)
    return out


def to_csv(jobs: list[Job]) -> str:
    table = rows(jobs)
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return buffer.getvalue()


def to_json(wave: str, jobs: list[Job]) -> str:
    return json.dumps({"wave": wave, "targets": targets_of(jobs), "jobs": rows(jobs)}, indent=2, sort_keys=True)


def timeline(jobs: list[Job], now: float) -> tuple[float, float, list[dict[str, int]]]:
    """(start, end, samples): at each of SAMPLES instants, how many jobs were in each band."""
    spans = []  # (band, from, to)
    for job in jobs:
        for stage, entered, seconds in stage_durations(job, now):
            spans.append((stage, entered, entered + seconds))
        end = finished_at(job)
        if end is not None:
            spans.append((job.status.value, end, float("inf")))
    start = min((j.created_at for j in jobs), default=now)
    stop = max([s for _, s, e in spans] + [e for _, _, e in spans if e != float("inf")] + [start + 1])
    samples = []
    for index in range(SAMPLES + 1):
        at = start + (stop - start) * index / SAMPLES
        counts = dict.fromkeys(BANDS, 0)
        for band, begin, end in spans:
            if begin <= at < end:
                counts[band] += 1
        samples.append(counts)
    return start, stop, samples


def chart_svg(jobs: list[Job], now: float) -> str:
    start, stop, samples = timeline(jobs, now)
    total = max((sum(s.values()) for s in samples), default=0) or 1
    width, height = CHART_W - 2 * MARGIN, CHART_H - 2 * MARGIN

    def x(index: int) -> float:
        return MARGIN + width * index / SAMPLES

    def y(count: float) -> float:
        return MARGIN + height - height * count / total

    below = [0] * len(samples)
    paths = []
    for band in BANDS:
        above = [below[i] + samples[i][band] for i in range(len(samples))]
        peak = max(samples[i][band] for i in range(len(samples)))
        if peak:
            top = " ".join(f"L{x(i):.1f},{y(above[i]):.1f}" for i in range(len(samples)))
            bottom = " ".join(f"L{x(i):.1f},{y(below[i]):.1f}" for i in reversed(range(len(samples))))
            paths.append(f'<path class="band" data-stage="{band}" data-peak="{peak}" fill="{COLOURS[band]}" '
                         f'd="M{x(0):.1f},{y(below[0]):.1f} {top} {bottom} Z"><title>{band}: up to {peak} jobs'
                         f'</title></path>')
        below = above
    axis = (f'<line x1="{MARGIN}" y1="{MARGIN + height}" x2="{MARGIN + width}" y2="{MARGIN + height}" stroke="#333"/>'
            f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{MARGIN + height}" stroke="#333"/>'
            f'<text x="{MARGIN}" y="{CHART_H - 10}" font-size="11">{iso(start)}</text>'
            f'<text x="{MARGIN + width}" y="{CHART_H - 10}" font-size="11" text-anchor="end">{iso(stop)}</text>'
            f'<text x="{MARGIN - 6}" y="{MARGIN + 4}" font-size="11" text-anchor="end">{total}</text>'
            f'<text x="{MARGIN - 6}" y="{MARGIN + height}" font-size="11" text-anchor="end">0</text>')
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" '
            f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="jobs by stage over time">'
            f'{"".join(paths)}{axis}</svg>')


def to_html(wave: str, stage_name: str, jobs: list[Job], now: float) -> str:
    table = rows(jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    legend = "".join(f'<li><span class="swatch" style="background:{COLOURS[b]}"></span>{b}</li>' for b in BANDS)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (table[0] if table else []))
    body = "".join(
        f'<tr class="job {html.escape(r["status"])}" data-job-id="{html.escape(r["job_id"])}">'
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in table)
    summary = ", ".join(f'<span class="count" data-status="{s}">{n} {s}</span>' for s, n in sorted(counts.items()))
    title = f"Wave {html.escape(wave)} ({html.escape(stage_name)})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; white-space: nowrap; }}
tr.FAILED td {{ background: #fdecea; }} tr.CANCELLED td {{ background: #eee; }}
.legend {{ list-style: none; padding: 0; display: flex; gap: 1em; flex-wrap: wrap; font-size: 12px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }}
</style></head>
<body>
<h1>{title}</h1>
<p id="summary">{len(jobs)} servers: {summary}. Report made {iso(now)}.</p>
<h2>Timeline: jobs by stage</h2>
{chart_svg(jobs, now)}
<ul class="legend">{legend}</ul>
<h2>Servers</h2>
<table id="servers"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<script>
// The chart's drawn size, for whoever checks the page in a browser (a chart that failed to lay out is 0 x 0).
const box = document.getElementById("timeline").getBBox();
document.getElementById("timeline").dataset.renderedSize = Math.round(box.width) + "x" + Math.round(box.height);
</script>
</body></html>
"""
