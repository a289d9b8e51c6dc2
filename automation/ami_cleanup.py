"""Removing what fleet no longer needs: old images of an app (prune) and builders a bake left behind (sweep)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from botocore.exceptions import ClientError

from automation.ami import (
    APP_TAG,
    BUILDER_ROLE,
    DEFAULT_APP,
    EXPIRES_AT_TAG,
    IMAGE_TAG,
    ROLE_TAG,
    VERSION_TAG,
    Ami,
    Progress,
    app_images,
    check_app,
    stacks_using,
    tags_of,
    utc_now,
)
from automation.aws import error_code
from automation.errors import BadInput
from automation.release_state import ReleaseState

BUILDER_LIVE_STATES = ("pending", "running", "stopping", "stopped")


# -- removing images --------------------------------------------------------------


def image_snapshots(ec2, image_id: str, instance_id: str | None = None) -> list[str]:
    """Snapshot ids of an image: from its block devices, and for a half-made image also
    the snapshots CreateImage has started (found by the description AWS gives them)."""
    snapshots: set[str] = set()
    try:
        for image in ec2.describe_images(ImageIds=[image_id])["Images"]:
            snapshots.update(Ami.from_image(image).snapshot_ids)
    except ClientError as error:
        if not error_code(error).startswith("InvalidAMIID"):
            raise
    if instance_id:
        found = ec2.describe_snapshots(
            OwnerIds=["self"],
            Filters=[{"Name": "description", "Values": [f"Created by CreateImage({instance_id}) for {image_id}*"]}],
        )["Snapshots"]
        snapshots.update(s["SnapshotId"] for s in found)
    return sorted(snapshots)


def delete_image(ec2, image_id: str, *, instance_id: str | None = None, snapshots: Iterable[str] | None = None) -> list[str]:
    """Deregister an image and delete its snapshots; safe to repeat. Returns the snapshots deleted."""
    snapshot_ids = list(snapshots) if snapshots is not None else image_snapshots(ec2, image_id, instance_id)
    try:
        ec2.deregister_image(ImageId=image_id)
    except ClientError as error:
        if not error_code(error).startswith("InvalidAMIID"):
            raise
    deleted = []
    for snapshot_id in snapshot_ids:
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
            deleted.append(snapshot_id)
        except ClientError as error:
            if error_code(error) != "InvalidSnapshot.NotFound":
                raise
    return deleted


@dataclass(frozen=True)
class PruneItem:
    ami: Ami
    action: str  # "deregister" or "keep"
    reason: str

    def to_dict(self) -> dict:
        return {**self.ami.to_dict(), "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class PrunePlan:
    items: tuple[PruneItem, ...]
    orphan_snapshots: tuple[str, ...]

    @property
    def to_deregister(self) -> tuple[PruneItem, ...]:
        return tuple(item for item in self.items if item.action == "deregister")

    def to_dict(self) -> dict:
        return {"images": [item.to_dict() for item in self.items], "orphanSnapshots": list(self.orphan_snapshots)}


def plan_prune(ec2, states: dict[str, ReleaseState], *, app: str = DEFAULT_APP, keep: int) -> PrunePlan:
    """Which images of the app prune would deregister, and why each other one stays."""
    check_app(app)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise BadInput(f"--keep {keep!r} is invalid: expected a whole number >= 1 (the newest images to keep)")
    in_use = stacks_using(states)
    items, kept_newest = [], 0
    images = app_images(ec2, app)
    for image in images:
        ami = Ami.from_image(image)
        if ami.image_id in in_use:
            items.append(PruneItem(ami, "keep", f"in use by {', '.join(in_use[ami.image_id])}"))
        elif ami.state == "pending":
            items.append(PruneItem(ami, "keep", "pending: a bake may still be running"))
        elif ami.state == "available" and kept_newest < keep:
            kept_newest += 1
            items.append(PruneItem(ami, "keep", f"among the newest {keep}"))
        else:
            items.append(PruneItem(ami, "deregister", f"older than the newest {keep}" if ami.state == "available" else ami.state))
    live = {image["ImageId"] for image in images}
    snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{APP_TAG}", "Values": [app]}])["Snapshots"]
    orphans = tuple(
        sorted(s["SnapshotId"] for s in snapshots if tags_of(s).get(IMAGE_TAG) and tags_of(s)[IMAGE_TAG] not in live)
    )
    return PrunePlan(tuple(items), orphans)


def apply_prune(ec2, plan: PrunePlan, progress: Progress) -> None:
    for item in plan.to_deregister:
        deleted = delete_image(ec2, item.ami.image_id, snapshots=item.ami.snapshot_ids)
        progress(f"deregistered {item.ami.image_id} ({item.ami.version}), deleted {', '.join(deleted) or 'no snapshots'}")
    for snapshot_id in plan.orphan_snapshots:
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            if error_code(error) != "InvalidSnapshot.NotFound":
                raise
        progress(f"deleted orphan snapshot {snapshot_id}")


# -- sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    kind: str  # "instance" or "security-group"
    resource_id: str
    expires_at: str
    version: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "id": self.resource_id, "expiresAt": self.expires_at, "version": self.version}


def _expired(tags: dict[str, str], now: datetime) -> bool:
    try:
        expires = datetime.fromisoformat(tags.get(EXPIRES_AT_TAG, "").replace("Z", "+00:00"))
    except ValueError:
        return True  # a builder without a readable time-to-live is not worth keeping
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return expires <= now


def find_leftovers(ec2, now: datetime | None = None) -> list[Leftover]:
    """Builder instances and security groups whose time-to-live has passed."""
    now = now or utc_now()
    role = {"Name": f"tag:{ROLE_TAG}", "Values": [BUILDER_ROLE]}
    leftovers = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[role, {"Name": "instance-state-name", "Values": list(BUILDER_LIVE_STATES)}]
    ):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = tags_of(instance)
                if _expired(tags, now):
                    leftovers.append(Leftover("instance", instance["InstanceId"], tags.get(EXPIRES_AT_TAG, ""), tags.get(VERSION_TAG, "")))
    for group in ec2.describe_security_groups(Filters=[role])["SecurityGroups"]:
        tags = tags_of(group)
        if _expired(tags, now):
            leftovers.append(Leftover("security-group", group["GroupId"], tags.get(EXPIRES_AT_TAG, ""), tags.get(VERSION_TAG, "")))
    return leftovers


def sweep(ec2, leftovers: list[Leftover], progress: Progress) -> list[str]:
    """Terminate expired builders, then delete their security groups; returns what could
    not be removed yet (a group whose builder is still shutting down waits for the next sweep)."""
    instances = [l.resource_id for l in leftovers if l.kind == "instance"]
    if instances:
        ec2.terminate_instances(InstanceIds=instances)
        progress(f"terminated {', '.join(instances)}")
    remaining = []
    for leftover in (l for l in leftovers if l.kind == "security-group"):
        try:
            ec2.delete_security_group(GroupId=leftover.resource_id)
            progress(f"deleted security group {leftover.resource_id}")
        except ClientError as error:
            if error_code(error) == "InvalidGroup.NotFound":
                continue
            if error_code(error) != "DependencyViolation":
                raise
            remaining.append(leftover.resource_id)
            progress(f"security group {leftover.resource_id} is still in use by a terminating builder: run sweep again later")
    return remaining
