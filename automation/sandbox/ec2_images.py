"""AMIs and snapshots as AWS has them: real block devices, pending state, sharing across accounts, CopyImage."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


class ImageFidelity:
    def install(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox

    def uninstall(self) -> None:
        pass

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None
