"""Verification (automation/health.py) against the moto server.

What moto really does, and what these tests build on: an ASG created with
TargetGroupARNs registers its instances, and a registered running instance is
"healthy" at once; a stopped one is "unused" (Target.InvalidState); a terminated
ASG instance is replaced at once but the replacement is not registered in the
target group; detaching the target group deregisters the instances.
"""
from __future__ import annotations

import http.server
import threading

import pytest

from automation.aws import client
from automation.errors import BadInput
from automation.health import ExpectedGroup, VerificationFailed, check_groups, smoke_check, verify
from automation.release_state import ReleaseGroup, ReleaseState
from tests.support.aws_program_double import AwsProgramDouble

AMI = "ami-0123456789abcdef0"


class FakeClock:
    """A clock whose sleep moves time on at once (no real waiting); `on_sleep` runs at each sleep."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()


@pytest.fixture
def fleet(aws):
    """integration with release 1.0.0 active on 2 instances; returns (outputs, clients)."""
    double = AwsProgramDouble("integration")
    outputs = double.up(ReleaseState(groups=(ReleaseGroup("1.0.0", AMI, capacity=2),)))
    return outputs.outputs, client("autoscaling"), client("elbv2"), client("ec2")


def expected(outputs, release="1.0.0", capacity=2, attached=True) -> list[ExpectedGroup]:
    return [ExpectedGroup(release, outputs["releaseGroups"][release]["asgName"], capacity, attached)]


def instance_ids(asg, name: str) -> list[str]:
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in group["Instances"])


@pytest.mark.aws
def test_all_desired_instances_healthy_is_ok(fleet):
    """A group counts as healthy only with all of its desired instances in service and healthy."""
    outputs, asg, elbv2, _ = fleet
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert (health.ok, health.in_service, health.healthy, health.expected) == (True, 2, 2, 2)
    assert health.problems == () and health.unhealthy_instances == ()


@pytest.mark.aws
def test_stopped_instance_is_detected_and_named(fleet):
    """One stopped instance of two fails the group (1 of 2 is not enough) and is named."""
    outputs, asg, elbv2, ec2 = fleet
    stopped = instance_ids(asg, outputs["releaseGroups"]["1.0.0"]["asgName"])[0]
    ec2.stop_instances(InstanceIds=[stopped])
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert not health.ok
    assert health.healthy == 1 and health.unhealthy_instances == (stopped,)
    assert any(stopped in p and "unused" in p for p in health.problems)


@pytest.mark.aws
def test_terminated_instance_is_detected(fleet):
    """A terminated instance's replacement is not serving yet: the group is not healthy until it is."""
    outputs, asg, elbv2, ec2 = fleet
    name = outputs["releaseGroups"]["1.0.0"]["asgName"]
    before = instance_ids(asg, name)
    ec2.terminate_instances(InstanceIds=[before[0]])
    replacement = sorted(set(instance_ids(asg, name)) - set(before))
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert not health.ok and health.healthy == 1
    assert health.unhealthy_instances == tuple(replacement)
    assert any("not registered in the target group" in p for p in health.problems)


@pytest.mark.aws
def test_deregistered_target_is_detected(fleet):
    """An instance in service in the ASG but not registered in the target group is not serving."""
    outputs, asg, elbv2, _ = fleet
    gone = instance_ids(asg, outputs["releaseGroups"]["1.0.0"]["asgName"])[1]
    elbv2.deregister_targets(TargetGroupArn=outputs["targetGroupArn"], Targets=[{"Id": gone}])
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert health.unhealthy_instances == (gone,)
    assert f"asg {health.asg_name}: 1/2 instances healthy" in health.problems


@pytest.mark.aws
def test_unhealthy_in_asg_is_detected(fleet):
    """An instance the ASG marks Unhealthy does not count, even if the target group still says healthy."""
    outputs, asg, elbv2, _ = fleet
    sick = instance_ids(asg, outputs["releaseGroups"]["1.0.0"]["asgName"])[0]
    asg.set_instance_health(InstanceId=sick, HealthStatus="Unhealthy")
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert health.unhealthy_instances == (sick,)
    assert any("Unhealthy in its Auto Scaling Group" in p for p in health.problems)


@pytest.mark.aws
def test_missing_asg_is_a_problem_not_a_crash(fleet):
    """A group whose ASG does not exist (or has no name in the outputs) is reported, not raised."""
    outputs, asg, elbv2, _ = fleet
    groups = expected(outputs) + [ExpectedGroup("0.9.0", "fleet-integration-0.9.0-gone", 2), ExpectedGroup("0.8.0", "", 1)]
    healths = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=groups)
    assert [h.ok for h in healths] == [True, False, False]
    assert healths[1].problems == ("asg fleet-integration-0.9.0-gone of release 0.9.0 not found",)
    assert "no Auto Scaling Group" in healths[2].problems[0]


@pytest.mark.aws
def test_missing_target_group_is_a_problem_not_a_crash(fleet):
    """A target group that no longer exists fails the active group with its ARN named."""
    outputs, asg, elbv2, _ = fleet
    gone = outputs["targetGroupArn"].replace(outputs["targetGroupArn"].rsplit("/", 1)[-1], "0123456789abcdef")
    [health] = check_groups(asg, elbv2, target_group_arn=gone, groups=expected(outputs))
    assert f"asg {health.asg_name}: target group {gone} not found" in health.problems
    assert health.healthy == 0


@pytest.mark.aws
def test_desired_capacity_below_expected_is_a_problem(fleet):
    """An ASG scaled down below the group's capacity fails even if all its instances are healthy."""
    outputs, asg, elbv2, _ = fleet
    name = outputs["releaseGroups"]["1.0.0"]["asgName"]
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
    [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs))
    assert f"asg {name}: desired capacity 1, expected 2" in health.problems
    assert f"asg {name}: 1/2 instances InService" in health.problems


@pytest.mark.aws
def test_standby_group_must_not_be_registered(aws):
    """A standby group serves no traffic: its instances in the target group are a problem; detached it is fine."""
    double = AwsProgramDouble("integration")
    state = ReleaseState(groups=(ReleaseGroup("2.0.0", AMI, capacity=1), ReleaseGroup("1.0.0", AMI, role="standby", capacity=1)))
    outputs = double.up(state).outputs
    asg, elbv2 = client("autoscaling"), client("elbv2")
    groups = expected(outputs, "2.0.0", 1) + expected(outputs, "1.0.0", 1, attached=False)
    tg = outputs["targetGroupArn"]
    assert all(h.ok for h in check_groups(asg, elbv2, target_group_arn=tg, groups=groups))

    standby_asg = outputs["releaseGroups"]["1.0.0"]["asgName"]
    asg.attach_load_balancer_target_groups(AutoScalingGroupName=standby_asg, TargetGroupARNs=[tg])
    active, standby = check_groups(asg, elbv2, target_group_arn=tg, groups=groups)
    assert active.ok and not standby.ok
    assert f"asg {standby_asg}: standby but still attached to target group {tg}" in standby.problems
    assert any("is standby but healthy in the target group" in p for p in standby.problems)


@pytest.mark.aws
def test_poll_costs_two_calls_whatever_the_instance_count(aws):
    """One poll is one describe_auto_scaling_groups and one describe_target_health, for 2 or 30 instances."""
    double = AwsProgramDouble("integration")
    asg, elbv2 = client("autoscaling"), client("elbv2")
    calls: list[str] = []
    for c in (asg, elbv2):
        c.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    counts = {}
    for release, capacity in (("1.0.0", 2), ("1.1.0", 30)):
        outputs = double.up(ReleaseState(groups=(ReleaseGroup(release, AMI, capacity=capacity),))).outputs
        calls.clear()
        [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs, release, capacity))
        assert health.ok and health.healthy == capacity
        counts[capacity] = sorted(calls)
    assert counts[2] == counts[30] == ["DescribeAutoScalingGroups", "DescribeTargetHealth"]


@pytest.mark.aws
def test_verify_polls_until_all_healthy_and_reports_progress(fleet):
    """verify waits (with backoff) until every instance serves and reports each poll's counts."""
    outputs, asg, elbv2, _ = fleet
    tg = outputs["targetGroupArn"]
    late = instance_ids(asg, outputs["releaseGroups"]["1.0.0"]["asgName"])[0]
    elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": late}])
    clock = FakeClock(on_sleep=lambda: elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": late}]))
    seen: list[int] = []
    healths = verify(
        asg, elbv2, target_group_arn=tg, groups=expected(outputs), timeout_s=60,
        on_progress=lambda hs: seen.append(hs[0].healthy), clock=clock, sleep=clock.sleep,
    )
    assert seen == [1, 2]
    assert healths[0].ok


@pytest.mark.aws
def test_verify_timeout_says_what_is_still_wrong(fleet):
    """On timeout, the one-line reason names the ASG and the instance that is not serving."""
    outputs, asg, elbv2, ec2 = fleet
    name = outputs["releaseGroups"]["1.0.0"]["asgName"]
    stopped = instance_ids(asg, name)[0]
    ec2.stop_instances(InstanceIds=[stopped])
    clock = FakeClock()
    with pytest.raises(VerificationFailed) as failure:
        verify(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=expected(outputs), timeout_s=30,
               clock=clock, sleep=clock.sleep)
    reason = failure.value.reason
    assert reason.startswith("verification failed after 30s: ")
    assert f"instance {stopped} is unused in the target group" in reason and f"asg {name}: 1/2 instances healthy" in reason
    assert "\n" not in reason
    assert failure.value.health[0].healthy == 1
    assert clock.now == pytest.approx(30)


# -- smoke check: a local HTTP server, no AWS ----------------------------------------


@pytest.fixture
def http_server():
    """A local HTTP server answering GET with the status in `server.status`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(self.server.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/health"


def test_smoke_check_passes_on_expected_status(http_server):
    """A URL answering the expected status passes at once."""
    clock = FakeClock()
    smoke_check(url_of(http_server), timeout_s=10, clock=clock, sleep=clock.sleep)
    assert clock.now == 0


def test_smoke_check_waits_for_status_then_fails_naming_last_answer(http_server):
    """A URL that keeps answering 503 fails after the timeout, saying what it answered."""
    http_server.status = 503
    clock = FakeClock()
    with pytest.raises(VerificationFailed, match=r"expected HTTP 200, last got HTTP 503"):
        smoke_check(url_of(http_server), timeout_s=20, clock=clock, sleep=clock.sleep)


def test_smoke_check_recovers_when_the_url_starts_answering(http_server):
    """A URL that answers 503 first and 200 later passes."""
    http_server.status = 503
    clock = FakeClock(on_sleep=lambda: setattr(http_server, "status", 200))
    smoke_check(url_of(http_server), timeout_s=20, clock=clock, sleep=clock.sleep)
    assert clock.now > 0


def test_smoke_check_rejects_non_http_url():
    """A file: or bare URL is bad input, named in one line."""
    with pytest.raises(BadInput, match=r"'file:///etc/passwd' is invalid: expected an http:// or https:// URL"):
        smoke_check("file:///etc/passwd", timeout_s=1)
