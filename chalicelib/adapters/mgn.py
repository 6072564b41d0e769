"""MGN launch jobs: which EC2 instance a source server launched, and whether its post-launch actions are done."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import AwsError
from .aws import aws_call

FINISHED_ACTION_STATES = {"SUCCESS", "FAILED"}


@dataclass(frozen=True)
class Launch:
    source_server_id: str
    instance_id: str | None
    launch_status: str
    post_launch_actions_done: bool


@dataclass
class MgnLaunches:
    mgn: object

    def launch(self, mgn_job_id: str, source_server_id: str) -> Launch:
        with aws_call("mgn:DescribeJobs"):
            jobs = self.mgn.describe_jobs(filters={"jobIDs": [mgn_job_id]})["items"]
        for job in jobs:
            for server in job.get("participatingServers", []):
                if server.get("sourceServerID") == source_server_id:
                    actions = server.get("postLaunchActionsStatus", {}).get("postLaunchActionsLaunchStatusList", [])
                    return Launch(
                        source_server_id=source_server_id,
                        instance_id=server.get("launchedEc2InstanceID"),
                        launch_status=server.get("launchStatus", "PENDING"),
                        post_launch_actions_done=all(a.get("executionStatus") in FINISHED_ACTION_STATES for a in actions),
                    )
        raise AwsError("mgn:DescribeJobs", "ResourceNotFoundException",
                       f"source server {source_server_id} is not part of MGN job {mgn_job_id}")
