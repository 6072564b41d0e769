import json

import pytest

from automation.stages import function_environment, stage_names
from chalicelib.config import ConfigError, load


def env(**overrides):
    base = {
        "JOBS_TABLE": "jobs", "JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/111111111111/jobs",
        "JOBS_QUEUE_ARN": "arn:aws:sqs:us-east-1:111111111111:jobs", "CROSS_ACCOUNT_ROLE_NAME": "CopyRole",
        "DISTRIBUTION": json.dumps({"targets": [{"accountId": "222222222222", "region": "us-east-1",
                                                 "kmsKeyId": "arn:aws:kms:us-east-1:222222222222:alias/k"}]}),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("stage", stage_names())
def test_every_configured_stage_is_valid(stage):
    settings = load(function_environment(stage))
    assert settings.distribution.targets
    assert all(t.kms_key_id for t in settings.distribution.copy_targets)


def test_defaults_act_on_cutover_launches_only():
    settings = load(env())
    assert settings.launch_types == {"CUTOVER"}
    assert not settings.distribution.cleanup.any


def test_every_problem_is_reported_at_once():
    bad = env(JOBS_TABLE=None, POLL_MAX_SECONDS="3600", EXPECTED_COPY_SECONDS="25 min", DISTRIBUTION=json.dumps({"targets": [
        {"accountId": "12345", "region": "moon-1", "kmsKeyId": "alias/aws/ebs"}]}))
    with pytest.raises(ConfigError) as raised:
        load(bad)
    message = str(raised.value)
    for fragment in ("JOBS_TABLE is not set", "POLL_MAX_SECONDS=3600", "EXPECTED_COPY_SECONDS: '25 min'", "'12345' is not a 12-digit",
                     "'moon-1' is not a region", "kmsKeyId must be the target's KMS key ARN"):
        assert fragment in message


@pytest.mark.parametrize("distribution, fragment", [
    ({"targets": []}, "at least one target"),
    ({"targets": [{"accountId": "222222222222", "region": "us-east-1",
                   "kmsKeyId": "arn:aws:kms:us-east-1:333333333333:alias/k"}]}, "must be a key of account 222222222222"),
    ({"targets": [{"accountId": "222222222222", "region": "us-east-1", "copy": False}],
      "organizationArns": ["all"]}, "never make an image public"),
    ({"targets": [{"accountId": "222222222222", "region": "us-east-1", "copy": False}],
      "cleanup": {"deregisterImage": True}}, "would remove the AMI shared"),
    ({"targets": [{"accountId": "222222222222", "region": "us-east-1",
                   "kmsKeyId": "arn:aws:kms:us-east-1:222222222222:alias/k"}],
      "cleanup": {"deleteSnapshots": True}}, "needs deregisterImage"),
])
def test_unsafe_or_malformed_distributions_are_refused(distribution, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load(env(DISTRIBUTION=json.dumps(distribution)))


def with_target(**options):
    spec = {"accountId": "222222222222", "region": "us-east-1", "kmsKeyId": "arn:aws:kms:us-east-1:222222222222:alias/k"}
    spec.update(options)
    return env(DISTRIBUTION=json.dumps({"targets": [spec]}))


def test_publishing_options_are_read_per_target():
    [target] = load(with_target(publish={"launchTemplateName": "web-tier", "tags": {"team": "a"}}, copyMinutes=30,
                                deregistrationProtection="cooldown")).distribution.targets
    assert (target.parameter_pattern, target.launch_template, target.tags) == (
        "/migrated/{wave}/{source_server_id}", "web-tier", (("team", "a"),))
    assert (target.copy_minutes, target.protection, target.publishes) == (30, "cooldown", True)
    [plain] = load(env()).distribution.targets
    assert not plain.publishes and plain.parameter_pattern is None


def test_a_target_without_new_options_keeps_its_job_ids():
    """The distribution's fingerprint names every job: a config that sets none of the new options keeps it."""
    [target] = load(env()).distribution.targets
    assert repr(target) == ("Target(account_id='222222222222', region='us-east-1', "
                            "kms_key_id='arn:aws:kms:us-east-1:222222222222:alias/k', copy=True)")


@pytest.mark.parametrize("options, problem", [
    ({"publish": {"ssmParameter": "/migrated/{server}"}}, "unknown field(s) ['server']"),
    ({"publish": {"ssmParameter": "/aws/{wave}"}}, "may not begin with 'aws' or 'ssm'"),
    ({"publish": {"ssmParameter": "migrated/{wave}"}}, "is not a parameter path"),
    ({"publish": {"launchTemplateName": "x"}}, "is not a launch template name"),
    ({"publish": {"tags": {"ami-distributor:job-id": "x"}}}, "provenance"),
    ({"publish": {"color": "red"}}, "unknown setting(s) ['color']"),
    ({"copyMinutes": 20}, "in steps of 15"),
    ({"copyMinutes": 2895}, "15 to 2880 minutes"),
    ({"deregistrationProtection": "forever"}, "deregistrationProtection='forever'"),
    ({"copy": False, "publish": True}, "need a copy"),
    ({"copy": False, "deregistrationProtection": True}, "need a copy"),
])
def test_bad_publishing_options_are_refused_at_start_with_the_setting_named(options, problem):
    with pytest.raises(ConfigError) as refused:
        load(with_target(**options))
    assert "DISTRIBUTION.targets[0]" in str(refused.value) and problem in str(refused.value)


def test_event_bus_must_be_a_bus_name_or_arn():
    assert load(env(EVENT_BUS_NAME="migrations")).event_bus == "migrations"
    assert load(env()).event_bus == ""
    with pytest.raises(ConfigError, match="EVENT_BUS_NAME"):
        load(env(EVENT_BUS_NAME="arn:aws:sqs:us-east-1:111111111111:q"))


def test_reencrypt_source_needs_a_source_key_and_copies_only():
    key = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    spec = {"accountId": "222222222222", "region": "us-east-1", "kmsKeyId": "arn:aws:kms:us-east-1:222222222222:alias/k"}
    ok = load(env(DISTRIBUTION=json.dumps({"targets": [spec], "reencryptSource": {"kmsKeyId": key}})))
    assert ok.distribution.reencrypt_key_id == key
    for extra, problem in (({"reencryptSource": {"kmsKeyId": key.replace("111111111111", "999999999999")}},
                            "key of the source account"),
                           ({"reencryptSource": {"kmsKeyId": "arn:aws:kms:us-east-1:111111111111:alias/aws/ebs"}},
                            "customer-managed KMS key ARN"),
                           ({"reencryptSource": {"kmsKeyId": key},
                             "organizationArns": ["arn:aws:organizations::111111111111:organization/o-abcdefghij"]},
                            "cannot go with share-only targets")):
        with pytest.raises(ConfigError, match="reencryptSource") as refused:
            load(env(DISTRIBUTION=json.dumps({"targets": [spec], **extra})))
        assert problem in str(refused.value)
