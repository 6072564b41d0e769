"""MGN launch jobs: which EC2 instance a source server launched, and whether its post-launch actions are done."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    # (MGN job, source server) -> the instance it launched. Never changes once set, and one DescribeJobs
    # names them for every server of the job (up to 200): a wave's launch events then cost one call per job.
    _instances: dict[tuple[str, str], str] = field(default_factory=dict)

    def launched_instance(self, mgn_job_id: str, source_server_id: str) -> str | None:
        if (mgn_job_id, source_server_id) not in self._instances:
            self.launch(mgn_job_id, source_server_id)
        return self._instances.get((mgn_job_id, source_server_id))

    def launched_all(self, mgn_job_id: str) -> tuple[bool, int]:
        """(the MGN job has ended, how many of its servers launched an instance): a wave named by an MGN job
        is complete only when it has ended and every launched instance has its job."""
        with aws_call("mgn:DescribeJobs"):
            jobs = self.mgn.describe_jobs(filters={"jobIDs": [mgn_job_id]})["items"]
        if not jobs:
            raise AwsError("mgn:DescribeJobs", "ResourceNotFoundException", f"MGN job {mgn_job_id} not found")
        servers = [s for job in jobs for s in job.get("participatingServers", [])]
        return (all(job.get("status") == "COMPLETED" for job in jobs),
                sum(1 for s in servers if s.get("launchStatus") == "LAUNCHED"))

    def launch(self, mgn_job_id: str, source_server_id: str) -> Launch:
        """The server's launch as MGN reports it now (post-launch actions change: never cached)."""
        with aws_call("mgn:DescribeJobs"):
            jobs = self.mgn.describe_jobs(filters={"jobIDs": [mgn_job_id]})["items"]
        found = None
        for job in jobs:
            for server in job.get("participatingServers", []):
                if server.get("launchedEc2InstanceID"):
                    self._instances[(mgn_job_id, server.get("sourceServerID"))] = server["launchedEc2InstanceID"]
                if server.get("sourceServerID") == source_server_id:
                    actions = server.get("postLaunchActionsStatus", {}).get("postLaunchActionsLaunchStatusList", [])
                    found = Launch(
                        source_server_id=source_server_id,
                        instance_id=server.get("launchedEc2InstanceID"),
                        launch_status=server.get("launchStatus", "PENDING"),
                        post_launch_actions_done=all(a.get("executionStatus") in FINISHED_ACTION_STATES for a in actions),
                    )
        if found is None:
            raise AwsError("mgn:DescribeJobs", "ResourceNotFoundException",
                           f"source server {source_server_id} is not part of MGN job {mgn_job_id}")
        return found
