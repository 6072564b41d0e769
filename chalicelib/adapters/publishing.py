"""What a target account publishes about its copy: an SSM parameter holding the AMI ID, a launch template's new
default version. Made with the target role's credentials."""
from __future__ import annotations

from dataclasses import dataclass

from .aws import aws_call


@dataclass
class TargetPublisher:
    ssm: object
    ec2: object

    def put_image_parameter(self, name: str, image_id: str, description: str, tags: dict[str, str]) -> None:
        """Create or overwrite: a retried step writes the same value again. SSM refuses tags with Overwrite,
        so they are added on their own (adding a tag that is there is a no-op). The aws:ec2:image data type
        is validated asynchronously (Systems Manager API Reference, PutParameter DataType): the copy is known
        available in this account before this is called, so the validation has nothing to refuse."""
        with aws_call("ssm:PutParameter"):
            self.ssm.put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image",
                                   Overwrite=True, Description=description[:1024])
        with aws_call("ssm:AddTagsToResource"):
            self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name,
                                          Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def new_default_version(self, template_name: str, image_id: str, description: str, client_token: str) -> int:
        """A version of the template based on its default, with the copy as its image, made the default. The
        ClientToken makes a retried step find the version it made instead of making another."""
        with aws_call("ec2:CreateLaunchTemplateVersion"):
            version = self.ec2.create_launch_template_version(
                LaunchTemplateName=template_name, SourceVersion="$Default", VersionDescription=description[:255],
                LaunchTemplateData={"ImageId": image_id}, ClientToken=client_token,
            )["LaunchTemplateVersion"]["VersionNumber"]
        with aws_call("ec2:ModifyLaunchTemplate"):
            self.ec2.modify_launch_template(LaunchTemplateName=template_name, DefaultVersion=str(version))
        return int(version)
