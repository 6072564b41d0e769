"""AWS Application Migration Service (MGN): source servers, launch jobs, post-launch actions."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


class MgnService:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox

    def uninstall(self) -> None:
        pass

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None
