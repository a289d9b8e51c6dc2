"""Selecting the AMI a release uses: every image it must refuse, with the reason."""
from __future__ import annotations

import json

import pytest

from automation import ami, ami_bake
from automation.aws import client
from automation.cli import main
from automation.errors import BadInput, Blocked
from automation.release_state import ReleaseGroup, ReleaseState
from automation.state_store import StateStore
from tests.aws.ami_catalog import FOREIGN_ACCOUNT, ami_id, catalog, catalog_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.aws


def refused(spec: str, **kwargs) -> str:
    with pytest.raises(BadInput) as raised:
        ami.select_ami(client("ec2"), spec, **kwargs)
    assert "\n" not in raised.value.reason
    return raised.value.reason


def test_exact_version_resolves_to_its_one_available_image(catalog):
    """A version with exactly one available image of this account selects it."""
    selected = ami.select_ami(client("ec2"), "1.4.0", instance_type="t3.micro")
    assert (selected.image_id, selected.version, selected.architecture) == (ami_id(5), "1.4.0", "x86_64")


def test_ambiguous_version_lists_the_candidates(catalog):
    """Two available images of one version: refused, naming both."""
    reason = refused("1.7.0")
    assert ami_id(9) in reason and ami_id(10) in reason and "2 available images" in reason


def test_pending_and_failed_images_are_refused_with_their_state(catalog):
    """A version whose only image is pending or failed is not selectable, by version or by id."""
    assert "pending" in refused("2.0.0") and ami_id(6) in refused("2.0.0")
    assert "failed" in refused("1.5.0")
    assert "still pending" in refused(ami_id(6))
    assert "failed to be created" in refused(ami_id(7))


def test_deregistered_image_is_refused(catalog):
    """An image deregistered after it was baked cannot be selected by id or by version."""
    client("ec2").deregister_image(ImageId=ami_id(4))
    assert "deregistered" in refused(ami_id(4))
    assert "no image of app web version 1.3.0" in refused("1.3.0")


def test_wrong_architecture_for_the_instance_type_is_refused(catalog):
    """An arm64 image cannot run on an x86_64 instance type, and fits a Graviton one."""
    assert "arm64 but instance type t3.micro runs x86_64" in refused("1.6.0", instance_type="t3.micro")
    assert ami.select_ami(client("ec2"), "1.6.0", instance_type="t4g.micro").image_id == ami_id(8)


def test_foreign_and_other_app_images_are_refused(catalog):
    """An image of another account, or baked for another app, is never released by id."""
    assert f"owned by account {FOREIGN_ACCOUNT}" in refused(ami_id(11))
    assert "tagged fleet:app=api" in refused(ami_id(12))
    # The version lookup sees only this account's images: 1.4.0 stays unambiguous.
    assert ami.select_ami(client("ec2"), "1.4.0").image_id == ami_id(5)


def test_id_from_another_region_is_refused_naming_the_region(aws):
    """AMIs are regional: an image made in us-east-1, selected in eu-west-1, is refused."""
    east = client("ec2", "us-east-1")
    base = client("ssm", "us-east-1").get_parameter(Name=ami_bake.BASE_AMI_PARAMETER.format(arch="x86_64"))["Parameter"]["Value"]
    instance = east.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    image_id = east.create_image(
        InstanceId=instance, Name="web-1.0.0", TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "fleet:app", "Value": "web"}]}]
    )["ImageId"]
    assert ami.select_ami(east, image_id).image_id == image_id
    with pytest.raises(BadInput) as raised:
        ami.select_ami(client("ec2", "eu-west-1"), image_id)
    assert f"{image_id} does not exist in region eu-west-1" in raised.value.reason


def test_latest_is_the_newest_available_image(catalog):
    """latest skips the newer pending image and takes the newest available one."""
    assert ami.select_ami(client("ec2"), "latest").image_id == ami_id(8)


def test_unknown_and_malformed_versions_are_refused(catalog):
    """A version never baked, or one that is not a version at all."""
    assert "no image of app web version 9.9.9" in refused("9.9.9")
    assert "malformed" in refused("1.0 beta")
    assert "malformed" in refused("ami-xyz")


def test_a_bake_is_blocked_while_an_image_of_its_version_is_pending(catalog):
    """A second bake of a version whose image is still pending waits its turn (exit 3)."""
    with pytest.raises(Blocked):
        ami_bake.existing_image(client("ec2"), "web", "2.0.0")


def test_list_is_newest_first_with_the_stacks_running_each_image(catalog, capsys):
    """fleet ami list: this account's images of the app, newest first, with the stacks using them."""
    StateStore(client("ssm")).write("production", ReleaseState(groups=(ReleaseGroup("1.2.0", ami_id(3)),)))
    assert main(["ami", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["images"]
    assert [r["imageId"] for r in rows] == [ami_id(n) for n in (6, 8, 7, 10, 9, 5, 4, 3, 2, 1)]
    assert {r["imageId"]: r["stacks"] for r in rows}[ami_id(3)] == ["production"]
    assert main(["ami", "list"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("IMAGE") and "production" in text


def test_show_reports_why_an_image_is_not_usable(catalog, capsys):
    """fleet ami show: each matching image with its state and whether a release may use it."""
    assert main(["ami", "show", "1.7.0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["images"]
    assert {r["imageId"] for r in rows} == {ami_id(9), ami_id(10)}
    assert all(not r["usable"] and "ambiguous" in r["reason"] for r in rows)
    assert main(["ami", "show", "1.6.0", "--instance-type", "t3.micro"]) == 0
    assert "not usable: AMI" in capsys.readouterr().out
    assert main(["ami", "show", "8.8.8"]) == 2
    assert capsys.readouterr().err.strip().startswith("fleet: no image of app web")
