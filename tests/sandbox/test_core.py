import pytest

from automation.sandbox import Sandbox, VirtualClock
from automation.sandbox._pin import PINNED_MOTO_VERSION, MotoVersionMismatch, check_moto_version


def test_a_different_moto_fails_loudly_at_import():
    check_moto_version(PINNED_MOTO_VERSION)
    with pytest.raises(MotoVersionMismatch, match="5.2.5"):
        check_moto_version("5.2.6")


def test_credentials_act_as_the_named_account(sandbox):
    assert sandbox.client("sts").get_caller_identity()["Account"] == "111111111111"
    assert sandbox.client("sts", account_id="222222222222").get_caller_identity()["Account"] == "222222222222"


def test_accounts_do_not_see_each_others_instances(sandbox):
    ec2 = sandbox.client("ec2")
    ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)
    assert len(ec2.describe_instances()["Reservations"]) == 1
    assert sandbox.client("ec2", account_id="222222222222").describe_instances()["Reservations"] == []


def test_scheduled_work_runs_when_the_virtual_clock_reaches_it(sandbox):
    ran = []
    sandbox.scheduler.after(60, lambda: ran.append(sandbox.clock.now()))
    sandbox.tick()
    assert ran == []
    sandbox.clock.advance(60)
    sandbox.client("sts").get_caller_identity()  # any request runs what is due first
    assert ran == [VirtualClock.DEFAULT_START + 60]


def test_only_one_sandbox_runs_per_process(sandbox):
    with pytest.raises(RuntimeError, match="already running"):
        Sandbox().start()


def test_http_server_binds_loopback_only(sandbox):
    if sandbox.mode != "http":
        pytest.skip("HTTP transport only")
    assert sandbox.endpoint_url.startswith("http://127.0.0.1:")
