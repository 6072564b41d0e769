"""Waiting on AWS: a job looks at an image when its size says it should be ready, not every 900 s before."""
from automation.provision import seed_servers
from automation.sandbox import SandboxSettings
from automation.wave import Wave


def test_an_hours_long_image_is_not_polled_before_it_can_be_ready(make_sandbox):
    sandbox = make_sandbox(SandboxSettings())  # AWS's own durations: a 1 TiB server images for ~1.7 h, copies ~3.5 h
    wave = Wave.start(sandbox)
    [server] = seed_servers(sandbox, 1, wave.stage.region, wave.stage.source_key_arn, layouts=[(30, [1000])])
    sandbox.client("mgn", region=wave.stage.region).start_cutover(sourceServerIDs=[server])
    wave.run()
    [job] = wave.jobs()
    assert job["status"] == "DONE", job["last_error"]
    # SQS delays a message 900 s at most, so the job waited in hops; a look every 900 s would be ~7 looks at the
    # source image and ~14 at each copy. The plan looks at the expected end (and the AMI events wake it).
    assert sandbox.service_calls["ec2:DescribeImages"] <= 6
    assert job["size_gib"] == 1030
