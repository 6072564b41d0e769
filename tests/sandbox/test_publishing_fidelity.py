"""The sandbox's publishing behaviour (automation/sandbox/publishing.py, and time-based copies and deregistration
protection in ec2_images.py), in both transports. Every test fails on plain moto (SANDBOX_FIDELITY=off)."""
import pytest

from automation.sandbox import DEFAULT_REGION, SandboxSettings
from tests.sandbox.test_ec2_images import A, B, STEADY, client, error_of, finish_everything, image, make_image, share

PARAMETER = "/migrated/wave-1/s-0123456789abcdef0"


# SSM parameters of data type aws:ec2:image ------------------------------------------------------
def test_an_image_parameter_holds_only_an_available_ami_of_the_account(make_sandbox):
    sandbox = make_sandbox(SandboxSettings(durations=STEADY))
    ssm = client(sandbox, "ssm", B)
    # an AMI B cannot see: PutParameter answers success, and the asynchronous validation creates nothing
    hidden = make_image(sandbox)
    answer = ssm.put_parameter(Name=PARAMETER, Value=hidden, Type="String", DataType="aws:ec2:image")
    assert answer["Version"] == 1
    assert error_of(ssm.get_parameter, Name=PARAMETER)["Code"] == "ParameterNotFound"
    assert ssm.put_parameter(Name=PARAMETER, Value="not-an-ami", Type="String", DataType="aws:ec2:image")
    assert error_of(ssm.get_parameter, Name=PARAMETER)["Code"] == "ParameterNotFound"

    share(sandbox, hidden, B)  # shared with B: B may use it
    ssm.put_parameter(Name=PARAMETER, Value=hidden, Type="String", DataType="aws:ec2:image")
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == hidden

    pending = client(sandbox, "ec2", B).copy_image(SourceImageId=hidden, SourceRegion=DEFAULT_REGION, Name="copy-1")["ImageId"]
    ssm.put_parameter(Name=PARAMETER, Value=pending, Type="String", DataType="aws:ec2:image", Overwrite=True)
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == hidden  # a pending copy is not available yet
    finish_everything(sandbox)
    ssm.put_parameter(Name=PARAMETER, Value=pending, Type="String", DataType="aws:ec2:image", Overwrite=True)
    found = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    assert (found["Value"], found["Version"], found["DataType"]) == (pending, 2, "aws:ec2:image")


def test_a_parameter_cannot_change_to_or_from_the_image_data_type(sandbox):
    ssm = client(sandbox, "ssm", A)
    ssm.put_parameter(Name="/plain", Value="hello", Type="String")
    assert error_of(ssm.put_parameter, Name="/plain", Value=make_image(sandbox), Type="String",
                    DataType="aws:ec2:image", Overwrite=True)["Code"] == "ValidationException"


# launch template versions -----------------------------------------------------------------------
def test_a_launch_template_version_inherits_its_source_version_and_honours_its_client_token(sandbox):
    ec2 = client(sandbox, "ec2", B)
    ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
        "ImageId": "ami-12345678", "InstanceType": "m5.large", "KeyName": "ops"})

    def new_version(token):
        return ec2.create_launch_template_version(
            LaunchTemplateName="web", SourceVersion="$Default", LaunchTemplateData={"ImageId": "ami-0abcdef1"},
            ClientToken=token)["LaunchTemplateVersion"]

    made = new_version("token-1")
    assert made["VersionNumber"] == 2
    assert made["LaunchTemplateData"] == {"ImageId": "ami-0abcdef1", "InstanceType": "m5.large", "KeyName": "ops"}
    assert new_version("token-1")["VersionNumber"] == 2  # the same request again: the same version
    assert new_version("token-2")["VersionNumber"] == 3
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="web")["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in versions) == [1, 2, 3]


# time-based copies ------------------------------------------------------------------------------
@pytest.mark.parametrize("minutes", [0, 10, 20, 2895])
def test_a_time_based_copy_takes_15_to_2880_minutes_in_steps_of_15(sandbox, minutes):
    image_id = make_image(sandbox)
    error = error_of(client(sandbox, "ec2").copy_image, SourceImageId=image_id, SourceRegion=DEFAULT_REGION,
                     Name="timed", SnapshotCopyCompletionDurationMinutes=minutes)
    assert error["Code"] == "InvalidParameterValue"


def test_a_time_based_copy_completes_within_its_duration(make_sandbox):
    sandbox = make_sandbox(SandboxSettings(durations=STEADY))
    image_id = make_image(sandbox, volumes=(("/dev/sda1", 1000, None),))  # best effort: 300 + 12 x 1000 s
    ec2 = client(sandbox, "ec2")
    timed = ec2.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="timed",
                           SnapshotCopyCompletionDurationMinutes=15)["ImageId"]
    best_effort = ec2.copy_image(SourceImageId=image_id, SourceRegion=DEFAULT_REGION, Name="best-effort")["ImageId"]
    finish_everything(sandbox, 15 * 60)
    assert (image(sandbox, timed)["State"], image(sandbox, best_effort)["State"]) == ("available", "pending")


# deregistration protection ----------------------------------------------------------------------
@pytest.mark.parametrize("cooldown, shown", [(True, "enabled-with-cooldown"), (False, "enabled-without-cooldown")])
def test_a_protected_image_cannot_be_deregistered(sandbox, cooldown, shown):
    image_id = make_image(sandbox)
    ec2 = client(sandbox, "ec2")
    assert image(sandbox, image_id)["DeregistrationProtection"] == "disabled"
    ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=cooldown)
    assert image(sandbox, image_id)["DeregistrationProtection"] == shown
    assert error_of(ec2.deregister_image, ImageId=image_id)["Code"] == "OperationNotPermitted"
    assert image(sandbox, image_id)["State"] == "available"
