"""The release state decides the release groups: none, one, two during a release, standby."""
from __future__ import annotations

from automation.release_state import ReleaseState, parameter_name
from tests.unit.infra.program_harness import SSM_READ, ProgramRun, run_program
from tests.unit.infra.states import AMI_NEW, AMI_OLD, in_flight, one_group, with_standby

ASG = "aws:autoscaling/group:Group"
GROUP = "fleet:release:ReleaseGroup"


def asgs_by_release(run: ProgramRun) -> dict[str, dict]:
    return {
        next(t["value"] for t in r.inputs["tags"] if t["key"] == "fleet:release"): r.inputs
        for r in run.of_type(ASG)
    }


def test_no_state_yet_declares_the_foundation_and_says_so():
    """No SSM parameter yet: network and load balancer, no instances, and an info message naming the parameter."""
    run = run_program("integration", stored_state=None)
    assert run.of_type(ASG) == [] and run.of_type(GROUP) == []
    assert run.one("aws:lb/loadBalancer:LoadBalancer")
    assert run.outputs["releaseGroups"] == {}
    assert any(parameter_name("integration") in m and "without instances" in m for m in run.logs)
    assert [args["path"] for token, args in run.invokes if token == SSM_READ] == ["/fleet/integration"]


def test_stored_empty_state_declares_no_instances():
    """A stored state without groups (e.g. a stack emptied on purpose) declares no instances and says so."""
    run = run_program("staging", stored_state=ReleaseState())
    assert run.of_type(ASG) == []
    assert any("no release groups" in m for m in run.logs)


def test_one_group_from_ssm():
    """One stored group: one ReleaseGroup named with its release, holding its launch template and ASG."""
    run = run_program("staging", stored_state=one_group("2.0.1", AMI_NEW))
    group = run.one(GROUP)
    assert group.name == "release-2.0.1"
    assert sorted(r.type for r in run.children_of(group)) == [ASG, "aws:ec2/launchTemplate:LaunchTemplate"]
    assert run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["imageId"] == AMI_NEW
    assert list(run.outputs["releaseGroups"]) == ["2.0.1"]


def test_two_groups_during_a_release_both_serve():
    """In flight: old and new groups side by side, each attached inline and each waited for in full."""
    run = run_program("production", stored_state=in_flight("1.0.0", "1.1.0"))
    asgs = asgs_by_release(run)
    assert set(asgs) == {"1.0.0", "1.1.0"}
    for inputs in asgs.values():
        assert inputs["targetGroupArns"] == [run.outputs["targetGroupArn"]]
        assert inputs["waitForElbCapacity"] == 3
    assert asgs["1.0.0"]["namePrefix"] != asgs["1.1.0"]["namePrefix"]
    images = {r.inputs["imageId"] for r in run.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    assert images == {AMI_OLD, AMI_NEW}
    assert set(run.outputs["releaseGroups"]) == {"1.0.0", "1.1.0"}


def test_old_group_gone_after_the_release():
    """After the release only the new group is declared, so Pulumi deletes the old one at the end of the update."""
    during = run_program("staging", stored_state=in_flight("1.0.0", "1.1.0"))
    after = run_program("staging", stored_state=one_group("1.1.0", AMI_NEW))
    old_urns = {r.urn for r in during.resources if "release-1.0.0" in r.urn}
    assert old_urns, "the in-flight state declares the old group"
    assert not old_urns & {r.urn for r in after.resources}
    new_urns = {r.urn for r in during.resources if "release-1.1.0" in r.urn}
    assert new_urns <= {r.urn for r in after.resources}, "the new group keeps its identity: no replacement"


def test_standby_group_is_detached_from_the_target_group():
    """A standby group runs its own capacity outside the target group; the active one serves."""
    run = run_program("production", stored_state=with_standby(active="1.1.0", standby="1.0.0"))
    asgs = asgs_by_release(run)
    assert asgs["1.1.0"]["targetGroupArns"] == [run.outputs["targetGroupArn"]]
    assert asgs["1.0.0"]["targetGroupArns"] == []
    assert "waitForElbCapacity" not in asgs["1.0.0"]
    assert asgs["1.0.0"]["desiredCapacity"] == 1
    assert run.outputs["releaseGroups"]["1.0.0"]["role"] == "standby"
    assert run.outputs["releaseGroups"]["1.0.0"]["capacity"] == 1


def test_group_capacity_overrides_stack_desired_and_widens_bounds():
    """A group's own capacity sets desired and the wait, and min/max stretch to admit it."""
    run = run_program("integration", stored_state=one_group("1.0.0", AMI_OLD, capacity=5))
    asg = run.one(ASG).inputs
    assert (asg["minSize"], asg["desiredCapacity"], asg["maxSize"], asg["waitForElbCapacity"]) == (1, 5, 5, 5)


def test_proposed_state_wins_over_stored_and_skips_the_ssm_read():
    """A preview of a proposed state declares it, without reading (or writing) SSM."""
    run = run_program(
        "staging", stored_state=one_group("1.0.0", AMI_OLD), proposed_state=in_flight("1.0.0", "1.1.0")
    )
    assert set(asgs_by_release(run)) == {"1.0.0", "1.1.0"}
    assert [token for token, _ in run.invokes] == []
    assert run.outputs["releaseState"] == in_flight("1.0.0", "1.1.0").to_dict()
