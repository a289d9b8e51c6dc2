"""Prune old images without touching any in use, and sweep builders a crash left behind."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from automation import ami, ami_bake
from automation.aws import client
from automation.cli import main
from automation.release_state import ReleaseGroup, ReleaseState, iso_utc
from automation.state_store import StateStore
from tests.aws.ami_catalog import ami_id, catalog, catalog_server  # noqa: F401 - fixtures
from tests.aws.ami_world import builder_security_groups, live_instances, make_world

pytestmark = pytest.mark.aws


def in_use_by_two_stacks() -> None:
    store = StateStore(client("ssm"))
    store.write("production", ReleaseState(groups=(ReleaseGroup("1.0.0", ami_id(1)),)))
    store.write("staging", ReleaseState(groups=(ReleaseGroup("1.1.0", ami_id(2)), ReleaseGroup("1.3.0", ami_id(4), role="standby"))))


def snapshot_of(image_id: str) -> str:
    return client("ec2").describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def test_prune_without_yes_lists_and_changes_nothing(catalog, capsys):
    """Without --yes, prune says what it would deregister and leaves every image and snapshot."""
    in_use_by_two_stacks()
    before = {i["ImageId"] for i in client("ec2").describe_images(Owners=["self"])["Images"]}
    assert main(["ami", "prune", "--keep", "2", "--json"]) == 0
    out = capsys.readouterr()
    plan = json.loads(out.out)
    assert plan["applied"] is False
    assert "would deregister" in out.err
    assert {i["ImageId"] for i in client("ec2").describe_images(Owners=["self"])["Images"]} == before


def test_prune_yes_never_touches_images_in_use_or_the_newest(catalog, capsys):
    """With --yes: images referenced by any stack's release state (active or standby), the
    newest N available and pending ones stay; the rest and their snapshots go."""
    in_use_by_two_stacks()
    doomed_snapshot = snapshot_of(ami_id(5))
    assert main(["ami", "prune", "--keep", "2", "--yes", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    actions = {row["imageId"]: row["action"] for row in plan["images"]}
    assert {i for i, a in actions.items() if a == "keep"} == {ami_id(n) for n in (1, 2, 4, 6, 8, 10)}
    assert {i for i, a in actions.items() if a == "deregister"} == {ami_id(n) for n in (3, 5, 7, 9)}
    remaining = {i["ImageId"] for i in client("ec2").describe_images(Owners=["self"])["Images"]}
    assert {ami_id(n) for n in (1, 2, 4, 6, 8, 10)} <= remaining
    assert not remaining & {ami_id(n) for n in (3, 5, 7, 9)}
    assert doomed_snapshot not in {s["SnapshotId"] for s in client("ec2").describe_snapshots()["Snapshots"]}
    # Safe to re-run: nothing left to prune.
    assert main(["ami", "prune", "--keep", "2", "--yes", "--json"]) == 0
    assert all(row["action"] == "keep" for row in json.loads(capsys.readouterr().out)["images"])


def test_prune_keep_must_be_positive(catalog, capsys):
    """--keep 0 would leave no image to roll forward to: refused as bad input."""
    assert main(["ami", "prune", "--keep", "0", "--yes"]) == 2
    assert "--keep 0 is invalid" in capsys.readouterr().err


def launch_builder(world, expires_at: datetime, role: str = ami.BUILDER_ROLE) -> str:
    ec2 = world.clients.ec2
    base = world.clients.ssm.get_parameter(Name=ami_bake.BASE_AMI_PARAMETER.format(arch="x86_64"))["Parameter"]["Value"]
    tags = [{"Key": ami.ROLE_TAG, "Value": role}, {"Key": ami.EXPIRES_AT_TAG, "Value": iso_utc(expires_at)}]
    return ec2.run_instances(
        ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=world.subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]


def test_sweep_terminates_only_builders_past_their_time_to_live(aws, capsys):
    """A builder whose expires-at passed (a crashed bake) goes, with its security group;
    a builder still within its time-to-live and instances of other roles stay."""
    world = make_world()
    now = datetime.now(timezone.utc)
    expired = launch_builder(world, now - timedelta(minutes=5))
    fresh = launch_builder(world, now + timedelta(minutes=30))
    other = launch_builder(world, now - timedelta(minutes=5), role="app")
    group = world.clients.ec2.create_security_group(
        GroupName="fleet-ami-builder-old", Description="old builder", VpcId=world.vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": ami.ROLE_TAG, "Value": ami.BUILDER_ROLE}, {"Key": ami.EXPIRES_AT_TAG, "Value": iso_utc(now - timedelta(hours=1))}]}],
    )["GroupId"]

    assert main(["ami", "sweep", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["leftovers"]
    assert {row["id"] for row in listed} == {expired, group}
    assert {i["InstanceId"] for i in live_instances(world.clients.ec2)} == {expired, fresh, other}

    assert main(["ami", "sweep"]) == 0
    assert "2 expired builder resource(s) swept" in capsys.readouterr().out
    assert {i["InstanceId"] for i in live_instances(world.clients.ec2)} == {fresh, other}
    assert builder_security_groups(world.clients.ec2) == []
