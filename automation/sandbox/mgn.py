"""AWS Application Migration Service (MGN): source servers, launch jobs, post-launch actions.

moto has no MGN. This emulates the part of its restJson1 API the service uses (MGN API Reference,
mgn-2020-02-26): DescribeSourceServers, DescribeJobs, DescribeJobLogItems, StartTest, StartCutover,
ChangeServerLifeCycleState and FinalizeCutover, per account and region; and the settings a readiness
check reads: GetReplicationConfiguration, GetLaunchConfiguration, DescribeReplicationConfigurationTemplates,
DescribeLaunchConfigurationTemplates, UpdateReplicationConfiguration(Template). Source servers are seeded
with `add_source_server`. A launch job launches one EC2 instance per server through moto's EC2
backend, publishes "MGN Source Server Launch Result" events, and runs the post-launch actions.

Replication and launch settings (what `python -m automation doctor` checks):
- each account and region has one replication configuration template and one launch configuration
  template, made on first use as MGN makes them when the service is initialized: EBS encryption
  DEFAULT (the region's EBS default key, aws/ebs unless changed);
- a seeded server's replication configuration says how its disks are encrypted: CUSTOM with the key
  when they all use one customer-managed key, DEFAULT otherwise; its launch configuration names an EC2
  launch template (made in moto's EC2) whose block device mappings carry the disks' KMS key.

Launched volumes are encrypted as EC2 reports them (ec2_images.py relies on this):
- a KMS key given at seeding (key ID, alias or ARN): Encrypted, KmsKeyId = that key's ARN;
- "aws/ebs": Encrypted, KmsKeyId = the ARN of the account's AWS-managed key for `alias/aws/ebs`,
  the key moto's KMS creates on first use of that alias (and moto's EC2 uses for default encryption);
- None: not encrypted, no KmsKeyId.
"""
from __future__ import annotations

import base64
import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from .wire import AwsRequest, AwsResponse, json_response, rest_json_error

if TYPE_CHECKING:
    from .core import Sandbox

AWS_MANAGED_EBS_KEY = "aws/ebs"
GIB = 1024**3
# MGN quotas, as DESIGN.md lists them ("AWS Application Migration Service endpoints and quotas",
# docs.aws.amazon.com/general/latest/gr/mgn.html).
MAX_SERVERS_PER_JOB = 200
MAX_SERVERS_IN_ACTIVE_JOBS = 200
MAX_CONCURRENT_JOBS = 20
MAX_PAGE = 1000  # MaxResultsType's upper bound

ACTIVE_JOB = ("PENDING", "STARTED")
# The lifecycle states from which MGN launches each kind of instance: a test may be re-run until
# cutover; a cutover needs a server marked ready for it (or is a relaunch of one cutting over).
LAUNCHABLE_FROM = {
    "START_TEST": {"READY_FOR_TEST", "TESTING", "READY_FOR_CUTOVER"},
    "START_CUTOVER": {"READY_FOR_CUTOVER", "CUTTING_OVER"},
}
LAUNCH_STATE = {"START_TEST": "TESTING", "START_CUTOVER": "CUTTING_OVER"}
EVENT_PREFIX = {"START_TEST": "TEST", "START_CUTOVER": "CUTOVER"}

# Tags MGN puts on the instances (and volumes) it launches.
MANAGED_TAG = "AWSApplicationMigrationServiceManaged"
SOURCE_SERVER_TAG = "AWSApplicationMigrationServiceSourceServerID"

# MGN's predefined post-launch actions (SSM Command documents) as the job reports them.
POST_LAUNCH_ACTIONS = (
    {"actionName": "Verify mounted volumes", "ssmDocumentName": "AWSMigration-VerifyMountedVolumes",
     "timeoutSeconds": 600, "mustSucceedForCutover": True},
    {"actionName": "Validate disk space", "ssmDocumentName": "AWSMigration-ValidateDiskSpace",
     "timeoutSeconds": 600, "mustSucceedForCutover": True},
)
# (cores, RAM GiB, the instance type MGN's right-sizing recommends for them)
SERVER_SIZES = ((2, 8, "m5.large"), (4, 16, "m5.xlarge"), (8, 32, "m5.2xlarge"))
OPERATING_SYSTEMS = (
    "Linux version 5.15.0-105-generic (Ubuntu 22.04.4 LTS)",
    "Linux version 4.18.0-513.el8.x86_64 (Red Hat Enterprise Linux 8.9)",
    "Microsoft Windows Server 2019 Datacenter",
)


class MgnError(Exception):
    def __init__(self, code: str, message: str, status: int, **fields: Any) -> None:
        super().__init__(message)
        self.response = rest_json_error(code, message, status, **fields)


def invalid(message: str, field_name: str | None = None, reason: str = "fieldValidationFailed") -> MgnError:
    fields = {"fieldList": [{"name": field_name, "message": message}]} if field_name else {}
    return MgnError("ValidationException", message, 400, reason=reason, **fields)


def conflict(message: str, servers: list[tuple[str, str]] | None = None) -> MgnError:
    """409, naming each source server in the way and why."""
    fields = {"errors": [{"message": why, "resourceId": server_id, "resourceType": "SOURCE_SERVER"}
                         for server_id, why in servers]} if servers else {}
    return MgnError("ConflictException", message, 409, **fields)


def not_found(server_id: str) -> MgnError:
    return MgnError("ResourceNotFoundException", f"Source server {server_id} not found", 404,
                    resourceId=server_id, resourceType="SOURCE_SERVER")


def iso(instant: float) -> str:
    """MGN's ISO8601DatetimeString (UTC, 'Z')."""
    return datetime.fromtimestamp(instant, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str, field_name: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise invalid(f"Invalid date {text!r}: expected ISO 8601, e.g. 2026-11-30T21:04:11Z", field_name) from None


def paginate(items: list, body: dict, render: Callable[[Any], dict]) -> dict:
    """One page of `items`; the opaque nextToken is the offset of the next one."""
    max_results = body.get("maxResults", MAX_PAGE)
    if not 1 <= max_results <= MAX_PAGE:
        raise invalid(f"maxResults must be between 1 and {MAX_PAGE}", "maxResults")
    start = 0
    if body.get("nextToken"):
        try:
            start = int(base64.urlsafe_b64decode(body["nextToken"]).decode())
        except ValueError:
            raise invalid("Invalid nextToken", "nextToken") from None
    page = {"items": [render(item) for item in items[start:start + max_results]]}
    if start + max_results < len(items):
        page["nextToken"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
    return page


@dataclass
class Disk:
    device: str
    size_gib: int
    kms_key_arn: str | None  # None: not encrypted


@dataclass
class SourceServer:
    id: str
    account: str
    region: str
    hostname: str
    disks: list[Disk]
    fail_launch: bool
    state: str
    replication_type: str
    is_archived: bool
    tags: dict[str, str]
    added_at: float
    cores: int
    ram_gib: int
    instance_type: str
    os: str
    mac: str
    ip: str
    replicator_id: str
    replication_state: str = "CONTINUOUS"
    last_test: dict = field(default_factory=dict)
    last_cutover: dict = field(default_factory=dict)
    launched_instance: dict | None = None
    ebs_encryption: str = "DEFAULT"  # replication settings: DEFAULT | CUSTOM
    ebs_encryption_key_arn: str | None = None
    launch_template_id: str = ""  # the EC2 launch template MGN launches the server with

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account}:source-server/{self.id}"

    def to_api(self, now: float) -> dict:
        finalized = self.state == "CUTOVER"  # FinalizeCutover disconnects replication
        replication = {
            "dataReplicationState": self.replication_state,
            "replicatedDisks": [
                {"deviceName": d.device, "totalStorageBytes": 0 if finalized else d.size_gib * GIB,
                 "replicatedStorageBytes": d.size_gib * GIB, "rescannedStorageBytes": 0, "backloggedStorageBytes": 0}
                for d in self.disks
            ],
            "lastSnapshotDateTime": iso(now),
            "replicatorId": self.replicator_id,
            "dataReplicationInitiation": {
                "startDateTime": iso(self.added_at),
                "steps": [{"name": step, "status": "SUCCEEDED"} for step in (
                    "WAIT", "CREATE_SECURITY_GROUP", "LAUNCH_REPLICATION_SERVER", "BOOT_REPLICATION_SERVER",
                    "AUTHENTICATE_WITH_SERVICE", "DOWNLOAD_REPLICATION_SOFTWARE", "CREATE_STAGING_DISKS",
                    "ATTACH_STAGING_DISKS", "PAIR_REPLICATION_SERVER_WITH_AGENT",
                    "CONNECT_AGENT_TO_REPLICATION_SERVER", "START_DATA_TRANSFER")],
            },
        }
        if not finalized:
            replication["lagDuration"] = "PT0S"
        life_cycle = {
            "state": self.state,
            "addedToServiceDateTime": iso(self.added_at),
            "firstByteDateTime": iso(self.added_at),
            "elapsedReplicationDuration": f"PT{int(now - self.added_at)}S",
            "lastSeenByServiceDateTime": iso(now),
        }
        if self.last_test:
            life_cycle["lastTest"] = self.last_test
        if self.last_cutover:
            life_cycle["lastCutover"] = self.last_cutover
        server = {
            "sourceServerID": self.id,
            "arn": self.arn,
            "isArchived": self.is_archived,
            "tags": self.tags,
            "replicationType": self.replication_type,
            "lifeCycle": life_cycle,
            "dataReplicationInfo": replication,
            "sourceProperties": {
                "lastUpdatedDateTime": iso(self.added_at),
                "recommendedInstanceType": self.instance_type,
                "identificationHints": {"hostname": self.hostname, "fqdn": f"{self.hostname}.corp.internal"},
                "networkInterfaces": [{"macAddress": self.mac, "ips": [self.ip], "isPrimary": True}],
                "disks": [{"deviceName": d.device, "bytes": d.size_gib * GIB} for d in self.disks],
                "cpus": [{"cores": self.cores, "modelName": "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"}],
                "ramBytes": self.ram_gib * GIB,
                "os": {"fullString": self.os},
            },
        }
        if self.launched_instance:
            server["launchedInstance"] = self.launched_instance
        return server


@dataclass
class Job:
    id: str
    account: str
    region: str
    initiated_by: str
    created_at: float
    tags: dict[str, str]
    participating: dict[str, dict]  # source server ID -> ParticipatingServer, as the API shows it
    status: str = "PENDING"
    ended_at: float | None = None
    log: list[dict] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account}:job/{self.id}"

    def to_api(self) -> dict:
        job = {
            "jobID": self.id,
            "arn": self.arn,
            "type": "LAUNCH",
            "initiatedBy": self.initiated_by,
            "creationDateTime": iso(self.created_at),
            "status": self.status,
            "participatingServers": list(self.participating.values()),
            "tags": self.tags,
        }
        if self.ended_at is not None:
            job["endDateTime"] = iso(self.ended_at)
        return job


class MgnService:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.servers: dict[tuple[str, str], dict[str, SourceServer]] = {}  # (account, region) -> ID -> server
        self.jobs: dict[tuple[str, str], dict[str, Job]] = {}
        self.operations: dict[str, Callable[[str, str, dict], AwsResponse]] = {
            "DescribeSourceServers": self._describe_source_servers,
            "DescribeJobs": self._describe_jobs,
            "DescribeJobLogItems": self._describe_job_log_items,
            "StartTest": lambda account, region, body: self._start(account, region, body, "START_TEST"),
            "StartCutover": lambda account, region, body: self._start(account, region, body, "START_CUTOVER"),
            "ChangeServerLifeCycleState": self._change_server_life_cycle_state,
            "FinalizeCutover": self._finalize_cutover,
            "GetReplicationConfiguration": self._get_replication_configuration,
            "UpdateReplicationConfiguration": self._update_replication_configuration,
            "GetLaunchConfiguration": self._get_launch_configuration,
            "DescribeReplicationConfigurationTemplates": self._describe_replication_templates,
            "UpdateReplicationConfigurationTemplate": self._update_replication_template,
            "DescribeLaunchConfigurationTemplates": self._describe_launch_templates,
        }
        self.replication_templates: dict[tuple[str, str], dict] = {}
        self.launch_templates: dict[tuple[str, str], dict] = {}

    def uninstall(self) -> None:
        self.servers.clear()
        self.jobs.clear()
        self.replication_templates.clear()
        self.launch_templates.clear()

    # seeding -------------------------------------------------------------------------------
    def add_source_server(
        self,
        account_id: str,
        region: str,
        hostname: str,
        volumes: list[dict] | None = None,
        fail_launch: bool = False,
        *,
        state: str = "READY_FOR_CUTOVER",
        replication_type: str = "AGENT_BASED",
        is_archived: bool = False,
        tags: dict[str, str] | None = None,
    ) -> str:
        """A replicated source server. `volumes`: [{"device", "size_gib", "kms_key_id"}], where
        kms_key_id is None (unencrypted), "aws/ebs" (AWS-managed key) or a KMS key ID, alias or ARN
        in the account; default: one unencrypted 30 GiB root volume."""
        volumes = volumes or [{"device": "/dev/sda1", "size_gib": 30, "kms_key_id": None}]
        with self.sandbox.lock:
            rng = self.sandbox.rng
            cores, ram_gib, instance_type = rng.choice(SERVER_SIZES)
            server = SourceServer(
                id=f"s-{rng.getrandbits(68):017x}",
                account=account_id,
                region=region,
                hostname=hostname,
                disks=[Disk(v["device"], int(v["size_gib"]), self._key_arn(account_id, region, v.get("kms_key_id")))
                       for v in volumes],
                fail_launch=fail_launch,
                state=state,
                replication_type=replication_type,
                is_archived=is_archived,
                tags=dict(tags or {}),
                added_at=self.sandbox.clock.now(),
                cores=cores,
                ram_gib=ram_gib,
                instance_type=instance_type,
                os=rng.choice(OPERATING_SYSTEMS),
                mac=":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
                ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                replicator_id=f"i-{rng.getrandbits(68):017x}",
            )
            keys = {d.kms_key_arn for d in server.disks}
            [only_key] = keys if len(keys) == 1 else [None]
            if only_key and not self._aws_managed(account_id, region, only_key):
                server.ebs_encryption, server.ebs_encryption_key_arn = "CUSTOM", only_key
            server.launch_template_id = self._ec2_launch_template(server)
            self.servers.setdefault((account_id, region), {})[server.id] = server
            return server.id

    @staticmethod
    def _aws_managed(account_id: str, region: str, key_arn: str) -> bool:
        from moto.kms.models import kms_backends

        try:
            return kms_backends[account_id][region].describe_key(key_arn).key_manager == "AWS"
        except KeyError:
            return False  # another account's key: not this account's aws/ebs

    @staticmethod
    def _ec2_launch_template(server: SourceServer) -> str:
        """The launch template MGN makes per server: its disks, their volume type and KMS key."""
        from moto.ec2.models import ec2_backends

        mappings = _block_device_mappings(server)
        template = ec2_backends[server.account][server.region].create_launch_template(
            f"mgn-{server.id}", "MGN launch template",
            {"InstanceType": server.instance_type, "BlockDeviceMappings": mappings}, {})
        return template.id

    @staticmethod
    def _key_arn(account_id: str, region: str, key: str | None) -> str | None:
        """The key ARN EC2 will report for a volume encrypted with `key`."""
        if key is None:
            return None
        from moto.kms.models import kms_backends

        kms = kms_backends[account_id][region]
        if key == AWS_MANAGED_EBS_KEY:
            return kms.describe_key(f"alias/{AWS_MANAGED_EBS_KEY}").arn  # moto creates it on first use
        if key.startswith("arn:aws:kms:") and ":key/" in key:
            return key  # possibly another account's key: EC2 reports the ARN as given
        try:
            return kms.describe_key(key).arn
        except KeyError:
            raise ValueError(f"KMS key {key!r} does not exist in account {account_id} {region}") from None

    # requests ------------------------------------------------------------------------------
    def handle(self, request: AwsRequest) -> AwsResponse | None:
        if request.service != "mgn":
            return None
        operation = self.operations.get(request.action)
        if operation is None:
            return invalid(f"Operation {request.action} is not supported by the sandbox",
                           reason="unknownOperation").response
        try:
            body = request.json
        except ValueError:
            return invalid("Request body is not valid JSON", reason="cannotParse").response
        try:
            # accountID: MGN's multi-account view acts on that account's servers and jobs.
            return operation(body.get("accountID") or request.account_id, request.region, body)
        except MgnError as error:
            return error.response

    def _describe_source_servers(self, account: str, region: str, body: dict) -> AwsResponse:
        filters = body.get("filters") or {}
        servers = list(self.servers.get((account, region), {}).values())
        if filters.get("sourceServerIDs"):
            servers = [s for s in servers if s.id in filters["sourceServerIDs"]]
        if "isArchived" in filters:
            servers = [s for s in servers if s.is_archived == filters["isArchived"]]
        if filters.get("lifeCycleStates"):
            servers = [s for s in servers if s.state in filters["lifeCycleStates"]]
        if filters.get("replicationTypes"):
            servers = [s for s in servers if s.replication_type in filters["replicationTypes"]]
        if filters.get("applicationIDs"):
            servers = []  # the sandbox's servers belong to no MGN application
        now = self.sandbox.clock.now()
        return json_response(paginate(servers, body, lambda server: server.to_api(now)))

    def _describe_jobs(self, account: str, region: str, body: dict) -> AwsResponse:
        filters = body.get("filters") or {}
        jobs = list(self.jobs.get((account, region), {}).values())
        if filters.get("jobIDs"):
            jobs = [j for j in jobs if j.id in filters["jobIDs"]]
        if filters.get("fromDate"):
            since = parse_iso(filters["fromDate"], "filters.fromDate")
            jobs = [j for j in jobs if j.created_at >= since]
        if filters.get("toDate"):
            until = parse_iso(filters["toDate"], "filters.toDate")
            jobs = [j for j in jobs if j.created_at <= until]
        return json_response(paginate(jobs, body, Job.to_api))

    def _describe_job_log_items(self, account: str, region: str, body: dict) -> AwsResponse:
        job = self.jobs.get((account, region), {}).get(body.get("jobID", ""))
        return json_response(paginate(job.log if job else [], body, dict))

    def _start(self, account: str, region: str, body: dict, initiated_by: str) -> AwsResponse:
        ids = list(dict.fromkeys(body.get("sourceServerIDs") or []))
        if not 1 <= len(ids) <= MAX_SERVERS_PER_JOB:
            raise invalid(f"sourceServerIDs must have between 1 and {MAX_SERVERS_PER_JOB} items", "sourceServerIDs")
        known = self.servers.get((account, region), {})
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise invalid(f"Source servers not found: {', '.join(unknown)}", "sourceServerIDs")
        active = [job for job in self.jobs.get((account, region), {}).values() if job.status in ACTIVE_JOB]
        busy = {server_id for job in active for server_id in job.participating}
        blocked = [(i, why) for i in ids if (why := self._why_not_launchable(known[i], busy, initiated_by))]
        if blocked:
            raise conflict("Some source servers cannot be launched", blocked)
        if len(active) >= MAX_CONCURRENT_JOBS:
            raise conflict(f"At most {MAX_CONCURRENT_JOBS} jobs can be active at once")
        if len(busy) + len(ids) > MAX_SERVERS_IN_ACTIVE_JOBS:
            raise conflict(f"At most {MAX_SERVERS_IN_ACTIVE_JOBS} source servers can be in active jobs at once; "
                           f"{len(busy)} already are")

        now = self.sandbox.clock.now()
        job = Job(
            id=f"mgnjob-{self.sandbox.rng.getrandbits(68):017x}",
            account=account, region=region, initiated_by=initiated_by, created_at=now,
            tags=dict(body.get("tags") or {}),
            participating={i: {"sourceServerID": i, "launchStatus": "PENDING"} for i in ids},
        )
        self.jobs.setdefault((account, region), {})[job.id] = job
        job.log.append({"logDateTime": iso(now), "event": "JOB_START"})
        scheduler, settings = self.sandbox.scheduler, self.sandbox.settings
        scheduler.at(now, lambda: self._begin(job, now))  # MGN picks the job up at once
        for i in ids:
            server = known[i]
            server.state = LAUNCH_STATE[initiated_by]
            initiated = {"initiated": {"apiCallDateTime": iso(now), "jobID": job.id}}
            if initiated_by == "START_TEST":
                server.last_test = initiated
            else:
                server.last_cutover = initiated
            draw = 1 + settings.durations.jitter * (2 * self.sandbox.rng.random() - 1)
            launch_at = now + settings.mgn_launch_s * draw * settings.durations.time_scale
            scheduler.at(launch_at, lambda server=server, at=launch_at: self._launch(job, server, at))
        response = json_response({"job": job.to_api()})
        return dataclasses.replace(response, status=202)

    @staticmethod
    def _why_not_launchable(server: SourceServer, busy: set[str], initiated_by: str) -> str | None:
        if server.is_archived:
            return f"Source server {server.id} is archived"
        if server.id in busy:
            return f"Source server {server.id} is already participating in an active job"
        if server.state not in LAUNCHABLE_FROM[initiated_by]:
            return f"Source server {server.id} is in lifecycle state {server.state}"
        return None

    def _change_server_life_cycle_state(self, account: str, region: str, body: dict) -> AwsResponse:
        server = self._server(account, region, body.get("sourceServerID", ""))
        wanted = (body.get("lifeCycle") or {}).get("state")
        if wanted not in ("READY_FOR_TEST", "READY_FOR_CUTOVER"):
            raise invalid("lifeCycle.state must be READY_FOR_TEST or READY_FOR_CUTOVER", "lifeCycle.state")
        if server.state in ("CUTTING_OVER", "CUTOVER") or server.is_archived:
            raise conflict(f"Cannot change the lifecycle state of {server.id} in state {server.state}",
                           [(server.id, f"lifecycle state {server.state}")])
        server.state = wanted
        return json_response(server.to_api(self.sandbox.clock.now()))

    def _finalize_cutover(self, account: str, region: str, body: dict) -> AwsResponse:
        server = self._server(account, region, body.get("sourceServerID", ""))
        cutover_job = server.last_cutover.get("initiated", {}).get("jobID")
        launched = server.launched_instance is not None and server.launched_instance["jobID"] == cutover_job
        if server.state != "CUTTING_OVER" or not launched:
            raise conflict(f"Source server {server.id} has no launched cutover instance to finalize",
                           [(server.id, f"lifecycle state {server.state}")])
        now = self.sandbox.clock.now()
        server.state = "CUTOVER"
        server.replication_state = "DISCONNECTED"
        server.last_cutover["finalized"] = {"apiCallDateTime": iso(now)}
        return json_response(server.to_api(now))

    def _server(self, account: str, region: str, server_id: str) -> SourceServer:
        server = self.servers.get((account, region), {}).get(server_id)
        if server is None:
            raise not_found(server_id)
        return server

    # replication and launch settings ------------------------------------------------------
    def replication_template(self, account: str, region: str) -> dict:
        """The account's replication configuration template, made on first use (MGN's defaults)."""
        key = (account, region)
        if key not in self.replication_templates:
            template_id = f"rct-{self.sandbox.rng.getrandbits(68):017x}"
            self.replication_templates[key] = {
                "replicationConfigurationTemplateID": template_id,
                "arn": f"arn:aws:mgn:{region}:{account}:replication-configuration-template/{template_id}",
                "associateDefaultSecurityGroup": True, "replicationServersSecurityGroupsIDs": [],
                "replicationServerInstanceType": "t3.small", "useDedicatedReplicationServer": False,
                "defaultLargeStagingDiskType": "GP3", "ebsEncryption": "DEFAULT", "bandwidthThrottling": 0,
                "dataPlaneRouting": "PRIVATE_IP", "createPublicIP": False, "stagingAreaTags": {},
                "useFipsEndpoint": False, "tags": {}, "internetProtocol": "IPV4",
            }
        return self.replication_templates[key]

    def launch_template(self, account: str, region: str) -> dict:
        key = (account, region)
        if key not in self.launch_templates:
            template_id = f"lct-{self.sandbox.rng.getrandbits(68):017x}"
            self.launch_templates[key] = {
                "launchConfigurationTemplateID": template_id,
                "arn": f"arn:aws:mgn:{region}:{account}:launch-configuration-template/{template_id}",
                "launchDisposition": "STARTED", "targetInstanceTypeRightSizingMethod": "BASIC",
                "copyPrivateIp": False, "copyTags": True, "licensing": {"osByol": True}, "bootMode": "USE_SOURCE",
                "postLaunchActions": {"deployment": "TEST_AND_CUTOVER", "ssmDocuments": []},
                "enableMapAutoTagging": False, "tags": {}, "associatePublicIpAddress": False,
                "smallVolumeMaxSize": 0, "largeVolumeConf": {"volumeType": "gp3"},
                "smallVolumeConf": {"volumeType": "gp3"},
            }
        return self.launch_templates[key]

    def _replication_configuration(self, server: SourceServer) -> dict:
        configuration = {
            "sourceServerID": server.id, "name": server.hostname,
            "associateDefaultSecurityGroup": True, "replicationServersSecurityGroupsIDs": [],
            "replicationServerInstanceType": "t3.small", "useDedicatedReplicationServer": False,
            "defaultLargeStagingDiskType": "GP3", "ebsEncryption": server.ebs_encryption,
            "replicatedDisks": [{"deviceName": d.device, "isBootDisk": i == 0, "stagingDiskType": "AUTO"}
                                for i, d in enumerate(server.disks)],
            "bandwidthThrottling": 0, "dataPlaneRouting": "PRIVATE_IP", "createPublicIP": False,
            "stagingAreaTags": {}, "useFipsEndpoint": False, "internetProtocol": "IPV4",
        }
        if server.ebs_encryption_key_arn:
            configuration["ebsEncryptionKeyArn"] = server.ebs_encryption_key_arn
        return configuration

    @staticmethod
    def _check_encryption(body: dict) -> None:
        encryption, key = body.get("ebsEncryption"), body.get("ebsEncryptionKeyArn")
        if encryption not in (None, "DEFAULT", "CUSTOM"):
            raise invalid("ebsEncryption must be DEFAULT or CUSTOM", "ebsEncryption")
        if encryption == "CUSTOM" and not key:
            raise invalid("ebsEncryptionKeyArn is required when ebsEncryption is CUSTOM", "ebsEncryptionKeyArn")
        if encryption == "DEFAULT" and key:
            raise invalid("ebsEncryptionKeyArn can only be set when ebsEncryption is CUSTOM", "ebsEncryptionKeyArn")

    def _get_replication_configuration(self, account: str, region: str, body: dict) -> AwsResponse:
        return json_response(self._replication_configuration(self._server(account, region, body.get("sourceServerID", ""))))

    def _update_replication_configuration(self, account: str, region: str, body: dict) -> AwsResponse:
        server = self._server(account, region, body.get("sourceServerID", ""))
        self._check_encryption(body)
        if body.get("ebsEncryption"):
            server.ebs_encryption = body["ebsEncryption"]
            server.ebs_encryption_key_arn = body.get("ebsEncryptionKeyArn")
        return json_response(self._replication_configuration(server))

    def _get_launch_configuration(self, account: str, region: str, body: dict) -> AwsResponse:
        server = self._server(account, region, body.get("sourceServerID", ""))
        template = self.launch_template(account, region)
        return json_response({
            "sourceServerID": server.id, "name": server.hostname, "ec2LaunchTemplateID": server.launch_template_id,
            **{k: template[k] for k in ("launchDisposition", "targetInstanceTypeRightSizingMethod", "copyPrivateIp",
                                        "copyTags", "licensing", "bootMode", "postLaunchActions",
                                        "enableMapAutoTagging")},
        })

    def _describe_replication_templates(self, account: str, region: str, body: dict) -> AwsResponse:
        templates = [self.replication_template(account, region)]
        wanted = body.get("replicationConfigurationTemplateIDs") or []
        if wanted:
            unknown = [t for t in wanted if t not in {x["replicationConfigurationTemplateID"] for x in templates}]
            if unknown:
                raise MgnError("ResourceNotFoundException", f"Replication configuration template {unknown[0]} not found",
                               404, resourceId=unknown[0], resourceType="REPLICATION_CONFIGURATION_TEMPLATE")
        return json_response(paginate(templates, body, dict))

    def _update_replication_template(self, account: str, region: str, body: dict) -> AwsResponse:
        template = self.replication_template(account, region)
        if body.get("replicationConfigurationTemplateID") != template["replicationConfigurationTemplateID"]:
            template_id = body.get("replicationConfigurationTemplateID", "")
            raise MgnError("ResourceNotFoundException", f"Replication configuration template {template_id} not found",
                           404, resourceId=template_id, resourceType="REPLICATION_CONFIGURATION_TEMPLATE")
        self._check_encryption(body)
        if body.get("ebsEncryption"):
            template["ebsEncryption"] = body["ebsEncryption"]
            template.pop("ebsEncryptionKeyArn", None)
            if body.get("ebsEncryptionKeyArn"):
                template["ebsEncryptionKeyArn"] = body["ebsEncryptionKeyArn"]
        return json_response(template)

    def _describe_launch_templates(self, account: str, region: str, body: dict) -> AwsResponse:
        return json_response(paginate([self.launch_template(account, region)], body, dict))

    # the job, on the scheduler: each step is stamped with the instant it was due ----------
    def _begin(self, job: Job, now: float) -> None:
        job.status = "STARTED"
        for server_id, participant in job.participating.items():
            if participant["launchStatus"] == "PENDING":
                participant["launchStatus"] = "IN_PROGRESS"
                job.log.append({"logDateTime": iso(now), "event": "SNAPSHOT_START",
                                "eventData": {"sourceServerID": server_id}})

    def _launch(self, job: Job, server: SourceServer, now: float) -> None:
        participant = job.participating[server.id]
        outcome = "FAILED" if server.fail_launch else "SUCCEEDED"
        if server.fail_launch:
            participant["launchStatus"] = "FAILED"
            job.log.append({"logDateTime": iso(now), "event": "LAUNCH_FAILED", "eventData": {
                "sourceServerID": server.id, "rawError": "Failed to launch the target instance: conversion failed"}})
        else:
            instance_id = self._run_instance(job, server)
            participant.update({
                "launchStatus": "LAUNCHED",
                "launchedEc2InstanceID": instance_id,
                "postLaunchActionsStatus": {
                    "ssmAgentDiscoveryDatetime": iso(now),
                    "postLaunchActionsLaunchStatusList": [
                        {"ssmDocument": dict(action), "ssmDocumentType": "COMMAND",
                         "executionID": str(uuid.UUID(int=self.sandbox.rng.getrandbits(128), version=4)),
                         "executionStatus": "IN_PROGRESS"}
                        for action in POST_LAUNCH_ACTIONS
                    ],
                },
            })
            server.launched_instance = {"ec2InstanceID": instance_id, "jobID": job.id, "firstBoot": "SUCCEEDED"}
            job.log.append({"logDateTime": iso(now), "event": "LAUNCH_START",
                            "eventData": {"sourceServerID": server.id, "targetInstanceID": instance_id}})
            settings = self.sandbox.settings
            self.sandbox.scheduler.at(now + settings.post_launch_actions_s * settings.durations.time_scale,
                                      lambda: self._finish_post_launch_actions(participant))
        if all(p["launchStatus"] in ("LAUNCHED", "FAILED") for p in job.participating.values()):
            job.status, job.ended_at = "COMPLETED", now
            job.log.append({"logDateTime": iso(now), "event": "JOB_END"})
        self.sandbox.publish(
            account=job.account, region=job.region, source="aws.mgn",
            detail_type="MGN Source Server Launch Result",
            detail={"state": f"{EVENT_PREFIX[job.initiated_by]}_LAUNCH_{outcome}", "job-id": job.id},
            resources=[server.arn],
        )

    def _run_instance(self, job: Job, server: SourceServer) -> str:
        from moto.ec2.models import ec2_backends

        tags = {
            "Name": server.hostname,
            MANAGED_TAG: "mgn.amazonaws.com",
            SOURCE_SERVER_TAG: server.id,
            "mgn.amazonaws.com-job": job.id,
            "mgn.amazonaws.com-source-server": server.id,
        }
        mappings = _block_device_mappings(server)
        reservation = ec2_backends[job.account][job.region].run_instances(
            f"ami-{self.sandbox.rng.getrandbits(68):017x}",  # the AMI MGN converts the replicated disks into
            1, None, [],
            instance_type=server.instance_type, is_instance_type_default=False, region_name=job.region,
            block_device_mappings=mappings, tags={"instance": tags, "volume": tags},
        )
        instance = reservation.instances[0]
        instance.root_device_name = server.disks[0].device  # MGN boots from the server's first disk
        return instance.id

    @staticmethod
    def _finish_post_launch_actions(participant: dict) -> None:
        for action in participant["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]:
            action["executionStatus"] = "SUCCESS"


def _block_device_mappings(server: SourceServer) -> list[dict]:
    """The server's replicated disks as EC2 block devices, each with its volume type and KMS key."""
    mappings = []
    for disk in server.disks:
        ebs = {"VolumeSize": disk.size_gib, "VolumeType": "gp3", "DeleteOnTermination": True,
               "Encrypted": disk.kms_key_arn is not None}
        if disk.kms_key_arn:
            ebs["KmsKeyId"] = disk.kms_key_arn
        mappings.append({"DeviceName": disk.device, "Ebs": ebs})
    return mappings
