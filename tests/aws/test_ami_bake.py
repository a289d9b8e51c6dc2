"""Baking an AMI against the moto server: the image, its tags, and nothing left behind."""
from __future__ import annotations

import json

import pytest

from automation import ami, ami_bake
from automation.cli import main
from automation.errors import ReleaseFailed
from tests.aws.ami_world import (
    STACK,
    all_instances,
    builder_security_groups,
    live_instances,
    make_world,
    own_images,
    own_snapshots,
    script_request,
)

pytestmark = pytest.mark.aws


def bake_snapshots(ec2) -> list[dict]:
    """Snapshots a CreateImage made (moto's OwnerIds filter also returns its stock ones)."""
    return [s for s in own_snapshots(ec2) if s.get("Description", "").startswith("Created by CreateImage")]


def assert_nothing_left(ec2) -> None:
    assert live_instances(ec2) == []
    assert own_images(ec2) == []
    assert bake_snapshots(ec2) == []
    assert builder_security_groups(ec2) == []


def test_bake_tags_image_and_snapshots_and_terminates_a_locked_down_builder(aws, tmp_path):
    """A bake yields one available image tagged per the interfaces, snapshots tagged alike,
    and a builder that ran private, IMDSv2-only, encrypted, with the SSM profile, then was terminated."""
    world = make_world()
    ec2 = world.clients.ec2
    messages: list[str] = []
    during_install: dict[str, list] = {}

    def look(step: str) -> None:
        if step == "install":
            during_install["instances"] = live_instances(ec2)
            during_install["volumes"] = ec2.describe_volumes(Filters=[{"Name": "tag:fleet:role", "Values": ["ami-builder"]}])["Volumes"]

    result = ami_bake.bake(world.clients, script_request(tmp_path), progress=messages.append, on_step=look)

    assert result.created
    image = ec2.describe_images(ImageIds=[result.ami.image_id])["Images"][0]
    tags = ami.tags_of(image)
    base = world.clients.ssm.get_parameter(Name=ami_bake.BASE_AMI_PARAMETER.format(arch="x86_64"))["Parameter"]["Value"]
    assert image["State"] == "available"
    assert {k: tags[k] for k in ("fleet:app", "fleet:version", "fleet:source-ami", "fleet:commit", "fleet:baked-by")} == {
        "fleet:app": "web", "fleet:version": "1.4.2", "fleet:source-ami": base, "fleet:commit": "a1b2c3d", "fleet:baked-by": "tester",
    }
    assert tags["fleet:baked-at"].endswith("Z")
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]
    for snapshot in ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]:
        snapshot_tags = ami.tags_of(snapshot)
        assert snapshot_tags["fleet:version"] == "1.4.2" and snapshot_tags["fleet:image"] == image["ImageId"]

    (builder,) = all_instances(ec2)
    assert builder["State"]["Name"] == "terminated"
    assert builder["MetadataOptions"]["HttpTokens"] == "required"
    assert "PublicIpAddress" not in builder
    assert builder["SubnetId"] == world.subnet
    (running,) = during_install["instances"]
    assert running["IamInstanceProfile"]["Arn"].endswith(f"/{ami_bake.DEFAULT_INSTANCE_PROFILE}")
    assert during_install["volumes"] and all(volume["Encrypted"] for volume in during_install["volumes"])
    builder_tags = ami.tags_of(builder)
    assert builder_tags["fleet:role"] == "ami-builder" and builder_tags["fleet:expires-at"].endswith("Z")
    assert live_instances(ec2) == [] and builder_security_groups(ec2) == []
    assert any("terminated" in m for m in messages)


def test_rebake_of_an_existing_version_reuses_it_and_launches_nothing(aws, tmp_path, capsys):
    """Re-running a bake prints the existing image and exits 0 without a new builder."""
    world = make_world()
    first = ami_bake.bake(world.clients, script_request(tmp_path), progress=lambda m: None)
    script = tmp_path / "install.sh"
    code = main(["ami", "bake", "1.4.2", "--script", str(script), "--stack", STACK, "--json"])
    out = capsys.readouterr()
    assert code == 0
    document = json.loads(out.out)
    assert document["imageId"] == first.ami.image_id and document["created"] is False
    assert "already has available image" in out.err
    assert len(all_instances(world.clients.ec2)) == 1
    assert len(own_images(world.clients.ec2)) == 1


def test_force_bakes_a_second_image_under_a_new_name(aws, tmp_path):
    """--force bakes again even though the version exists; both images stay, names differ."""
    world = make_world()
    first = ami_bake.bake(world.clients, script_request(tmp_path), progress=lambda m: None)
    second = ami_bake.bake(world.clients, script_request(tmp_path, force=True, commit="d4e5f6a"), progress=lambda m: None)
    assert second.created and second.ami.image_id != first.ami.image_id
    assert second.ami.name != first.ami.name
    assert len(own_images(world.clients.ec2)) == 2
    assert second.ami.commit == "d4e5f6a"
    assert live_instances(world.clients.ec2) == []


class FailingInstallSsm:
    """Test double for the SSM client: moto's SSM marks every command Success and offers no
    way to make one fail, so get_command_invocation answers a failed run (after asking moto,
    so the command really was sent there). Every other SSM call goes to the moto server."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_command_invocation(self, **kwargs):
        invocation = self.real.get_command_invocation(**kwargs)
        return {
            **invocation,
            "Status": "Failed",
            "ResponseCode": 1,
            "StandardOutputContent": "Last metadata expiration check: 0:00:01 ago\n",
            "StandardErrorContent": "Error: Unable to find a match: myapp-1.4.2\nfailed to run commands: exit status 1",
        }


def test_failed_install_leaves_no_image_and_no_builder(aws, tmp_path):
    """An install that fails on the builder: exit 1 with its last output line, the tail
    shown, no image made, the builder terminated, its security group deleted."""
    world = make_world()
    world.clients.ssm = FailingInstallSsm(world.clients.ssm)
    messages: list[str] = []
    with pytest.raises(ReleaseFailed) as raised:
        ami_bake.bake(world.clients, script_request(tmp_path), progress=messages.append)
    assert "exit status 1" in raised.value.reason and "\n" not in raised.value.reason
    assert any("Unable to find a match" in m for m in messages)
    assert_nothing_left(world.clients.ec2)


@pytest.mark.parametrize("step", ami_bake.STEPS)
def test_interruption_before_any_step_leaves_nothing_behind(aws, tmp_path, step):
    """Ctrl-C before any step: no running builder, no half-made image or snapshot, no builder security group."""
    world = make_world()

    def interrupt(current: str) -> None:
        if current == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ami_bake.bake(world.clients, script_request(tmp_path), progress=lambda m: None, on_step=interrupt)
    assert_nothing_left(world.clients.ec2)


def test_install_script_runs_with_the_version_being_baked(aws, tmp_path):
    """The sample install script needs FLEET_VERSION: the command SSM runs passes the baked version."""
    world = make_world()
    ami_bake.bake(world.clients, script_request(tmp_path, version="2.3.4"), progress=lambda message: None)
    commands = world.clients.ssm.list_commands()["Commands"]
    lines = [line for command in commands for line in command["Parameters"]["commands"]]
    assert "FLEET_VERSION=2.3.4 bash /tmp/fleet-install.sh" in lines
