"""The wave both runs share: a sandbox on a virtual clock, the stage provisioned, the servers seeded,
and MGN cutting them over 200 at a time (MGN's limit on servers in active jobs)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from automation.sandbox import SOURCE_ACCOUNT, Sandbox, SandboxSettings, VirtualClock
from automation.sandbox.mgn import MAX_SERVERS_IN_ACTIVE_JOBS, MgnService
from automation.sandbox.settings import DurationModel, FailureModel
from automation.provision import seed_servers
from automation.wave import Wave
from chalicelib import bootstrap

from .bound import ServerWork, lower_bound
from .ledger import Ledger, copy_key, create_key, image_draws
from .options import SimOptions, disk_layouts

FUNCTION_ENV = {"POWERTOOLS_METRICS_DISABLED": "true"}  # the simulator reads AWS state, not EMF lines


@dataclass
class World:
    options: SimOptions
    sandbox: Sandbox
    wave: Wave
    ledger: Ledger
    layouts: list[tuple[int, list[int]]]
    server_ids: list[str]
    started_at: float = 0.0

    @classmethod
    def create(cls, options: SimOptions, distribution: str) -> "World":
        faults = options.fault_model
        settings = SandboxSettings(durations=DurationModel(time_scale=options.time_scale), failures=FailureModel(create_failure_rate=faults.create_failure_rate,
                                                         copy_failure_rate=faults.copy_failure_rate))
        sandbox = Sandbox(clock=VirtualClock(), seed=options.seed, settings=settings).start("inprocess")
        try:
            env = {**FUNCTION_ENV, **options.overrides, "DISTRIBUTION": distribution}
            wave = Wave.start(sandbox, options.stage, env_overrides=env, seed=options.seed)
            ledger = Ledger(sandbox, options.seed)
            layouts = disk_layouts(options.servers, options.seed)
            server_ids = seed_servers(sandbox, options.servers, wave.stage.region, wave.stage.source_key_arn,
                                      layouts=layouts)
        except BaseException:
            close(sandbox)
            raise
        return cls(options, sandbox, wave, ledger, layouts, server_ids, sandbox.clock.now())

    def close(self) -> None:
        close(self.sandbox)

    @property
    def targets(self) -> list[dict]:
        return json.loads(self.wave.stage.env["DISTRIBUTION"])["targets"]

    def bound(self, targets: list[dict], finished: set[str]) -> dict:
        """The lower bound for the work that was done (the `finished` instances: a failed job's work
        was never done), durations drawn as the ledger draws them."""
        durations = self.sandbox.settings.durations
        gib = {f"app-{i:04d}.corp.example": root + sum(data) for i, (root, data) in enumerate(self.layouts)}
        work = []
        for launch in self.ledger.launches.values():
            if launch.instance_id not in finished:
                continue
            size = gib[launch.hostname]
            create = durations.create_seconds(size, image_draws(self.options.seed, create_key(launch.hostname)).random())
            copies = {f"{t['accountId']}/{t['region']}": durations.copy_seconds(size, image_draws(
                self.options.seed, copy_key(launch.hostname, t["accountId"], t["region"], 0)).random())
                for t in targets}
            work.append(ServerWork(launch.at, create, copies))
        return lower_bound(work, self.started_at, self.sandbox.settings)


def close(sandbox: Sandbox) -> None:
    sandbox.stop()
    bootstrap.overrides = bootstrap.Overrides()
    bootstrap.reset()


class MgnDriver:
    """The operator's side of the cutover: the next MGN job starts when the one before has launched."""

    def __init__(self, world: World) -> None:
        self.sandbox, self.region = world.sandbox, world.wave.stage.region
        self.pending = list(world.server_ids)
        self.current: str | None = None
        self._jobs = world.sandbox.extension(MgnService).jobs

    def poll(self) -> None:
        if not self.pending:
            return
        if self.current is not None and self._jobs[(SOURCE_ACCOUNT, self.region)][self.current].status != "COMPLETED":
            return
        batch, self.pending = self.pending[:MAX_SERVERS_IN_ACTIVE_JOBS], self.pending[MAX_SERVERS_IN_ACTIVE_JOBS:]
        mgn = self.sandbox.client("mgn", region=self.region)
        self.current = mgn.start_cutover(sourceServerIDs=batch)["job"]["jobID"]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Median and p99 by nearest rank (deterministic, no interpolation)."""
    if not values:
        return {"median": None, "p99": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))], 3)

    return {"median": rank(50), "p99": rank(99)}


CONTROL_PLANE = ("ec2", "sts", "kms", "mgn", "ssm", "events")
