"""A whole wave in the sandbox, end to end: provision a stage, seed MGN servers, cut over, run the
real handlers until every job is terminal. The demo, the tests and the simulator all start here."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

from automation.local_lambda import LocalLambda
from automation.provision import ProvisionedStage, provision, seed_servers
from automation.sandbox import SOURCE_ACCOUNT, Sandbox
from automation.stages import function_environment
from chalicelib import bootstrap


@dataclass
class Wave:
    sandbox: Sandbox
    stage: ProvisionedStage
    runner: LocalLambda

    @classmethod
    def start(cls, sandbox: Sandbox, stage_name: str = "local", env_overrides: dict | None = None,
              seed: int = 0) -> "Wave":
        env = function_environment(stage_name)
        env.update(sandbox.settings.durations.handler_expectations())
        env.update(env_overrides or {})
        # the handlers read time and randomness through bootstrap: put them on the sandbox's clock and seed
        bootstrap.overrides = bootstrap.Overrides(now=sandbox.clock.now, draw=random.Random(seed).random)
        bootstrap.reset()
        stage = provision(sandbox, env)
        return cls(sandbox, stage, LocalLambda(sandbox, stage))

    def cutover(self, servers: int, launch: str = "cutover") -> tuple[str, list[str]]:
        """Seed `servers` MGN source servers and start a cutover (or test) launch of all of them."""
        source_servers = seed_servers(self.sandbox, servers, self.stage.region, self.stage.source_key_arn)
        mgn = self.sandbox.client("mgn", region=self.stage.region)
        start = mgn.start_cutover if launch == "cutover" else mgn.start_test
        job_id = start(sourceServerIDs=source_servers)["job"]["jobID"]
        return job_id, source_servers

    def distribute(self, instance_ids: list[str], wave: str, distribution: dict | None = None) -> None:
        """The operator's path: a "Distribute Instances" event on the source account's bus."""
        detail = {"instanceIds": instance_ids, "wave": wave}
        if distribution is not None:
            detail["distribution"] = distribution
        self.sandbox.client("events", region=self.stage.region).put_events(Entries=[{
            "Source": "ami-distributor", "DetailType": "Distribute Instances", "Detail": json.dumps(detail)}])

    def run(self, **limits) -> None:
        self.runner.run(**limits)

    def mgn_job_finished(self, mgn_job_id: str) -> bool:
        mgn = self.sandbox.client("mgn", region=self.stage.region)
        [job] = mgn.describe_jobs(filters={"jobIDs": [mgn_job_id]})["items"]
        return job["status"] == "COMPLETED"

    def jobs(self) -> list[dict]:
        dynamodb = self.sandbox.client("dynamodb", region=self.stage.region)
        items, request = [], {"TableName": self.stage.env["JOBS_TABLE"]}
        while True:
            page = dynamodb.scan(**request)
            items += [json.loads(i["doc"]["S"]) for i in page["Items"] if "doc" in i]  # (not the copy slots)
            if "LastEvaluatedKey" not in page:
                return sorted(items, key=lambda j: j["job_id"])
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @property
    def source(self) -> str:
        return SOURCE_ACCOUNT
