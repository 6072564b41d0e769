"""EventBridge deliveries carry the `account` field, as AWS's do (moto's default target input drops it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from moto.events.utils import EventTemplateParser

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox

_AWS_EVENT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, "detail": <detail>}'
)


class EventBridgeFidelity:
    def install(self, sandbox: "Sandbox") -> None:
        self._original = EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = _AWS_EVENT_TEMPLATE

    def uninstall(self) -> None:
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = self._original

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None
