"""The orphan sweep (automation/orphans.py) against the moto server: it deletes only what is
tagged for the stack and unknown to its state, and running it again is harmless."""
from __future__ import annotations

import pytest

from automation.aws import client
from automation.orphans import Orphans, delete_orphans, find_orphans
from automation.release_state import ReleaseGroup, ReleaseState
from automation.workspace import UpdateFailed
from tests.support.aws_program_double import AwsProgramDouble

pytestmark = pytest.mark.aws

AMI = "ami-0123456789abcdef0"


def tags(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in values.items()]


STACK_TAGS = {"fleet:stack": "integration", "fleet:managed-by": "fleet"}


def run_instance(ec2, tag_list: list[dict[str, str]]) -> str:
    spec = [{"ResourceType": "instance", "Tags": tag_list}] if tag_list else []
    return ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0]["InstanceId"]


def launch_template(ec2, name: str, tag_list: list[dict[str, str]]) -> str:
    return ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": AMI},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tag_list}],
    )["LaunchTemplate"]["LaunchTemplateId"]


def live_instances(ec2, ids: list[str]) -> set[str]:
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] not in ("shutting-down", "terminated")}


def asg_names(asg) -> set[str]:
    return {g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}


def template_ids(ec2) -> set[str]:
    return {t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"]}


@pytest.fixture
def world(aws):
    """integration runs 1.0.0; a failed update of 1.1.0 left its ASG and launch template behind
    (pulumi-aws #5178); staging runs 3.0.0; plus stray, untagged and AMI-builder resources."""
    asg, ec2 = client("autoscaling"), client("ec2")
    integration = AwsProgramDouble("integration", fail_next_up_for_release="1.1.0")
    integration.up(ReleaseState(groups=(ReleaseGroup("1.0.0", AMI, capacity=1),)))
    with pytest.raises(UpdateFailed):
        integration.up(ReleaseState(groups=(ReleaseGroup("1.1.0", AMI, capacity=1),)))
    staging = AwsProgramDouble("staging")
    staging.up(ReleaseState(groups=(ReleaseGroup("3.0.0", AMI, capacity=1),)))

    mine = tags(STACK_TAGS)
    known = integration.outputs()["releaseGroups"]["1.0.0"]
    leftover_asg = next(n for n in asg_names(asg) if n.startswith("fleet-integration-1.1.0-"))
    return {
        "asg": asg,
        "ec2": ec2,
        "known_asgs": {known["asgName"]},
        "known_lts": {known["launchTemplateId"]},
        "leftover_asg": leftover_asg,
        "leftover_lt": ec2.describe_launch_templates(
            Filters=[{"Name": "tag:fleet:release", "Values": ["1.1.0"]}])["LaunchTemplates"][0]["LaunchTemplateId"],
        "stray_instance": run_instance(ec2, mine),
        "stray_lt": launch_template(ec2, "fleet-integration-stray", mine),
        "builder": run_instance(ec2, mine + [{"Key": "fleet:role", "Value": "ami-builder"}]),
        "untagged": run_instance(ec2, []),
        "not_managed": run_instance(ec2, tags({"fleet:stack": "integration"})),
        "other_stack_lt": launch_template(ec2, "fleet-staging-stray", tags({**STACK_TAGS, "fleet:stack": "staging"})),
        "staging_asg": staging.outputs()["releaseGroups"]["3.0.0"]["asgName"],
    }


def sweep_args(w) -> dict:
    return {"stack": "integration", "known_asg_names": w["known_asgs"], "known_launch_template_ids": w["known_lts"]}


def test_finds_only_what_is_tagged_for_the_stack_and_unknown(world):
    """Orphans are the leftover ASG, its launch template, its instance and the stray resources of the stack."""
    w = world
    leftover_instances = [i["InstanceId"] for i in w["asg"].describe_auto_scaling_groups(
        AutoScalingGroupNames=[w["leftover_asg"]])["AutoScalingGroups"][0]["Instances"]]
    orphans = find_orphans(w["asg"], w["ec2"], **sweep_args(w))
    assert orphans.auto_scaling_groups == (w["leftover_asg"],)
    assert set(orphans.launch_templates) == {w["leftover_lt"], w["stray_lt"]}
    assert set(orphans.instances) == {w["stray_instance"], *leftover_instances}
    assert orphans.to_dict()["auto_scaling_groups"] == [w["leftover_asg"]]
    assert not orphans.is_empty


def test_delete_removes_orphans_and_spares_everything_else(world):
    """After the sweep the known group, other stacks, untagged, unmanaged and builder resources survive."""
    w = world
    asg, ec2 = w["asg"], w["ec2"]
    delete_orphans(asg, ec2, find_orphans(asg, ec2, **sweep_args(w)))

    assert asg_names(asg) == w["known_asgs"] | {w["staging_asg"]}
    remaining = template_ids(ec2)
    assert w["known_lts"] <= remaining and w["other_stack_lt"] in remaining
    assert not {w["leftover_lt"], w["stray_lt"]} & remaining
    survivors = [w["builder"], w["untagged"], w["not_managed"]]
    assert live_instances(ec2, survivors + [w["stray_instance"]]) == set(survivors)
    assert find_orphans(asg, ec2, **sweep_args(w)).is_empty


def test_sweep_is_safe_to_re_run(world):
    """Deleting the same orphans twice (a re-run after a crash mid-sweep) succeeds and changes nothing more."""
    w = world
    asg, ec2 = w["asg"], w["ec2"]
    orphans = find_orphans(asg, ec2, **sweep_args(w))
    delete_orphans(asg, ec2, orphans)
    delete_orphans(asg, ec2, orphans)
    delete_orphans(asg, ec2, Orphans(instances=(w["stray_instance"], "i-0123456789abcdef0")))
    assert asg_names(asg) == w["known_asgs"] | {w["staging_asg"]}
    assert live_instances(ec2, [w["builder"]]) == {w["builder"]}


def test_launch_template_of_a_known_asg_is_never_an_orphan(world):
    """Even when the outputs lack a known group's launch template id, the template its ASG uses is kept."""
    w = world
    orphans = find_orphans(w["asg"], w["ec2"], stack="integration", known_asg_names=w["known_asgs"],
                           known_launch_template_ids=set())
    assert not w["known_lts"] & set(orphans.launch_templates)
    assert w["leftover_lt"] in orphans.launch_templates


def test_empty_stack_state_makes_every_tagged_group_an_orphan(world):
    """A stack whose state holds no group (foundation only): every ASG tagged for it is an orphan."""
    w = world
    orphans = find_orphans(w["asg"], w["ec2"], stack="integration", known_asg_names=set(), known_launch_template_ids=set())
    assert set(orphans.auto_scaling_groups) == w["known_asgs"] | {w["leftover_asg"]}
    assert w["staging_asg"] not in orphans.auto_scaling_groups
