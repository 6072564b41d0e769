"""Jobs in DynamoDB: one item per job, written only if the version read is still the version stored.

Keys and index attributes are top-level attributes; the whole job is also kept as one JSON
document, so a new field never needs a migration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

from ..domain.errors import AwsError
from ..domain.model import Job, Status
from .aws import aws_call

WAVE_INDEX = "by-wave"
IMAGE_INDEX = "by-image"


class StaleJob(Exception):
    """Someone else wrote the job since we read it: our step lost the race and must do nothing more."""


class JobExists(Exception):
    pass


@dataclass(frozen=True)
class JobSummary:
    """A job as the table's top-level attributes describe it: enough to count a wave without its documents."""

    job_id: str
    stage: str
    status: str
    created_at: float | None  # read only where the order of reading does not give it (a scan)


@dataclass
class DynamoJobStore:
    dynamodb: object
    table_name: str
    ttl_days: int = 90

    def create(self, job: Job) -> None:
        try:
            with aws_call("dynamodb:PutItem"):
                self.dynamodb.put_item(TableName=self.table_name, Item=self._item(job),
                                       ConditionExpression="attribute_not_exists(job_id)")
        except AwsError as error:
            if error.code == "ConditionalCheckFailedException":
                raise JobExists(job.job_id) from None
            raise

    def get(self, job_id: str) -> Job | None:
        with aws_call("dynamodb:GetItem"):
            item = self.dynamodb.get_item(TableName=self.table_name, Key={"job_id": {"S": job_id}},
                                          ConsistentRead=True).get("Item")
        return self._job(item) if item else None

    def save(self, job: Job, read_version: int) -> None:
        """Write `job` (whose version the caller has already bumped) if the stored one is still `read_version`."""
        try:
            with aws_call("dynamodb:PutItem"):
                self.dynamodb.put_item(TableName=self.table_name, Item=self._item(job),
                                       ConditionExpression="version = :read",
                                       ExpressionAttributeValues={":read": {"N": str(read_version)}})
        except AwsError as error:
            if error.code == "ConditionalCheckFailedException":
                raise StaleJob(job.job_id) from None
            raise

    def job_ids_awaiting(self, image_id: str) -> list[str]:
        with aws_call("dynamodb:Query"):
            items = self.dynamodb.query(
                TableName=self.table_name, IndexName=IMAGE_INDEX,
                KeyConditionExpression="awaited_image_id = :image",
                ExpressionAttributeValues={":image": {"S": image_id}},
            )["Items"]
        return [item["job_id"]["S"] for item in items]

    def jobs_of_wave(self, wave: str) -> Iterator[Job]:
        request = {"TableName": self.table_name, "IndexName": WAVE_INDEX,
                   "KeyConditionExpression": "wave = :wave", "ExpressionAttributeValues": {":wave": {"S": wave}}}
        yield from (self._job(item) for item in self._items("dynamodb:Query", request))

    def summaries(self, wave: str | None = None, status: str | None = None) -> Iterator["JobSummary"]:
        """A few top-level attributes per job (never `doc`), paginated: a wave through its GSI, oldest
        first (the index's sort key), or every job of the table (a scan, in no order)."""
        names = {"#s": "status"}
        request: dict = {"TableName": self.table_name, "ProjectionExpression": "job_id, stage, #s"}
        values: dict = {}
        if status:
            request["FilterExpression"], values[":status"] = "#s = :status", {"S": status}
        if wave is not None:
            names["#w"] = "wave"
            request.update(IndexName=WAVE_INDEX, KeyConditionExpression="#w = :wave")
            values[":wave"] = {"S": wave}
        else:
            request["ProjectionExpression"] += ", created_at"  # a scan has no order: the oldest is found by it
        request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        for item in self._items("dynamodb:Query" if wave is not None else "dynamodb:Scan", request):
            if "status" not in item:
                continue  # not a job: a destination's copy slots (adapters/copy_slots.py) share the table
            yield JobSummary(item["job_id"]["S"], item["stage"]["S"], item["status"]["S"],
                             float(item["created_at"]["N"]) if "created_at" in item else None)

    def wave_statuses(self, wave: str) -> Iterator[tuple[str, str]]:
        """(job ID, status) of each job of a wave, oldest first, from its index (which lags the table a little)."""
        request = {"TableName": self.table_name, "IndexName": WAVE_INDEX, "KeyConditionExpression": "#w = :wave",
                   "ProjectionExpression": "job_id, #s", "ExpressionAttributeNames": {"#w": "wave", "#s": "status"},
                   "ExpressionAttributeValues": {":wave": {"S": wave}}}
        yield from ((item["job_id"]["S"], item["status"]["S"]) for item in self._items("dynamodb:Query", request))

    def _items(self, operation: str, request: dict) -> Iterator[dict]:
        """Every item a Query or Scan ("dynamodb:Query", "dynamodb:Scan") returns, page after page."""
        call = self.dynamodb.query if operation == "dynamodb:Query" else self.dynamodb.scan
        request = dict(request)
        while True:
            with aws_call(operation):
                page = call(**request)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_many(self, job_ids: list[str]) -> list[Job]:
        """BatchGetItem, 100 keys a call; what DynamoDB leaves unprocessed is asked for again."""
        jobs: list[Job] = []
        for start in range(0, len(job_ids), 100):
            keys = [{"job_id": {"S": job_id}} for job_id in job_ids[start:start + 100]]
            while keys:
                with aws_call("dynamodb:BatchGetItem"):
                    answer = self.dynamodb.batch_get_item(RequestItems={
                        self.table_name: {"Keys": keys, "ConsistentRead": True}})
                jobs.extend(self._job(item) for item in answer["Responses"].get(self.table_name, []))
                keys = answer.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        return jobs

    def jobs_with_status(self, wave: str, status: str) -> Iterator[Job]:
        """Whole jobs of one status in a wave (the failed ones, say): the GSI, filtered, paginated."""
        request = {"TableName": self.table_name, "IndexName": WAVE_INDEX, "KeyConditionExpression": "wave = :wave",
                   "FilterExpression": "#s = :status", "ExpressionAttributeNames": {"#s": "status"},
                   "ExpressionAttributeValues": {":wave": {"S": wave}, ":status": {"S": status}}}
        yield from (self._job(item) for item in self._items("dynamodb:Query", request))

    def _item(self, job: Job) -> dict:
        item = {
            "job_id": {"S": job.job_id},
            "wave": {"S": job.wave},
            "stage": {"S": job.stage.value},
            "status": {"S": job.status.value},
            "version": {"N": str(job.version)},
            "created_at": {"N": repr(job.created_at)},
            "doc": {"S": json.dumps(job.to_dict(), sort_keys=True)},
        }
        if job.awaited_image_id and job.status is Status.RUNNING:
            item["awaited_image_id"] = {"S": job.awaited_image_id}
        if job.status.terminal:
            item["expires_at"] = {"N": str(int(job.updated_at + self.ttl_days * 86400))}
        return item

    @staticmethod
    def _job(item: dict) -> Job:
        return Job.from_dict(json.loads(item["doc"]["S"]))
