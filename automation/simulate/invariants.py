"""The invariant checker, run after every simulation: DESIGN.md's invariants, read from what AWS holds
(the sandbox's EC2 backends, and the ledger's record of every image made, with its permissions and
state changes) and from the jobs table, never from the service's own counters.

- lost: a launched instance whose job is not terminal and has no message in the DLQ (or no job at all);
- duplicate_source_amis: more than one source AMI (not failed) made from one instance;
- duplicate_copies: more than one copy (not failed) of one source AMI in one target;
- unsafe_cleanups: a source AMI deregistered before every target's copy was available, or the instance of
  a job that is not DONE terminated;
- disallowed_shares: a launch or create-volume permission on a source AMI or its snapshots for anyone
  outside the allow-list; public_images: any image or snapshot of the wave granted to `all`;
- failed_without_error: a FAILED job without its reason or without AWS's error (code and message);
- done_without_copies: a DONE job one of whose copies does not exist, is not available, or is not owned
  by its target account.

When one breaks, `report()` gives what replays it: the seed, the options, and each failing job's full
record (history, error, copies), with the images AWS made for it and the faults injected on it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .ledger import ImageRecord, Ledger
    from .world import World

INVARIANTS = ("lost", "duplicate_source_amis", "duplicate_copies", "unsafe_cleanups", "disallowed_shares",
              "public_images", "failed_without_error", "done_without_copies")
SHOWN = 20  # violations listed in the JSON (all are counted)


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    instance_id: str | None = None
    job_id: str | None = None


@dataclass
class Checked:
    violations: list[Violation] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        counts = dict.fromkeys(INVARIANTS, 0)
        for violation in self.violations:
            counts[violation.invariant] += 1
        return {**counts, "invariants_broken": len(self.violations),
                "invariant_violations": [asdict(v) for v in self.violations[:SHOWN]]}

    @property
    def holds(self) -> bool:
        return not self.violations


# ---- from AWS's images alone (the runbook baseline is held to these too) --------------------------------
def image_violations(ledger: "Ledger", name_prefix: str, copy_targets: int, allowed_accounts: set[str],
                     allowed_arns: set[str]) -> list[Violation]:
    copies_by_source: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in ledger.images.values():
        if record.kind == "copy":
            copies_by_source[record.source_image_id or ""].append(record)
    sources = [r for r in ledger.sources() if r.name.startswith(name_prefix)]
    found: list[Violation] = []
    by_instance: dict[str, list[ImageRecord]] = defaultdict(list)
    for source in sources:
        if source.failed is None:
            by_instance[source.ami.instance_id].append(source)
    for instance_id, made in by_instance.items():
        for extra in made[1:]:
            found.append(Violation("duplicate_source_amis", f"{extra.image_id} is a second source AMI of "
                                   f"{instance_id} (the first: {made[0].image_id})", instance_id))
    for source in sources:
        copies = copies_by_source.get(source.image_id, [])
        per_target: dict[tuple[str, str], list[str]] = defaultdict(list)
        for copy in copies:
            if copy.failed is None:
                per_target[(copy.account, copy.region)].append(copy.image_id)
        for (account, region), ids in per_target.items():
            if len(ids) > 1:
                found.append(Violation("duplicate_copies", f"{len(ids)} copies of {source.image_id} in "
                                       f"{account}/{region}: {', '.join(ids)}", source.ami.instance_id))
        if source.deregistered is not None:
            safe = {(c.account, c.region) for c in copies
                    if c.available is not None and c.available <= source.deregistered}
            if len(safe) < copy_targets:
                found.append(Violation("unsafe_cleanups", f"{source.image_id} deregistered at "
                                       f"{source.deregistered:.0f} with {len(safe)} of {copy_targets} copies "
                                       f"available", source.ami.instance_id))
        for grantee in _disallowed(source, allowed_accounts, allowed_arns):
            found.append(Violation("disallowed_shares", f"{grantee} may use {source.image_id} or its snapshots, "
                                   f"outside the allow-list", source.ami.instance_id))
    for record in ledger.images.values():
        if record.name.startswith(name_prefix) and _public(record):
            found.append(Violation("public_images", f"{record.image_id} ({record.kind}, {record.account}/"
                                   f"{record.region}) or a snapshot of it is public", record.ami.instance_id
                                   if record.kind == "create" else None))
    return found


def _disallowed(source: "ImageRecord", accounts: set[str], arns: set[str]) -> list[str]:
    """Grants on the image or its snapshots to anyone outside the allow-list (public ones too)."""
    grantees = []
    for permission in source.ami.launch_permissions:
        grantee = permission.get("UserId") or permission.get("OrganizationArn") or permission.get(
            "OrganizationalUnitArn")
        if permission.get("Group") == "all" or (grantee not in accounts and grantee not in arns):
            grantees.append(grantee or permission.get("Group", "?"))
    for device in source.devices:
        snapshot = device.snapshot
        grantees += [user for user in snapshot.create_volume_permission_userids if user not in accounts]
        grantees += list(snapshot.create_volume_permission_groups)
    return grantees


def _public(record: "ImageRecord") -> bool:
    return (any(p.get("Group") == "all" for p in record.ami.launch_permissions)
            or any("all" in d.snapshot.create_volume_permission_groups for d in record.devices))


# ---- the whole check: AWS's images, AWS's instances and copies, and the jobs table ----------------------
def check(world: "World", jobs: list[dict], dead_lettered: set[str]) -> Checked:
    targets = world.targets
    allowed = {t["accountId"] for t in targets}
    copy_targets = sum(1 for t in targets if t.get("copy", True))
    found = image_violations(world.ledger, "ami-distributor-", copy_targets, allowed, set())
    by_instance = {j["instance_id"]: j for j in jobs}
    found = [replace(v, job_id=by_instance[v.instance_id]["job_id"]) if v.instance_id in by_instance else v
             for v in found]  # name the job each image belongs to
    for instance_id in world.ledger.launches:
        job = by_instance.get(instance_id)
        if job is None:
            found.append(Violation("lost", "launched, but no job was ever recorded", instance_id))
        elif job["status"] == "RUNNING" and instance_id not in dead_lettered:
            found.append(Violation("lost", f"RUNNING in {job['stage']} with no message in the dead-letter queue "
                                   f"and none left to handle", instance_id, job["job_id"]))
    for job in jobs:
        found += _job_violations(world, job)
    return Checked(found)


def _job_violations(world: "World", job: dict) -> Iterable[Violation]:
    from moto.ec2.models import ec2_backends

    where = dict(instance_id=job["instance_id"], job_id=job["job_id"])
    if job["status"] == "FAILED":
        error = job.get("last_error") or {}
        if not job.get("reason") or not error.get("code") or not error.get("message"):
            yield Violation("failed_without_error", f"FAILED with reason {job.get('reason')!r} and error "
                            f"{error!r}", **where)
    if job["status"] != "DONE":
        instance = _instance(world, job)
        if instance is not None and instance.state == "terminated":
            yield Violation("unsafe_cleanups", f"instance terminated while the job is {job['status']} in "
                            f"{job['stage']}", **where)
        return
    for target in job["distribution"]["targets"]:
        if not target.get("copy", True):
            continue
        key = f"{target['account_id']}/{target['region']}"
        image_id = (job["copies"].get(key) or {}).get("image_id")
        image = ec2_backends[target["account_id"]][target["region"]].amis.get(image_id or "")
        if image is None:
            yield Violation("done_without_copies", f"DONE, but its copy in {key} ({image_id}) does not exist",
                            **where)
        elif image.owner_id != target["account_id"] or image.state != "available":
            yield Violation("done_without_copies", f"DONE, but its copy {image_id} in {key} is {image.state} and "
                            f"owned by {image.owner_id}", **where)


def _instance(world: "World", job: dict) -> Any:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[job["source_account"]][job["region"]]
    for reservation in backend.reservations.values():
        for instance in reservation.instances:
            if instance.id == job["instance_id"]:
                return instance
    return None


# ---- what replays a failure -----------------------------------------------------------------------------
def report(summary: dict, jobs: list[dict], checked: Checked, world: "World", fault_log: list[dict]) -> str:
    """The seed, the options, the command that replays the run, and every failing job's full history."""
    options = summary["options"]
    command = (f"python -m automation simulate --servers {options['servers']} --seed {options['seed']} "
               f"--targets {options['targets']} --faults {options['faults']} --stage {options['stage']}")
    lines = [f"INVARIANTS BROKEN: {checked.counts['invariants_broken']} "
             f"({', '.join(f'{k} {v}' for k, v in checked.counts.items() if k in INVARIANTS and v)})",
             f"seed {options['seed']}; options {json.dumps(options, sort_keys=True)}",
             f"replay: {command}"]
    by_id = {j["job_id"]: j for j in jobs}
    shown: set[str] = set()
    for violation in checked.violations:
        lines.append(f"- {violation.invariant}: {violation.job_id or violation.instance_id}: {violation.detail}")
        job = by_id.get(violation.job_id or "")
        if job is None or job["job_id"] in shown:
            continue
        shown.add(job["job_id"])
        lines.append(f"  job {job['job_id']}: {job['status']} {job['stage']} version {job['version']} "
                     f"reason {job.get('reason')} error {json.dumps(job.get('last_error'))}")
        t0 = world.started_at
        for transition in job["history"]:
            lines.append(f"    {transition['at'] - t0:10.1f} s  {transition['stage']:<12} {transition['status']:<9} "
                         f"{transition['note']}")
        lines.append(f"    copies {json.dumps(job['copies'], sort_keys=True)}")
        for record in world.ledger.images.values():
            if record.name.endswith(job["job_id"]):
                lines.append(f"    image {record.image_id} {record.kind} {record.account}/{record.region} started "
                             f"{record.started - t0:.1f} available {_at(record.available, t0)} failed "
                             f"{_at(record.failed, t0)} deregistered {_at(record.deregistered, t0)}")
        for entry in fault_log:
            if job["job_id"] in entry["jobs"]:
                lines.append(f"    fault {entry['at'] - t0:10.1f} s  {entry['kind']}: {entry['what']}")
    return "\n".join(lines)


def _at(value: float | None, t0: float) -> str:
    return "-" if value is None else f"{value - t0:.1f}"
