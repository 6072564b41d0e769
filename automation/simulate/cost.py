"""What a wave costs at AWS's public list prices (us-east-1, on-demand, free tiers left out), and how
long each Lambda invocation runs (it is billed by the millisecond).

Prices, as the services' pricing pages list them:
- AWS Lambda (aws.amazon.com/lambda/pricing): $0.20 per 1M requests; $0.0000166667 per GB-second (x86).
- Amazon SQS (aws.amazon.com/sqs/pricing): standard queue, $0.40 per 1M requests (each 64 KB chunk
  of a payload is a request; our messages are far smaller).
- Amazon DynamoDB (aws.amazon.com/dynamodb/pricing/on-demand): $0.625 per 1M write request units,
  $0.125 per 1M read request units (the November 2024 on-demand prices). A write unit is 1 KB of
  item, and every GSI the write changes is written too; a strongly consistent read unit is 4 KB.
- Amazon EventBridge (aws.amazon.com/eventbridge/pricing): events from AWS services on the default
  bus are free; custom events and events delivered to another account's bus, $1.00 per 1M.
- AWS Systems Manager Automation (aws.amazon.com/systems-manager/pricing): $0.002 per step;
  aws:executeScript, $0.00003 per second of script.
"""
from __future__ import annotations

import math
from collections import Counter

LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND = 0.0000166667
SQS_PER_REQUEST = 0.40 / 1e6
DYNAMODB_PER_WRU = 0.625 / 1e6
DYNAMODB_PER_RRU = 0.125 / 1e6
EVENTBRIDGE_PER_EVENT = 1.00 / 1e6
SSM_PER_STEP = 0.002
SSM_SCRIPT_PER_SECOND = 0.00003

# How long one call takes from inside a Lambda function in the same region: modelled from
# commonly observed p50 latencies (DynamoDB single-digit ms, SQS ~10 ms, EC2 and STS control-plane
# calls 50-200 ms). Not published by AWS; they only set invocation durations (cost, concurrency).
CALL_LATENCY_S = {"dynamodb": 0.006, "sqs": 0.012, "kms": 0.02, "sts": 0.06, "mgn": 0.1, "ssm": 0.03,
                  "events": 0.02}
EC2_DESCRIBE_LATENCY_S = 0.1
EC2_MUTATING_LATENCY_S = 0.2
INVOCATION_OVERHEAD_S = 0.005  # the handler's own work (parsing, JSON, logging)

DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
DYNAMODB_READS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")


def call_latency(operation: str) -> float:
    service, _, action = operation.partition(":")
    if service == "ec2":
        return EC2_DESCRIBE_LATENCY_S if action.startswith("Describe") else EC2_MUTATING_LATENCY_S
    return CALL_LATENCY_S.get(service, 0.05)


def invocation_seconds(calls: Counter[str]) -> float:
    return INVOCATION_OVERHEAD_S + sum(call_latency(op) * n for op, n in calls.items())


def pipeline_cost(*, invocations: int, gb_seconds: float, sqs_requests: int, dynamodb_writes: int,
                  dynamodb_reads: int, item_bytes: float, paid_events: int) -> dict[str, float]:
    """Dollars per service for one wave. A write costs ceil(item KB) units for the table and again for
    the by-wave GSI (it projects ALL); by-image (KEYS_ONLY) adds one unit when the write touches it,
    counted here for every write (an upper estimate)."""
    wru_per_write = 2 * max(1, math.ceil(item_bytes / 1024)) + 1
    rru_per_read = max(1, math.ceil(item_bytes / 4096))
    return {
        "lambda": invocations * LAMBDA_PER_REQUEST + gb_seconds * LAMBDA_PER_GB_SECOND,
        "sqs": sqs_requests * SQS_PER_REQUEST,
        "dynamodb": dynamodb_writes * wru_per_write * DYNAMODB_PER_WRU + dynamodb_reads * rru_per_read * DYNAMODB_PER_RRU,
        "eventbridge": paid_events * EVENTBRIDGE_PER_EVENT,
    }


def runbook_cost(*, steps: int, script_seconds: float) -> dict[str, float]:
    return {"ssm_automation": steps * SSM_PER_STEP + script_seconds * SSM_SCRIPT_PER_SECOND}
