"""Canary and standby releases end to end through the CLI, against the moto server.

As in test_release_flow.py, the Pulumi step is played by AwsProgramDouble (a test double that
makes the same AWS changes the program would); SSM, verification, alarms, orphan sweep and AMI
selection are the real code against the real moto server process. The stack is staging
(desired capacity 2), so a canary of 1 is a real slice of the fleet.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from automation import services
from automation.aws import client
from automation.release_state import IN_FLIGHT, RELEASED, ROLLED_BACK, STANDBY
from automation.rollout import Release
from automation.state_store import StateStore
from tests.aws.release_world import run, stack_asgs, stored

pytestmark = pytest.mark.aws

STACK = "staging"
FAST = ["--verify-timeout", "5"]
ALARM = "team-latency"


# -- what AWS shows --------------------------------------------------------------------

def asg_of(release: str) -> dict:
    """The one ASG tagged for `release` on the stack (fails if there is not exactly one)."""
    groups = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    found = [
        g for g in groups
        if {(t["Key"], t["Value"]) for t in g["Tags"]} >= {("fleet:stack", STACK), ("fleet:release", release)}
    ]
    assert len(found) == 1, f"expected one ASG of release {release}, found {[g['AutoScalingGroupName'] for g in found]}"
    return found[0]


def releases_running() -> list[str]:
    groups = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return sorted(
        dict((t["Key"], t["Value"]) for t in g["Tags"])["fleet:release"] for g in groups
        if {"Key": "fleet:stack", "Value": STACK} in [{"Key": t["Key"], "Value": t["Value"]} for t in g["Tags"]]
    )


def instance_ids(asg: dict) -> set[str]:
    return {i["InstanceId"] for i in asg["Instances"]}


def registered_targets() -> set[str]:
    """Instances registered in the stack's target group (draining ones left out)."""
    double = services.workspace_factory.doubles[STACK]
    health = client("elbv2").describe_target_health(TargetGroupArn=double.outputs()["targetGroupArn"])
    return {
        t["Target"]["Id"] for t in health["TargetHealthDescriptions"]
        if t["TargetHealth"]["State"] != "draining"
    }


def deploy(capsys, version: str, *options: str) -> tuple[int, dict | None, str]:
    return run(capsys, "deploy", STACK, "--release", version, "--yes", "--json", *FAST, *options)


@pytest.fixture
def released_1(stacks, images, capsys):
    """Staging runs release 1.0.0 at full size (2 instances): the release the strategies start from."""
    code, data, err = deploy(capsys, "1.0.0")
    assert code == 0, err
    return asg_of("1.0.0")


@pytest.fixture
def alarm(aws):
    """A CloudWatch alarm of the team's own, in OK, to pass with --alarm."""
    cloudwatch = client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM, Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime", Statistic="Average",
        Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test setup")
    return cloudwatch


def fire_after_first_update(stacks, cloudwatch) -> None:
    """Make the alarm go to ALARM right after the next update (the canary's), before its hold."""
    double = stacks.doubles[STACK]
    real_up = double.up

    def up_then_fire(state=None):
        result = real_up(state)
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="test: latency up")
        double.up = real_up
        return result

    double.up = up_then_fire


# -- canary ------------------------------------------------------------------------------

def test_canary_holds_beside_the_untouched_old_group(released_1, images, capsys):
    """deploy --strategy canary: the canary (1) is verified and held next to the full old group
    (same ASG, same instances) in the same target group; SSM records the hold phase in flight and
    status shows the release pending."""
    code, data, err = deploy(capsys, "2.0.0", "--strategy", "canary", "--canary", "1")
    assert code == 0, err
    assert data["outcome"] == "held" and "fleet continue staging" in data["note"]
    assert "traffic 1.0.0 ~67%, 2.0.0 ~33%" in err   # 1 canary beside 2 old instances

    old, canary = asg_of("1.0.0"), asg_of("2.0.0")
    assert old["AutoScalingGroupName"] == released_1["AutoScalingGroupName"]
    assert instance_ids(old) == instance_ids(released_1) and old["DesiredCapacity"] == 2
    assert canary["DesiredCapacity"] == 1 and len(canary["Instances"]) == 1
    assert old["TargetGroupARNs"] == canary["TargetGroupARNs"] and len(old["TargetGroupARNs"]) == 1
    assert registered_targets() == instance_ids(old) | instance_ids(canary)

    state = stored(STACK)
    assert state.record.outcome == IN_FLIGHT and state.record.strategy == "canary"
    assert (state.record.phase, state.record.phases) == (1, 4)   # the hold of canary, hold, grow, retire-old
    assert [(g.release, g.capacity) for g in state.groups] == [("1.0.0", None), ("2.0.0", 1)]

    code, status, _ = run(capsys, "status", STACK, "--json")
    assert code == 0 and status["pending"] and status["healthy"]
    assert [(h["release"], h["healthy"]) for h in status["health"]] == [("1.0.0", 2), ("2.0.0", 1)]


def test_continue_grows_verifies_and_retires_the_old_group(released_1, images, capsys):
    """`fleet continue` after the hold: the canary's own ASG grows to full size and is verified,
    then the old group leaves; the release ends released with only 2.0.0 serving."""
    assert deploy(capsys, "2.0.0", "--strategy", "canary")[0] == 0
    canary = asg_of("2.0.0")

    code, data, err = run(capsys, "continue", STACK, "--json", *FAST)
    assert code == 0, err
    assert data["outcome"] == "released"
    assert "phase 3/4 grow" in err and "phase 4/4 retire-old" in err
    grown = asg_of("2.0.0")
    assert grown["AutoScalingGroupName"] == canary["AutoScalingGroupName"]
    assert grown["DesiredCapacity"] == 2 and instance_ids(canary) < instance_ids(grown)
    assert releases_running() == ["2.0.0"]
    assert registered_targets() == instance_ids(grown)
    assert stored(STACK).record.outcome == RELEASED and [g.release for g in stored(STACK).groups] == ["2.0.0"]


def test_abort_returns_to_the_old_group_without_rebooting_it(released_1, images, capsys):
    """`fleet abort` during the hold: the canary is removed and the old group, the same ASG with
    the same instances, serves alone again; exit 0 and the record says rolled back."""
    assert deploy(capsys, "2.0.0", "--strategy", "canary")[0] == 0
    code, data, err = run(capsys, "abort", STACK, "--json", *FAST)
    assert code == 0, err
    assert data["note"] == "aborted" and data["outcome"] == "rolled-back"
    assert releases_running() == ["1.0.0"]
    old = asg_of("1.0.0")
    assert old["AutoScalingGroupName"] == released_1["AutoScalingGroupName"]
    assert instance_ids(old) == instance_ids(released_1)
    assert registered_targets() == instance_ids(released_1)
    assert stored(STACK).record.outcome == ROLLED_BACK
    code, _, err = run(capsys, "continue", STACK)
    assert code == 3 and "no release in flight" in err


def test_alarm_during_a_timed_hold_rolls_back(stacks, released_1, images, alarm, capsys):
    """An alarm named with --alarm that goes to ALARM during a timed hold aborts the canary:
    exit 1, the old group (same instances) serves alone, the canary is gone."""
    fire_after_first_update(stacks, alarm)
    code, _, err = deploy(capsys, "2.0.0", "--strategy", "canary", "--hold", "0.5", "--alarm", ALARM)
    assert code == 1
    assert f"alarm {ALARM} fired" in err and "rolled back to 1.0.0" in err
    assert releases_running() == ["1.0.0"]
    assert instance_ids(asg_of("1.0.0")) == instance_ids(released_1)
    assert stored(STACK).record.outcome == ROLLED_BACK


def test_timed_hold_without_alarm_completes_the_release(released_1, images, alarm, capsys):
    """A short timed hold whose alarms stay OK goes on by itself: grow and retire-old follow."""
    code, data, err = deploy(capsys, "2.0.0", "--strategy", "canary", "--hold", "0.01", "--alarm", ALARM)
    assert code == 0, err
    assert data["outcome"] == "released" and releases_running() == ["2.0.0"]
    assert asg_of("2.0.0")["DesiredCapacity"] == 2


def test_alarm_already_firing_blocks_continue(stacks, released_1, images, alarm, capsys):
    """`fleet continue --alarm` reads the alarms once: one in ALARM rolls the canary back (exit 1)."""
    assert deploy(capsys, "2.0.0", "--strategy", "canary")[0] == 0
    alarm.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="test: errors")
    code, _, err = run(capsys, "continue", STACK, "--alarm", ALARM, *FAST)
    assert code == 1 and f"alarm {ALARM} is in ALARM" in err
    assert releases_running() == ["1.0.0"]
    assert instance_ids(asg_of("1.0.0")) == instance_ids(released_1)


def test_unknown_alarm_is_bad_input_before_anything_changes(released_1, images, capsys):
    """A typo in --alarm is exit 2 with one line, and no canary is started."""
    versions = len(StateStore(client("ssm")).history(STACK))
    code, _, err = deploy(capsys, "2.0.0", "--strategy", "canary", "--hold", "1", "--alarm", "no-such-alarm")
    assert code == 2 and "'no-such-alarm' do not exist" in err
    assert len(err.strip().splitlines()) == 1
    assert releases_running() == ["1.0.0"]
    assert len(StateStore(client("ssm")).history(STACK)) == versions


# -- crash and re-run --------------------------------------------------------------------

def crash_after_update(stacks, updates: int) -> None:
    """The process dies (exit 137, no rollback) right after the n-th next update, before its
    verification, as a killed CI job would."""
    double = stacks.doubles[STACK]
    real_up = double.up
    count = 0

    def up_then_die(state=None):
        nonlocal count
        result = real_up(state)
        count += 1
        if count == updates:
            double.up = real_up
            raise SystemExit(137)
        return result

    double.up = up_then_die


def test_crash_after_canary_update_resumes_at_the_canary(stacks, released_1, images, capsys):
    """Killed after the canary update: SSM says in flight at phase 1; the same deploy again
    re-applies that phase (no new ASG), verifies it and holds."""
    crash_after_update(stacks, 1)
    assert deploy(capsys, "2.0.0", "--strategy", "canary")[0] == 137
    assert stored(STACK).record.outcome == IN_FLIGHT and stored(STACK).record.phase == 0
    canary = asg_of("2.0.0")

    code, data, err = deploy(capsys, "2.0.0", "--strategy", "canary")
    assert code == 0, err
    assert "resuming release 2.0.0 on staging at phase 1/4" in err and data["outcome"] == "held"
    assert asg_of("2.0.0")["AutoScalingGroupName"] == canary["AutoScalingGroupName"]
    assert instance_ids(asg_of("1.0.0")) == instance_ids(released_1)
    assert stored(STACK).record.phase == 1


def test_crash_after_grow_update_resumes_at_grow(stacks, released_1, images, capsys):
    """Killed right after the grow update of a timed canary: the same deploy again resumes at
    grow (verifies the grown group) and then retires the old group."""
    options = ("--strategy", "canary", "--hold", "0.01")
    crash_after_update(stacks, 2)   # canary, then grow
    assert deploy(capsys, "2.0.0", *options)[0] == 137
    assert stored(STACK).record.phase == 2 and releases_running() == ["1.0.0", "2.0.0"]

    code, data, err = deploy(capsys, "2.0.0", *options)
    assert code == 0, err
    assert "at phase 3/4" in err and "phase 3/4 grow" in err and data["outcome"] == "released"
    assert releases_running() == ["2.0.0"] and stored(STACK).record.outcome == RELEASED


def test_crash_during_continue_resumes_at_the_unverified_phase(stacks, released_1, images, capsys):
    """Killed after `fleet continue` applied grow but before verifying it: continue again
    verifies grow before the old group is retired, and finishes the release."""
    assert deploy(capsys, "2.0.0", "--strategy", "canary")[0] == 0
    crash_after_update(stacks, 1)
    assert run(capsys, "continue", STACK, *FAST)[0] == 137
    assert stored(STACK).record.phase == 2

    code, data, err = run(capsys, "continue", STACK, "--json", *FAST)
    assert code == 0, err
    assert "phase 3/4 grow" in err and "phase 4/4 retire-old" in err
    assert data["outcome"] == "released" and releases_running() == ["2.0.0"]


# -- standby -----------------------------------------------------------------------------

def test_standby_keeps_the_old_group_warm_and_detached(released_1, images, capsys):
    """deploy --strategy standby: afterwards the old group still runs (same instances) but is out
    of the target group; only the new release's instances are registered; status shows the
    standby group with its expiry."""
    code, data, err = deploy(capsys, "2.0.0", "--strategy", "standby", "--standby-minutes", "30")
    assert code == 0, err
    assert data["outcome"] == "released"
    old, new = asg_of("1.0.0"), asg_of("2.0.0")
    assert instance_ids(old) == instance_ids(released_1) and old["DesiredCapacity"] == 2
    assert old["TargetGroupARNs"] == [] and new["TargetGroupARNs"] != []
    assert registered_targets() == instance_ids(new)

    code, status, _ = run(capsys, "status", STACK, "--json")
    standby = [g for g in status["groups"] if g["role"] == STANDBY]
    assert [g["release"] for g in standby] == ["1.0.0"] and standby[0]["expires_at"]
    assert status["healthy"] and not status["pending"]


def test_rollback_reattaches_the_standby_group_without_booting(released_1, images, capsys):
    """`fleet rollback` after a standby release re-registers the warm old group (same ASG, same
    instance ids: nothing launched), verifies it, then retires the release that was rolled back."""
    assert deploy(capsys, "2.0.0", "--strategy", "standby")[0] == 0
    code, data, err = run(capsys, "rollback", STACK, "--yes", "--json", *FAST)
    assert code == 0, err
    assert data["outcome"] == "rolled-back"
    assert "reactivate" in err and "retire-current" in err
    assert releases_running() == ["1.0.0"]
    back = asg_of("1.0.0")
    assert back["AutoScalingGroupName"] == released_1["AutoScalingGroupName"]
    assert instance_ids(back) == instance_ids(released_1)
    assert registered_targets() == instance_ids(released_1)
    assert [(g.release, g.role) for g in stored(STACK).groups] == [("1.0.0", "active")]


def test_cleanup_removes_only_expired_standby_groups(stacks, released_1, images, capsys):
    """cleanup before the standby expires changes nothing; after it (time driven through
    Services.now) it deletes the standby group and never touches the active one."""
    assert deploy(capsys, "2.0.0", "--strategy", "standby", "--standby-minutes", "30")[0] == 0
    active = asg_of("2.0.0")
    release = services.open_release(STACK, progress=lambda message: None, verify_timeout_s=5)

    early = Release(replace(release.s, now=lambda: release.s.now() + timedelta(minutes=29)))
    assert early.cleanup().outcome == "unchanged"
    assert releases_running() == ["1.0.0", "2.0.0"]

    late = Release(replace(release.s, now=lambda: release.s.now() + timedelta(minutes=31)))
    outcome = late.cleanup()
    assert outcome.outcome == "released" and [g.release for g in outcome.state.groups] == ["2.0.0"]
    assert releases_running() == ["2.0.0"]
    assert asg_of("2.0.0")["AutoScalingGroupName"] == active["AutoScalingGroupName"]
    assert instance_ids(asg_of("2.0.0")) == instance_ids(active)
    assert late.cleanup().outcome == "unchanged"

    code, data, _ = run(capsys, "cleanup", STACK, "--json", *FAST)
    assert code == 0 and data["outcome"] == "unchanged" and releases_running() == ["2.0.0"]


def test_crash_after_detach_resumes_and_keeps_the_old_group_warm(stacks, released_1, images, capsys):
    """Killed right after the detach-old update of a standby release: the same deploy again
    resumes at detach-old, verifies it, and ends with 1.0.0 warm (same instances) and detached."""
    crash_after_update(stacks, 2)   # cut-over, then detach-old
    assert deploy(capsys, "2.0.0", "--strategy", "standby")[0] == 137
    assert stored(STACK).record.outcome == IN_FLIGHT and stored(STACK).record.phase == 1

    code, data, err = deploy(capsys, "2.0.0", "--strategy", "standby")
    assert code == 0, err
    assert "at phase 2/2" in err and data["outcome"] == "released"
    old = asg_of("1.0.0")
    assert instance_ids(old) == instance_ids(released_1) and old["TargetGroupARNs"] == []
    assert registered_targets() == instance_ids(asg_of("2.0.0"))
    assert [(g.release, g.role) for g in stored(STACK).groups] == [("2.0.0", "active"), ("1.0.0", STANDBY)]


def test_next_deploy_removes_the_standby_group(released_1, images, capsys):
    """A deploy after a standby release supersedes the standby group: 1.0.0 is deleted while
    2.0.0 is replaced by 3.0.0."""
    assert deploy(capsys, "2.0.0", "--strategy", "standby")[0] == 0
    code, data, err = deploy(capsys, "3.0.0")
    assert code == 0, err
    assert releases_running() == ["3.0.0"]
    assert [g["release"] for g in data["groups"]] == ["3.0.0"]
