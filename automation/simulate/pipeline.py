"""Our pipeline on the virtual clock: the real handlers, invoked the way AWS invokes them.

- SQS -> advance_jobs: the event source mapping runs at most the stage's CONSUMER_MAX_CONCURRENCY
  invocations at once, each on a batch of up to 10 messages; an invocation holds its slot for its
  modelled duration (cost.invocation_seconds of the calls it made), so a backlog waits for slots.
  Visibility, delays, redelivery and maxReceiveCount are the sandbox's SQS, on the virtual clock.
- EventBridge -> on_mgn_event / on_ami_event: each event is one asynchronous invocation, delivered
  EVENT_DELIVERY_S after it was put; AMI state-change events (best effort) are dropped at the fault
  profile's rate. A failed asynchronous invocation is retried twice (Lambda's default), a minute apart.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter

from automation.sandbox.sqs_clock import SqsClock
from automation.sandbox.throttling import Throttling
from chalicelib.events import AMI_DETAIL_TYPE

from . import cost, invariants
from .faults import event_lost
from .world import CONTROL_PLANE, MgnDriver, World, percentiles

EVENT_DELIVERY_S = 0.5  # EventBridge's typical delivery latency
ASYNC_RETRIES, ASYNC_RETRY_DELAY_S = 2, 60.0
MAX_VIRTUAL_S = 14 * 86400
THROTTLE_CODES = ("RequestLimitExceeded", "Throttling", "ThrottlingException")


class PipelineRun:
    def __init__(self, world: World) -> None:
        self.world = world
        self.sandbox, self.runner = world.sandbox, world.wave.runner
        self.concurrency = int(world.wave.stage.env.get("CONSUMER_MAX_CONCURRENCY", "20"))
        self.batch_window_s = float(world.wave.stage.env.get("CONSUMER_BATCH_WINDOW_SECONDS", "0"))
        self._batch_due_at: float | None = None
        self.memory_gb = 0.5  # advance_jobs' lambda_memory_size (512 MB); the event handlers are given the same
        self.faults = world.options.fault_model
        self.seed = world.options.seed
        self.runner.duplicate_every_message = self.faults.duplicate_messages
        self.driver = MgnDriver(world)  # kept: the operator's rounds after the wave run the loop again
        self.gb_seconds = 0.0
        self.esm_receives = 0
        self.events_dropped = 0
        self.paid_events = 0
        self._events_deletes = 0  # the events queue stands in for EventBridge: its requests are not SQS's
        self._held: list[tuple[float, int, dict, int]] = []
        self._order = 0

    def run(self) -> None:
        clock, driver = self.sandbox.clock, self.driver
        slots = [clock.now()] * self.concurrency
        while True:
            now = clock.now()
            driver.poll()
            self.sandbox.tick()  # what the driver's call set going at this instant (MGN picks the job up)
            self._take_events(now)
            while self._held and self._held[0][0] <= now:
                _, _, event, attempt = heapq.heappop(self._held)
                self._invoke_event(event, attempt, now)
            saturated = True
            for index, busy_until in enumerate(slots):
                if busy_until > now:
                    continue
                if not self._batch_ready(now):  # spares an empty ReceiveMessage (a long poll would wait)
                    saturated = False
                    break
                before = Counter(self.sandbox.service_calls)
                if not self.runner.advance():
                    saturated = False
                    break
                self.esm_receives += 1
                seconds = cost.invocation_seconds(Counter(self.sandbox.service_calls) - before)
                self.gb_seconds += seconds * self.memory_gb
                slots[index] = now + seconds
            due = [t for t in (self.sandbox.scheduler.next_due(), SqsClock.next_visible_at(),
                               self._held[0][0] if self._held else None, self._batch_due_at) if t is not None]
            if saturated:
                due.append(min(slots))
            due = [t for t in due if t > now]
            if not due:
                return
            clock.advance_to(min(due))
            self.sandbox.tick()
            if clock.now() - self.world.started_at > MAX_VIRTUAL_S:
                raise TimeoutError(f"the wave is still running after {MAX_VIRTUAL_S} virtual seconds")

    def _batch_ready(self, now: float) -> bool:
        """Lambda's SQS poller invokes once it holds a full batch, or once the first message it holds has
        waited the mapping's MaximumBatchingWindowInSeconds (0: at once)."""
        from moto.sqs.models import sqs_backends

        stage = self.world.wave.stage
        queue = sqs_backends[self.world.wave.source][stage.region].queues[stage.jobs_queue_url.rsplit("/", 1)[1]]
        receivable = [max(m.delayed_until, m.visible_at) / 1000.0 for m in queue._messages
                      if m.visible and not m.delayed]
        self._batch_due_at = None
        if not receivable:
            return False
        if len(receivable) >= self.runner.batch_size or self.batch_window_s <= 0:
            return True
        due = min(receivable) + self.batch_window_s
        if now >= due:
            return True
        self._batch_due_at = due
        return False

    def _take_events(self, now: float) -> None:
        """EventBridge's rules put matching events on the local events queue; hold each until delivery."""
        sqs, url = self.runner.sqs, self.world.wave.stage.events_queue_url
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return
            self._events_deletes += 1
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            for message in messages:
                event = json.loads(message["Body"])
                if event.get("account") != self.world.wave.source or event.get("source") != "aws.mgn":
                    self.paid_events += 1  # custom, or delivered from a target account's bus
                if event.get("detail-type") == AMI_DETAIL_TYPE and event_lost(
                        self.seed, event, self.faults.ami_event_loss, self.world.ledger):
                    self.events_dropped += 1
                    continue
                self._hold(event, 0, now + EVENT_DELIVERY_S)

    def _hold(self, event: dict, attempt: int, due: float) -> None:
        self._order += 1
        heapq.heappush(self._held, (due, self._order, event, attempt))

    def _invoke_event(self, event: dict, attempt: int, now: float) -> None:
        function = "on_ami_event" if event.get("detail-type") == AMI_DETAIL_TYPE else "on_mgn_event"
        before = Counter(self.sandbox.service_calls)
        succeeded, _ = self.runner._invoke_or_fail(function, event)
        self.gb_seconds += cost.invocation_seconds(Counter(self.sandbox.service_calls) - before) * self.memory_gb
        if not succeeded and attempt < ASYNC_RETRIES:
            self._hold(event, attempt + 1, now + ASYNC_RETRY_DELAY_S)

    # the report ------------------------------------------------------------------------------
    def report(self) -> tuple[dict, list[list[tuple[float, str]]]]:
        world, sandbox = self.world, self.sandbox
        jobs = world.wave.jobs()
        t0 = world.started_at
        statuses = Counter(j["status"] for j in jobs)
        done = statuses["DONE"]
        dead_lettered = self._dead_lettered(jobs)
        targets = world.targets
        self.checked = invariants.check(world, jobs, dead_lettered)  # from AWS state and the table: invariants.py
        calls = Counter(sandbox.service_calls)
        api_calls = {op: n for op, n in sorted(calls.items()) if op.split(":")[0] in CONTROL_PLANE}
        esm_deletes = sandbox.api_calls["sqs:DeleteMessageBatch"]  # only the event source mapping deletes in batches
        esm_deletes -= self._events_deletes
        sqs_requests = sum(n for op, n in calls.items() if op.startswith("sqs:")) + self.esm_receives + esm_deletes
        writes = sum(calls[f"dynamodb:{op}"] for op in cost.DYNAMODB_WRITES)
        reads = sum(calls[f"dynamodb:{op}"] for op in cost.DYNAMODB_READS)
        invocations = sum(self.runner.invocations.values())
        item_bytes = sum(len(json.dumps(j)) for j in jobs) / max(1, len(jobs))
        dollars = cost.pipeline_cost(invocations=invocations, gb_seconds=self.gb_seconds, sqs_requests=sqs_requests,
                                     dynamodb_writes=writes, dynamodb_reads=reads, item_bytes=item_bytes,
                                     paid_events=self.paid_events)
        ends = [j["history"][-1]["at"] for j in jobs if j["status"] != "RUNNING"]
        per_ami = max(1, done)
        bound = world.bound(targets, {j["instance_id"] for j in jobs if j["status"] == "DONE"})
        lags, ratios = self._detection(jobs)
        throttled = sum(sandbox.extension(Throttling).throttled.values())
        result = {
            "servers": world.options.servers,
            "targets": len(targets),
            "jobs": len(jobs),
            "done": done,
            "failed": statuses["FAILED"],
            "dead_lettered": len(dead_lettered),
            **self.checked.counts,
            "makespan_s": round(max(ends, default=t0) - t0, 3),
            "lower_bound_s": bound["lower_bound_s"],
            "lower_bound_parts_s": bound["parts"],
            "api_calls": api_calls,
            "api_calls_total": sum(api_calls.values()),
            "api_calls_per_ami": round(sum(api_calls.values()) / per_ami, 3),
            "invocations": dict(sorted(self.runner.invocations.items())),
            "invocations_per_ami": round(invocations / per_ami, 3),
            "sqs_requests_per_ami": round(sqs_requests / per_ami, 3),
            "dynamodb_writes_per_ami": round(writes / per_ami, 3),
            "throttled_calls": throttled,
            "throttled_share": round(throttled / max(1, sum(api_calls.values())), 4),
            "throttle_failures": sum(1 for j in jobs if j["status"] == "FAILED" and j["last_error"]
                                     and j["last_error"]["code"] in THROTTLE_CODES),
            "copies_refused_for_concurrency": sandbox.extension(Throttling).copies_refused,
            "ami_events_dropped": self.events_dropped,
            "detection_lag_s": percentiles(lags),
            "detection_lag_ratio": percentiles(ratios),
            "lambda_gb_seconds": round(self.gb_seconds, 3),
            "cost_usd": {k: round(v, 6) for k, v in dollars.items()},
            "cost_usd_per_1000_amis": round(sum(dollars.values()) * 1000 / per_ami, 4),
        }
        timelines = [[(t["at"] - t0, t["stage"] if t["status"] in ("RUNNING", "DONE") else t["status"])
                      for t in j["history"]] for j in jobs]
        return result, timelines

    def _dead_lettered(self, jobs: list[dict]) -> set[str]:
        """Instances whose running job's current message waits in the DLQ (not lost: an operator replays it)."""
        from moto.sqs.models import sqs_backends

        stage = self.world.wave.stage
        queue_name = stage.dlq_url.rsplit("/", 1)[1]
        queue = sqs_backends[self.world.wave.source][stage.region].queues[queue_name]
        current = {(j["job_id"], j["version"], j["token"]): j["instance_id"] for j in jobs if j["status"] == "RUNNING"}
        found = set()
        for message in queue._messages:
            body = json.loads(message.body)
            key = (body.get("jobId"), body.get("version"), body.get("token"))
            if key in current:
                found.add(current[key])
        return found

    def _detection(self, jobs: list[dict]) -> tuple[list[float], list[float]]:
        """From an awaited image turning available to the job's next step: the source image -> SHARE,
        the last copy -> the step after WAIT_COPY."""
        images = self.world.ledger.images
        lags, ratios = [], []
        for job in jobs:
            history = job["history"]
            source = images.get(job.get("source_image_id") or "")
            share = next((t["at"] for t in history if t["stage"] == "SHARE"), None)
            if source and source.available is not None and share is not None:
                lags.append(share - source.available)
                ratios.append((share - source.available) / max(1e-9, source.available - source.started))
            copies = [images.get(c.get("image_id") or "") for c in job["copies"].values()]
            if copies and all(c is not None and c.available is not None for c in copies):
                last = max(copies, key=lambda c: c.available)
                after = [t["at"] for t in history if t["at"] >= last.available and t["stage"] in ("CLEANUP", "DONE")]
                if after:
                    lags.append(after[0] - last.available)
                    ratios.append((after[0] - last.available) / max(1e-9, last.available - last.started))
        return lags, ratios
