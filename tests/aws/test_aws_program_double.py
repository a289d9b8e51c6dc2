"""AwsProgramDouble (tests/support) is faithful where the release tests rely on it:
create-before-destroy, the state read from SSM, outputs, failure knobs, no change on preview."""
from __future__ import annotations

import pytest

from automation.aws import client
from automation.health import ExpectedGroup, check_groups
from automation.release_state import ReleaseGroup, ReleaseState
from automation.state_store import StateStore
from automation.workspace import UpdateFailed
from tests.support.aws_program_double import AwsProgramDouble

pytestmark = pytest.mark.aws

AMI = "ami-0123456789abcdef0"


def state(*groups: ReleaseGroup) -> ReleaseState:
    return ReleaseState(groups=groups)


def asg_names() -> set[str]:
    return {g["AutoScalingGroupName"] for g in client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}


def test_preview_changes_nothing(aws):
    """A preview lists the creates but makes no AWS change."""
    preview = AwsProgramDouble("integration").preview(state(ReleaseGroup("1.0.0", AMI)))
    assert preview.counts == {"create": 3}
    assert client("ec2").describe_vpcs(Filters=[{"Name": "tag:fleet:stack", "Values": ["integration"]}])["Vpcs"] == []
    assert asg_names() == set()


def test_new_group_exists_before_old_one_is_deleted(aws):
    """The new ASG is created (and serving) before the old one is deleted, in one update."""
    seen: list[tuple[str, str, frozenset[str]]] = []
    double = AwsProgramDouble("integration", on_change=lambda c, phase: seen.append((c.op, c.name, frozenset(asg_names()))))
    old = double.up(state(ReleaseGroup("1.0.0", AMI))).outputs["releaseGroups"]["1.0.0"]["asgName"]
    seen.clear()
    new = double.up(state(ReleaseGroup("1.1.0", AMI))).outputs["releaseGroups"]["1.1.0"]["asgName"]
    ops = [(op, name) for op, name, _ in seen]
    assert ops.index(("create", "release-1.1.0-asg")) < ops.index(("delete", "release-1.0.0-asg"))
    before_delete = next(names for op, name, names in seen if (op, name) == ("delete", "release-1.0.0-asg"))
    assert {old, new} <= before_delete
    assert asg_names() == {new}


def test_state_none_reads_ssm_and_outputs_follow_the_interface(aws):
    """With no proposed state the double applies the stored one, like the program, and exports it."""
    stored = state(ReleaseGroup("2.0.0", AMI, capacity=2))
    StateStore(client("ssm")).write("integration", stored)
    outputs = AwsProgramDouble("integration").up(None).outputs
    group = outputs["releaseGroups"]["2.0.0"]
    assert (group["capacity"], group["role"], group["ami"], group["launchTemplateVersion"]) == (2, "active", AMI, 1)
    assert outputs["releaseState"] == stored.to_dict()
    assert outputs["settings"]["requireApprovedPlan"] is False
    [health] = check_groups(client("autoscaling"), client("elbv2"), target_group_arn=outputs["targetGroupArn"],
                            groups=[ExpectedGroup("2.0.0", group["asgName"], 2)])
    assert health.ok


def test_production_requires_an_approved_plan(aws):
    """Per-stack settings come from Pulumi.<stack>.yaml: production requires an approved plan."""
    production = AwsProgramDouble("production")
    assert production.config()["fleet:requireApprovedPlan"] == "true"
    assert production.settings_hash() != AwsProgramDouble("staging").settings_hash()


def test_failed_update_leaves_the_new_asg_out_of_its_state(aws):
    """fail_next_up_for_release: the ASG exists in AWS but not in the outputs, and the old group stays."""
    double = AwsProgramDouble("integration", fail_next_up_for_release="1.1.0")
    old = double.up(state(ReleaseGroup("1.0.0", AMI))).outputs["releaseGroups"]["1.0.0"]["asgName"]
    with pytest.raises(UpdateFailed, match="release-1.1.0-asg"):
        double.up(state(ReleaseGroup("1.1.0", AMI)))
    assert list(double.outputs()["releaseGroups"]) == ["1.0.0"]
    leftover = asg_names() - {old}
    assert len(leftover) == 1 and next(iter(leftover)).startswith("fleet-integration-1.1.0-")


def test_unhealthy_release_fails_verification(aws):
    """unhealthy_release: the group is created but its instances do not serve."""
    double = AwsProgramDouble("integration", unhealthy_release="1.1.0")
    outputs = double.up(state(ReleaseGroup("1.1.0", AMI))).outputs
    [health] = check_groups(client("autoscaling"), client("elbv2"), target_group_arn=outputs["targetGroupArn"],
                            groups=[ExpectedGroup("1.1.0", outputs["releaseGroups"]["1.1.0"]["asgName"], 1)])
    assert not health.ok and health.healthy == 0


def test_role_change_to_standby_detaches_from_the_target_group(aws):
    """Moving a group to standby updates its ASG in place: detached, instances deregistered."""
    double = AwsProgramDouble("integration")
    double.up(state(ReleaseGroup("1.0.0", AMI)))
    outputs = double.up(state(ReleaseGroup("2.0.0", AMI), ReleaseGroup("1.0.0", AMI, role="standby"))).outputs
    groups = [ExpectedGroup(r, outputs["releaseGroups"][r]["asgName"], 1, attached=(r == "2.0.0")) for r in ("2.0.0", "1.0.0")]
    healths = check_groups(client("autoscaling"), client("elbv2"), target_group_arn=outputs["targetGroupArn"], groups=groups)
    assert [h.ok for h in healths] == [True, True]
