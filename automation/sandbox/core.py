"""The sandbox: moto, plus the AWS behaviour this service depends on and moto lacks.

One `Sandbox` is active per process (moto's state is global). It runs either in-process
(a botocore hook: tests, the simulator) or as a loopback HTTP server (the demo, `python -m
automation sandbox`). Behaviours live in extensions; each sees every request before moto does
and may patch moto's models while the sandbox runs. `fidelity=False` gives plain moto, which
is how the fidelity suite proves that each behaviour is the layer's doing.
"""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import boto3

from .clock import Clock, RealClock, VirtualClock
from .scheduler import Scheduler
from .settings import DEFAULT_REGION, SOURCE_ACCOUNT, SandboxSettings
from .transport import HttpServer, in_process_hook
from .wire import AwsRequest, AwsResponse

SANDBOX_ROLE = "sandbox-operator"  # the role every sandbox account is entered through
SERVICE_USER_AGENT = "ami-distributor"  # chalicelib's clients add it (user_agent_extra): their calls are counted apart


class Extension(Protocol):
    def install(self, sandbox: "Sandbox") -> None: ...
    def uninstall(self) -> None: ...
    def handle(self, request: AwsRequest) -> AwsResponse | None: ...


@dataclass
class Directory:
    """AWS Organizations membership, as far as sharing needs it: which accounts an ARN grants."""

    organizations: dict[str, set[str]] = field(default_factory=dict)  # org ARN -> accounts
    units: dict[str, set[str]] = field(default_factory=dict)  # OU ARN -> accounts (incl. child OUs)

    def add_organization(self, org_arn: str, accounts: set[str] | list[str]) -> None:
        self.organizations.setdefault(org_arn, set()).update(accounts)

    def add_unit(self, ou_arn: str, accounts: set[str] | list[str]) -> None:
        self.units.setdefault(ou_arn, set()).update(accounts)
        org_id = ou_arn.split("/")[1]
        for org_arn, members in self.organizations.items():
            if org_arn.endswith("/" + org_id):
                members.update(accounts)

    def grants(self, permission: dict[str, str], account_id: str) -> bool:
        if permission.get("UserId") == account_id:
            return True
        if "OrganizationArn" in permission:
            return account_id in self.organizations.get(permission["OrganizationArn"], set())
        if "OrganizationalUnitArn" in permission:
            return account_id in self.units.get(permission["OrganizationalUnitArn"], set())
        return False

    def organization_of(self, account_id: str) -> str | None:
        for org_arn, members in self.organizations.items():
            if account_id in members:
                return org_arn
        return None


@dataclass
class PublishedEvent:
    time: float
    account: str
    region: str
    source: str
    detail_type: str
    detail: dict
    resources: list[str]

    def as_eventbridge(self) -> dict:
        from datetime import datetime, timezone

        return {
            "version": "0",
            "id": f"sandbox-{abs(hash((self.time, self.detail_type, json.dumps(self.detail, sort_keys=True))))}",
            "detail-type": self.detail_type,
            "source": self.source,
            "account": self.account,
            "time": datetime.fromtimestamp(self.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": self.resources,
            "detail": self.detail,
        }


class Sandbox:
    _active: "Sandbox | None" = None

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        settings: SandboxSettings | None = None,
        fidelity: bool = True,
    ) -> None:
        self.clock = clock or VirtualClock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = settings or SandboxSettings()
        self.fidelity = fidelity
        self.scheduler = Scheduler(self.clock)
        self.directory = Directory()
        self.lock = threading.RLock()
        self.api_calls: Counter[str] = Counter()  # every request, by "service:Operation"
        self.service_calls: Counter[str] = Counter()  # those made by ami-distributor's functions
        self.published: list[PublishedEvent] = []
        self._subscribers: list[Callable[[PublishedEvent], None]] = []
        self.extensions: list[Extension] = self._load_extensions() if fidelity else []
        self.endpoint_url: str | None = None
        self.mode = "stopped"
        self._server: HttpServer | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._credentials: dict[str, dict[str, str]] = {}
        self._clients: dict[tuple[str, str, str], Any] = {}

    @staticmethod
    def _load_extensions() -> list[Extension]:
        from .extensions import all_extensions

        return all_extensions()

    def extension(self, kind: type) -> Any:
        return next(e for e in self.extensions if isinstance(e, kind))

    # lifecycle --------------------------------------------------------------------------
    def start(self, mode: str = "inprocess", port: int = 0) -> "Sandbox":
        if Sandbox._active is not None:
            raise RuntimeError("a sandbox is already running in this process; stop it first")
        from moto.core.base_backend import BackendDict
        from moto.core.model_instances import reset_model_data
        from moto.moto_api._internal import mock_random

        BackendDict.reset()
        reset_model_data()
        mock_random.seed(self.seed)  # moto's resource IDs, so that a seed replays byte for byte
        Sandbox._active = self
        for extension in self.extensions:
            extension.install(self)
        if mode == "inprocess":
            from moto.core.models import botocore_stubber

            botocore_stubber.enabled = True
            in_process_hook.sandbox = self
            boto3.DEFAULT_SESSION = None
        elif mode == "http":
            self._server = HttpServer(self, port)
            self._server.start()
            self.endpoint_url = self._server.url
            if not isinstance(self.clock, VirtualClock):
                self._ticker = threading.Thread(target=self._tick_forever, name="sandbox-tick", daemon=True)
                self._ticker.start()
        else:
            raise ValueError(f"unknown sandbox mode {mode!r}: inprocess or http")
        self.mode = mode
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server:
            self._server.stop()
        if self._ticker:
            self._ticker.join(timeout=5)
        from moto.core.models import botocore_stubber

        botocore_stubber.enabled = False
        in_process_hook.sandbox = None
        for extension in reversed(self.extensions):
            extension.uninstall()
        Sandbox._active = None

    @classmethod
    def remote(cls, endpoint_url: str) -> "Sandbox":
        """A sandbox already serving at `endpoint_url` (another process): clients and credentials only."""
        sandbox = cls(clock=RealClock(), fidelity=False)
        sandbox.endpoint_url, sandbox.mode = endpoint_url.rstrip("/"), "remote"
        return sandbox

    def __enter__(self) -> "Sandbox":
        return self if Sandbox._active is self else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @classmethod
    def active(cls) -> "Sandbox":
        if cls._active is None:
            raise RuntimeError("no sandbox is running")
        return cls._active

    # requests ---------------------------------------------------------------------------
    def handle(self, request: AwsRequest) -> AwsResponse | None:
        with self.lock:
            self.tick()
            if request.service:
                operation = f"{request.service}:{request.action}"
                self.api_calls[operation] += 1
                if SERVICE_USER_AGENT in request.headers.get("user-agent", ""):
                    self.service_calls[operation] += 1
            for extension in self.extensions:
                response = extension.handle(request)
                if response is not None:
                    return response
            return None

    def tick(self) -> int:
        """Run whatever AWS would have finished by now (images, move tasks, post-launch actions)."""
        with self.lock:
            return self.scheduler.run_due()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(0.2):
            self.tick()

    def service_call_counts(self) -> Counter[str]:
        """Calls made by ami-distributor's functions, by operation (from the serving process if remote)."""
        if self.mode != "remote":
            return Counter(self.service_calls)
        import urllib.request

        from .transport import SERVICE_CALLS_PATH

        with urllib.request.urlopen(self.endpoint_url + SERVICE_CALLS_PATH, timeout=10) as response:
            return Counter(json.load(response))

    # events ------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[PublishedEvent], None]) -> None:
        self._subscribers.append(callback)

    def publish(self, *, account: str, region: str, source: str, detail_type: str,
                detail: dict, resources: list[str]) -> PublishedEvent:
        """Put an event on `account`'s default bus: moto's rules and targets see it, and so do subscribers."""
        from moto.events.models import events_backends

        event = PublishedEvent(self.clock.now(), account, region, source, detail_type, detail, resources)
        self.published.append(event)
        events_backends[account][region].put_events([{
            "Source": source, "DetailType": detail_type, "Detail": json.dumps(detail),
            "Resources": resources, "EventBusName": "default",
        }])
        for callback in list(self._subscribers):
            callback(event)
        return event

    # clients -----------------------------------------------------------------------------
    def credentials(self, account_id: str = SOURCE_ACCOUNT) -> dict[str, str]:
        """Credentials that act as `account_id` (moto maps an assumed role's keys to its account)."""
        if account_id not in self._credentials:
            sts = boto3.client(
                "sts", region_name=DEFAULT_REGION, endpoint_url=self.endpoint_url,
                aws_access_key_id="sandbox", aws_secret_access_key="sandbox",
            )
            role_arn = f"arn:aws:iam::{account_id}:role/{SANDBOX_ROLE}"
            found = sts.assume_role(RoleArn=role_arn, RoleSessionName="sandbox")["Credentials"]
            self._credentials[account_id] = {
                "aws_access_key_id": found["AccessKeyId"],
                "aws_secret_access_key": found["SecretAccessKey"],
                "aws_session_token": found["SessionToken"],
            }
        return self._credentials[account_id]

    def session(self, account_id: str = SOURCE_ACCOUNT, region: str = DEFAULT_REGION) -> boto3.Session:
        return boto3.Session(region_name=region, **self.credentials(account_id))

    def client(self, service: str, account_id: str = SOURCE_ACCOUNT, region: str = DEFAULT_REGION) -> Any:
        """A client acting as `account_id`; cached, since building one re-reads botocore's models (~50 ms)."""
        key = (service, account_id, region)
        if key not in self._clients:
            self._clients[key] = self.session(account_id, region).client(service, endpoint_url=self.endpoint_url)
        return self._clients[key]

    def environment(self, account_id: str = SOURCE_ACCOUNT, region: str = DEFAULT_REGION) -> dict[str, str]:
        """Environment variables under which unmodified boto3 code acts as `account_id` here."""
        creds = self.credentials(account_id)
        env = {
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": creds["aws_session_token"],
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env


def real_clock_sandbox(**kwargs: Any) -> Sandbox:
    return Sandbox(clock=RealClock(), **kwargs)
