"""MGN replication and launch settings in the sandbox (what doctor reads), valid against botocore's MGN model."""
import pytest
from botocore.exceptions import ClientError

from automation.sandbox.mgn import MgnService
from tests.sandbox.test_mgn import REGION, SOURCE, mgn_client


def make_key(sandbox):
    return sandbox.client("kms").create_key(Description="mgn")["KeyMetadata"]["Arn"]


def add_server(sandbox, kms_key_id, hostname="app.corp.example"):
    return sandbox.extension(MgnService).add_source_server(
        SOURCE, REGION, hostname, [{"device": "/dev/sda1", "size_gib": 30, "kms_key_id": kms_key_id},
                                   {"device": "/dev/sdf", "size_gib": 100, "kms_key_id": kms_key_id}])


def test_a_server_on_a_customer_key_replicates_with_it(sandbox):
    key = make_key(sandbox)
    server = add_server(sandbox, key)
    configuration = mgn_client(sandbox).get_replication_configuration(sourceServerID=server)
    assert (configuration["ebsEncryption"], configuration["ebsEncryptionKeyArn"]) == ("CUSTOM", key)
    assert [d["deviceName"] for d in configuration["replicatedDisks"]] == ["/dev/sda1", "/dev/sdf"]
    assert configuration["replicatedDisks"][0]["isBootDisk"] is True


def test_a_server_on_aws_ebs_replicates_with_default(sandbox):
    server = add_server(sandbox, "aws/ebs")
    configuration = mgn_client(sandbox).get_replication_configuration(sourceServerID=server)
    assert configuration["ebsEncryption"] == "DEFAULT" and "ebsEncryptionKeyArn" not in configuration


def test_the_launch_configuration_names_an_ec2_launch_template_with_the_disks_keys(sandbox):
    key = make_key(sandbox)
    server = add_server(sandbox, key)
    launch = mgn_client(sandbox).get_launch_configuration(sourceServerID=server)
    assert launch["sourceServerID"] == server and launch["ec2LaunchTemplateID"].startswith("lt-")
    [version] = sandbox.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=launch["ec2LaunchTemplateID"], Versions=["$Default"])["LaunchTemplateVersions"]
    mappings = version["LaunchTemplateData"]["BlockDeviceMappings"]
    assert [(m["DeviceName"], m["Ebs"]["KmsKeyId"], m["Ebs"]["Encrypted"]) for m in mappings] == [
        ("/dev/sda1", key, True), ("/dev/sdf", key, True)]


def test_templates_start_as_mgn_initializes_them_and_can_be_updated(sandbox):
    mgn = mgn_client(sandbox)
    [template] = mgn.describe_replication_configuration_templates()["items"]
    assert template["ebsEncryption"] == "DEFAULT" and template["replicationConfigurationTemplateID"].startswith("rct-")
    key = make_key(sandbox)
    updated = mgn.update_replication_configuration_template(
        replicationConfigurationTemplateID=template["replicationConfigurationTemplateID"],
        ebsEncryption="CUSTOM", ebsEncryptionKeyArn=key)
    assert (updated["ebsEncryption"], updated["ebsEncryptionKeyArn"]) == ("CUSTOM", key)
    [again] = mgn.describe_replication_configuration_templates(
        replicationConfigurationTemplateIDs=[template["replicationConfigurationTemplateID"]])["items"]
    assert again["ebsEncryptionKeyArn"] == key
    [launch] = mgn.describe_launch_configuration_templates()["items"]
    assert launch["launchConfigurationTemplateID"].startswith("lct-")


def test_update_replication_configuration_of_one_server(sandbox):
    server = add_server(sandbox, make_key(sandbox))
    mgn = mgn_client(sandbox)
    assert mgn.update_replication_configuration(sourceServerID=server, ebsEncryption="DEFAULT")["ebsEncryption"] == "DEFAULT"
    assert mgn.get_replication_configuration(sourceServerID=server)["ebsEncryption"] == "DEFAULT"


@pytest.mark.parametrize("request_args, code", [
    ({"ebsEncryption": "CUSTOM"}, "ValidationException"),
    ({"ebsEncryption": "DEFAULT", "ebsEncryptionKeyArn": "arn:aws:kms:us-east-1:111111111111:key/abc"},
     "ValidationException"),
])
def test_a_custom_encryption_needs_a_key_and_only_then(sandbox, request_args, code):
    mgn = mgn_client(sandbox)
    [template] = mgn.describe_replication_configuration_templates()["items"]
    with pytest.raises(ClientError) as error:
        mgn.update_replication_configuration_template(
            replicationConfigurationTemplateID=template["replicationConfigurationTemplateID"], **request_args)
    assert error.value.response["Error"]["Code"] == code


def test_unknown_servers_and_templates_are_not_found(sandbox):
    mgn = mgn_client(sandbox)
    for call in (lambda: mgn.get_replication_configuration(sourceServerID="s-00000000000000000"),
                 lambda: mgn.get_launch_configuration(sourceServerID="s-00000000000000000"),
                 lambda: mgn.describe_replication_configuration_templates(
                     replicationConfigurationTemplateIDs=["rct-00000000000000000"])):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
