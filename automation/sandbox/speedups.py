"""Memoisation for moto's per-request work that depends only on code, never on state: what the simulator's
hundreds of thousands of calls spend most of their overhead on. No behaviour changes.

- moto's EventBridge parses the target's input paths with jsonpath_ng on every event it delivers (a yacc
  parser built each time);
- moto lists a response class's methods with inspect.getmembers on every request;
- moto's SQS builds a queue's whole attribute map, counting every message it holds three times over, on every
  SendMessage, to read one flag (ContentBasedDeduplication): the map is made lazy, each value computed
  as it is read, so a send no longer costs time in proportion to the queue's depth.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Iterator

import jsonpath_ng.ext
import moto.core.responses as moto_responses
import moto.sqs.models as sqs_models
from moto.core.utils import camelcase_to_underscores

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


class MotoSpeedups:
    def install(self, sandbox: "Sandbox") -> None:
        self._originals = (jsonpath_ng.ext.parse, moto_responses.method_names_from_class, sqs_models.Queue.attributes)
        jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)
        moto_responses.method_names_from_class = functools.lru_cache(maxsize=256)(
            moto_responses.method_names_from_class)
        sqs_models.Queue.attributes = property(LazyQueueAttributes)

    def uninstall(self) -> None:
        jsonpath_ng.ext.parse, moto_responses.method_names_from_class, sqs_models.Queue.attributes = self._originals

    def handle(self, request: AwsRequest) -> AwsResponse | None:
        return None


class LazyQueueAttributes(Mapping):
    """moto's `Queue.attributes` (moto/sqs/models.py), the same keys and values, each computed when read."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._keys = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            self._keys += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            self._keys += queue.KMS_ATTRIBUTES

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        value = getattr(self._queue, _attribute_name(key))
        if key == "RedrivePolicy" and value:
            value = json.dumps(value)
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


_attribute_name = functools.lru_cache(maxsize=None)(camelcase_to_underscores)
