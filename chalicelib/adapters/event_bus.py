"""Job and wave events on the stage's EventBridge bus (the contract is in domain/publishing.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..domain.errors import AwsError
from ..domain.publishing import EVENT_SOURCE
from .aws import aws_call

PUT_EVENTS_MAX = 10  # entries per PutEvents


@dataclass
class EventBus:
    events: object
    bus_name: str  # empty: events are off

    @property
    def enabled(self) -> bool:
        return bool(self.bus_name)

    def put(self, entries: list[tuple[str, dict[str, Any], list[str]]]) -> None:
        """(detail-type, detail, resources) each; PutEvents reports refused entries in a 200 answer, so a
        refusal is raised like any failed call (the caller puts them all again: consumers dedupe on eventId)."""
        for start in range(0, len(entries), PUT_EVENTS_MAX):
            chunk = [{"Source": EVENT_SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail, sort_keys=True),
                      "Resources": resources, "EventBusName": self.bus_name}
                     for detail_type, detail, resources in entries[start:start + PUT_EVENTS_MAX]]
            with aws_call("events:PutEvents"):
                answer = self.events.put_events(Entries=chunk)
            if answer.get("FailedEntryCount"):
                failed = next(e for e in answer["Entries"] if e.get("ErrorCode"))
                raise AwsError("events:PutEvents", failed["ErrorCode"], failed.get("ErrorMessage", ""))
