"""Admission for copies: how many of our copies may run at once into one destination account and region.

EC2 refuses a CopyImage past the destination's limit on copies in flight (ResourceLimitExceeded). Without a
shared count, every job that finds the destination full asks again later, and many ask at once when a copy
ends. With it, a job takes a slot before it copies and gives it back when the copy ends; a job that finds no
slot waits in SQS (the same message, delayed) without calling EC2.

One item per destination in the jobs table (`job_id` = "copy-slots#<account>#<region>"), holding a map from
holder (job and target) to the slot's lease expiry. Taking a slot is one conditional write: idempotent (a
holder that already has its slot keeps it) and never past the limit. A holder that dies without giving its
slot back (a cancelled job, a lost invocation) loses it when its lease runs out: the next taker that finds the
destination full takes back expired leases first.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import AwsError
from .aws import aws_call

KEY_PREFIX = "copy-slots#"


@dataclass
class DynamoCopySlots:
    dynamodb: object
    table_name: str

    def take(self, destination: str, holder: str, lease_until: float, limit: int, now: float) -> bool:
        """A slot for `holder` (kept if it has one), unless `limit` holders with live leases have them all."""
        if self._take(destination, holder, lease_until, limit):
            return True
        if self._take_back_expired(destination, now):
            return self._take(destination, holder, lease_until, limit)
        return False

    def give_back(self, destination: str, holder: str) -> None:
        try:
            with aws_call("dynamodb:UpdateItem"):
                self.dynamodb.update_item(TableName=self.table_name, Key=self._key(destination),
                                          UpdateExpression="REMOVE holders.#h", ExpressionAttributeNames={"#h": holder},
                                          ConditionExpression="attribute_exists(holders.#h)")
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise  # (else it held no slot: given back already, or taken back when its lease ran out)

    def holders(self, destination: str) -> dict[str, float]:
        with aws_call("dynamodb:GetItem"):
            item = self.dynamodb.get_item(TableName=self.table_name, Key=self._key(destination),
                                          ConsistentRead=True).get("Item") or {}
        return {name: float(value["N"]) for name, value in item.get("holders", {}).get("M", {}).items()}

    def _take(self, destination: str, holder: str, lease_until: float, limit: int) -> bool:
        request = dict(TableName=self.table_name, Key=self._key(destination),
                       UpdateExpression="SET holders.#h = :until",
                       # no holders map yet passes here, and the SET then fails as invalid: the map is made, once
                       ConditionExpression=("attribute_not_exists(holders) OR attribute_exists(holders.#h)"
                                            " OR size(holders) < :limit"),
                       ExpressionAttributeNames={"#h": holder},
                       ExpressionAttributeValues={":until": {"N": str(lease_until)}, ":limit": {"N": str(limit)}})
        for attempt in range(2):
            try:
                with aws_call("dynamodb:UpdateItem"):
                    self.dynamodb.update_item(**request)
                return True
            except AwsError as error:
                if error.code == "ConditionalCheckFailedException":
                    return False
                if error.code != "ValidationException" or attempt:
                    raise
                self._create(destination)  # the destination's first slot: no holders map yet
        return False

    def _create(self, destination: str) -> None:
        with aws_call("dynamodb:UpdateItem"):
            self.dynamodb.update_item(TableName=self.table_name, Key=self._key(destination),
                                      UpdateExpression="SET holders = if_not_exists(holders, :none)",
                                      ExpressionAttributeValues={":none": {"M": {}}})

    def _take_back_expired(self, destination: str, now: float) -> bool:
        expired = {name: until for name, until in self.holders(destination).items() if until < now}
        if not expired:
            return False
        names = {f"#e{i}": name for i, name in enumerate(sorted(expired))}
        values = {f":e{i}": {"N": str(expired[name])} for i, name in enumerate(sorted(expired))}
        try:
            with aws_call("dynamodb:UpdateItem"):
                self.dynamodb.update_item(
                    TableName=self.table_name, Key=self._key(destination),
                    UpdateExpression="REMOVE " + ", ".join(f"holders.{n}" for n in names),
                    # each lease still the expired one read: a holder that renewed it meanwhile keeps its slot
                    ConditionExpression=" AND ".join(f"holders.{n} = :{n[1:]}" for n in names),
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except AwsError as error:
            if error.code == "ConditionalCheckFailedException":
                return True  # someone else took them back, or renewed one: worth one more try
            raise
        return True

    @staticmethod
    def _key(destination: str) -> dict:
        return {"job_id": {"S": KEY_PREFIX + destination}}
