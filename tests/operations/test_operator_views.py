"""status, show and report against a wave run through the real handlers in the sandbox."""
import csv
import io
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.integration.conftest import TARGET_A, TARGET_B

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def waves_of(wave):
    return sorted({j["wave"] for j in wave.jobs()})


def test_status_counts_a_wave_and_says_why_jobs_failed(finished_wave):
    finished_wave, cli = finished_wave
    jobs = finished_wave.jobs()
    [failed] = [j for j in jobs if j["status"] == "FAILED"]
    result = cli.json("status", "--stage", "local", "--wave", failed["wave"])
    assert result["by_status"] == {"FAILED": 1} and result["counts"] == {"FAILED": {"CREATE_IMAGE": 1}}
    assert result["failed"] == [{"job_id": failed["job_id"], "instance_id": failed["instance_id"],
                                 "stage": "CREATE_IMAGE", "reason": "AWS_MANAGED_KEY",
                                 "error": failed["last_error"]["code"] + ": " + failed["last_error"]["message"]}]
    everything = [cli.json("status", "--stage", "local", "--wave", w) for w in waves_of(finished_wave)]
    assert sum(r["total"] for r in everything) == 3
    assert sum(r["by_status"].get("DONE", 0) for r in everything) == 2
    table = cli("status", "--stage", "local", "--wave", failed["wave"]).stdout
    assert "AWS_MANAGED_KEY" in table and "aws/ebs" in table
    assert cli.json("status", "--stage", "local")["total"] == 0  # no active jobs left


def test_bad_input_is_refused_with_a_clear_message(finished_wave):
    finished_wave, cli = finished_wave
    for args, message in ((("status", "--stage", "nope"), "no stage 'nope'"),
                          (("status", "--stage", "local", "--wave", "no-such-wave"), "wave 'no-such-wave' has no jobs"),
                          (("status", "--stage", "local", "--status", "LOST"), "--status 'LOST'"),
                          (("show", "i-0000-missing", "--stage", "local"), "no such job in stage local: i-0000-missing"),
                          (("report", "--wave", "nope", "--format", "csv", "--stage", "local"), "has no jobs")):
        result = cli(*args, expect=2)
        assert message in result.stderr


def test_show_gives_the_history_with_time_per_stage(finished_wave):
    finished_wave, cli = finished_wave
    job = next(j for j in finished_wave.jobs() if j["status"] == "DONE")
    result = cli.json("show", job["job_id"], "--stage", "local")
    assert result["job"] == job
    stages = [s["stage"] for s in result["stages"]]
    assert stages == ["CREATE_IMAGE", "WAIT_IMAGE", "SHARE", "COPY", "WAIT_COPY", "CLEANUP"]
    history = job["history"]
    assert result["stages"][1]["seconds"] == pytest.approx(history[2]["at"] - history[1]["at"], abs=1e-3)
    text = cli("show", job["job_id"], "--stage", "local").stdout
    assert "WAIT_COPY" in text and job["copies"]["222222222222/us-east-1"]["image_id"] in text


def test_report_csv_and_json_list_every_server_with_its_copies(finished_wave, tmp_path):
    finished_wave, cli = finished_wave
    done = [j for j in finished_wave.jobs() if j["status"] == "DONE"]
    wave = done[0]["wave"]
    rows = list(csv.DictReader(io.StringIO(cli("report", "--wave", wave, "--format", "csv", "--stage", "local").stdout)))
    assert sorted(r["instance"] for r in rows) == sorted(j["instance_id"] for j in done)
    for row in rows:
        job = next(j for j in done if j["instance_id"] == row["instance"])
        assert row["server"] == job["source_server_id"] and row["source_ami"] == job["source_image_id"]
        for account, region in (TARGET_A, TARGET_B):
            assert row[f"copy {account}/{region}"] == job["copies"][f"{account}/{region}"]["image_id"]
            assert row[f"state {account}/{region}"] == "available"
        assert row["status"] == "DONE" and float(row["duration_s"]) > 0
    out = tmp_path / "wave.json"
    summary = cli.json("report", "--wave", wave, "--format", "json", "--out", out, "--stage", "local")
    assert summary == {"wave": wave, "format": "json", "jobs": 2, "out": str(out)}
    assert len(json.loads(out.read_text())["jobs"]) == 2


def test_html_report_renders_in_a_browser_with_its_timeline(finished_wave, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing on CI: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    finished_wave, cli = finished_wave
    done = [j for j in finished_wave.jobs() if j["status"] == "DONE"]
    page = tmp_path / "wave.html"
    cli("report", "--wave", done[0]["wave"], "--format", "html", "--out", page, "--stage", "local")
    body = page.read_text().split("<body>")[1].replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "src=" not in body and "http" not in body  # self-contained: the browser fetches nothing
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert dom.count('class="job DONE"') == 2
    for job in done:
        assert f'data-job-id="{job["job_id"]}"' in dom and job["copies"]["222222222222/us-east-1"]["image_id"] in dom
    assert '<span class="count" data-status="DONE">2 DONE</span>' in dom
    size = re.search(r'data-rendered-size="(\d+)x(\d+)"', dom)  # set by the page's script once laid out
    assert size and int(size.group(1)) > 500 and int(size.group(2)) > 100, "the chart was not laid out"
    bands = dict(re.findall(r'data-stage="(\w+)" data-peak="(\d+)"', dom))
    assert bands["DONE"] == "2"  # every job of the wave ends in the DONE band
    assert {"WAIT_IMAGE", "WAIT_COPY"} <= set(bands)  # and spent time waiting for images and copies
