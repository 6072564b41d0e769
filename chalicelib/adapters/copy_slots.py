"""Admission for copies: how many of our copies may run at once into one destination account and region.

EC2 refuses a CopyImage past the destination's limit on copies in flight (ResourceLimitExceeded). Without a
shared count, every job that finds the destination full asks again later, and many ask at once when a copy
ends. With it, a job takes a slot before it copies and gives it back when the copy ends; a job that finds no
slot waits in SQS (the same message, delayed) without calling EC2.

One item per destination in the jobs table (`job_id` = "copy-slots#<account>#<region>"), holding:
- `holders`: holder (job and target) -> the slot's lease expiry. Taking a slot is one conditional write:
  idempotent (a holder that already has its slot keeps it) and never past the limit. A holder that dies without
  giving its slot back (a cancelled job, a lost invocation) loses it when its lease runs out: the next taker that
  finds the destination full takes back expired leases first.
- `waiters`: holder -> {claim, until} for copies refused a slot. The claim is the copy's expected duration, and
  the longest claim goes first: a wave ends with its longest copy, so the longest copies must not queue behind
  the short ones that ask more often (longest-processing-time-first). A free slot goes to a newcomer only when
  more slots are free than waiters with a longer claim, and whoever gives a slot back learns the first waiter, to
  wake it. The line keeps the `line_length` longest claims, so that the item stays small (DynamoDB bills a write
  by the item's size, and caps it at 400 KB); a copy left off it, or whose registration ran out (`until`),
  still asks again on its own, as every waiter does.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import AwsError
from .aws import aws_call

KEY_PREFIX = "copy-slots#"


@dataclass(frozen=True)
class Waiter:
    holder: str
    claim: float  # the copy's expected seconds: the longest goes first
    until: float  # a registration not renewed by then is ignored (its job ended, say)

    def __lt__(self, other: "Waiter") -> bool:  # sorts first-in-line first
        return (-self.claim, self.holder) < (-other.claim, other.holder)


@dataclass(frozen=True)
class Slots:
    holders: dict[str, float]
    waiters: list[Waiter]  # first in line first
    has_waiters_map: bool

    @classmethod
    def of(cls, item: dict) -> "Slots":
        holders = {name: float(value["N"]) for name, value in item.get("holders", {}).get("M", {}).items()}
        waiters = sorted(Waiter(name, float(value["M"]["claim"]["N"]), float(value["M"]["until"]["N"]))
                         for name, value in item.get("waiters", {}).get("M", {}).items())
        return cls(holders, waiters, "waiters" in item)

    def first_waiter(self, now: float) -> str | None:
        return next((w.holder for w in self.waiters if w.until >= now and w.holder not in self.holders), None)


@dataclass
class DynamoCopySlots:
    dynamodb: object
    table_name: str
    line_length: int = 200  # ~100 bytes a claim: with 300 holders the item stays near 40 KB (its write units)

    def take(self, destination: str, holder: str, lease_until: float, limit: int, now: float, claim: float) -> bool:
        """A slot for `holder` (kept if it has one), unless `limit` holders with live leases have them all, or the
        free ones are due to waiters with longer claims; refused, the holder joins the waiters."""
        if self._take_if_nobody_waits(destination, holder, lease_until, limit):
            return True
        slots = self._read(destination)
        if holder in slots.holders:
            return True
        expired = sorted(name for name, until in slots.holders.items() if until < now)
        if expired:
            self._take_back(destination, {name: slots.holders[name] for name in expired})
        live = len(slots.holders) - len(expired)
        mine = Waiter(holder, claim, lease_until)
        fresh = [w for w in slots.waiters if w.until >= now and w.holder != holder and w.holder not in slots.holders]
        ahead = sum(1 for w in fresh if w < mine)
        stale = [w.holder for w in slots.waiters if w not in fresh and w.holder != holder]
        if live + ahead < limit and self._take_in_line(destination, holder, lease_until, limit, slots, stale):
            return True
        self._wait(destination, mine, fresh, stale)
        return False

    def give_back(self, destination: str, holder: str, now: float) -> str | None:
        """Gives the slot back; returns the first waiter, who may now take it (None if nobody waits)."""
        try:
            with aws_call("dynamodb:UpdateItem"):
                item = self.dynamodb.update_item(
                    TableName=self.table_name, Key=self._key(destination), UpdateExpression="REMOVE holders.#h",
                    ExpressionAttributeNames={"#h": holder}, ConditionExpression="attribute_exists(holders.#h)",
                    ReturnValues="ALL_NEW").get("Attributes", {})
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise
            return None  # it held no slot: given back already, or taken back when its lease ran out
        return Slots.of(item).first_waiter(now)

    def leave_line(self, destination: str, holder: str) -> None:
        """A waiter that no longer waits (its job ended, or copied meanwhile)."""
        try:
            with aws_call("dynamodb:UpdateItem"):
                self.dynamodb.update_item(TableName=self.table_name, Key=self._key(destination),
                                          UpdateExpression="REMOVE waiters.#h", ExpressionAttributeNames={"#h": holder},
                                          ConditionExpression="attribute_exists(waiters.#h)")
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise

    def holders(self, destination: str) -> dict[str, float]:
        return self._read(destination).holders

    def waiters(self, destination: str) -> list[Waiter]:
        return self._read(destination).waiters

    def _read(self, destination: str) -> Slots:
        with aws_call("dynamodb:GetItem"):
            item = self.dynamodb.get_item(TableName=self.table_name, Key=self._key(destination),
                                          ConsistentRead=True).get("Item") or {}
        return Slots.of(item)

    def _take_if_nobody_waits(self, destination: str, holder: str, lease_until: float, limit: int) -> bool:
        """The common case, one write: a slot is free and nobody waits for one."""
        return self._update(destination, "SET holders.#h = :until",
                            # no holders map yet passes here, and the SET then fails as invalid: the map is made, once
                            "attribute_not_exists(holders) OR attribute_exists(holders.#h)"
                            " OR (size(holders) < :limit AND (attribute_not_exists(waiters) OR size(waiters) = :zero))",
                            {"#h": holder}, {":until": {"N": str(lease_until)}, ":limit": {"N": str(limit)},
                                             ":zero": {"N": "0"}})

    def _take_in_line(self, destination: str, holder: str, lease_until: float, limit: int, slots: Slots,
                      stale: list[str]) -> bool:
        names = {"#h": holder} | {f"#s{i}": name for i, name in enumerate(stale)}
        removed = [f"waiters.{n}" for n in names] if slots.has_waiters_map else []
        expression = "SET holders.#h = :until" + (" REMOVE " + ", ".join(removed) if removed else "")
        return self._update(destination, expression, "attribute_exists(holders.#h) OR size(holders) < :limit",
                            names, {":until": {"N": str(lease_until)}, ":limit": {"N": str(limit)}})

    def _wait(self, destination: str, mine: Waiter, fresh: list[Waiter], stale: list[str]) -> None:
        """Joins (or renews its place in) the line; a full line gives up its shortest claim for a longer one."""
        line, length = sorted(fresh), self.line_length
        if len(line) >= length:
            if not mine < line[length - 1]:
                return  # the line is full of longer claims: ask again on its own
            stale = stale + [w.holder for w in line[length - 1:]]
        names = {"#h": mine.holder} | {f"#s{i}": name for i, name in enumerate(stale)}
        expression = "SET waiters.#h = :w" + (" REMOVE " + ", ".join(f"waiters.#s{i}" for i in range(len(stale)))
                                              if stale else "")
        self._update(destination, expression, None, names,
                     {":w": {"M": {"claim": {"N": str(mine.claim)}, "until": {"N": str(mine.until)}}}})

    def _update(self, destination: str, expression: str, condition: str | None, names: dict, values: dict) -> bool:
        request = dict(TableName=self.table_name, Key=self._key(destination), UpdateExpression=expression,
                       ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        if condition:
            request["ConditionExpression"] = condition
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
                                      UpdateExpression="SET holders = if_not_exists(holders, :none),"
                                                       " waiters = if_not_exists(waiters, :none)",
                                      ExpressionAttributeValues={":none": {"M": {}}})

    def _take_back(self, destination: str, expired: dict[str, float]) -> None:
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
            if error.code != "ConditionalCheckFailedException":
                raise  # (else someone else took them back, or a holder renewed its lease)

    @staticmethod
    def _key(destination: str) -> dict:
        return {"job_id": {"S": KEY_PREFIX + destination}}
