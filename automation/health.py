"""Verification after every update: is each release group really serving (or really standing by)?

"Healthy" means every instance the group should run, not one of them: the ASG's desired
capacity is the group's capacity, that many instances are InService and Healthy in the
ASG, and for an active group each of them is "healthy" in the target group. A standby
group must not be attached to the target group nor have instances registered in it.

One poll costs a constant number of AWS calls whatever the fleet size: one
describe_auto_scaling_groups for all groups (instances come inside it; more calls only
through pagination) and one describe_target_health for the target group.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from automation.errors import BadInput, ReleaseFailed
from automation.waiting import WaitTimeout, wait_for

IN_SERVICE = "InService"
ASG_HEALTHY = "Healthy"
TARGET_HEALTHY = "healthy"
# A standby group's targets may still be draining (finishing in-flight requests, no new ones).
LEAVING_STATES = ("draining",)
SMOKE_REQUEST_TIMEOUT_S = 10.0


class VerificationFailed(ReleaseFailed):
    """Release groups (or the URL) did not become healthy in time; `health` is the last check."""

    def __init__(self, reason: str, health: Sequence["GroupHealth"] = ()):
        super().__init__(reason)
        self.health = list(health)


@dataclass(frozen=True)
class ExpectedGroup:
    """What one release group should look like in AWS."""

    release: str
    asg_name: str
    capacity: int
    attached: bool = True   # active groups serve from the target group; standby ones must not


@dataclass(frozen=True)
class GroupHealth:
    release: str
    asg_name: str
    expected: int
    in_service: int
    healthy: int
    unhealthy_instances: tuple[str, ...]
    problems: tuple[str, ...]   # one line each, e.g. "asg fleet-x: 1/2 instances InService"

    @property
    def ok(self) -> bool:
        return not self.problems


def check_groups(
    asg, elbv2, *, target_group_arn: str | None, groups: Sequence[ExpectedGroup]
) -> list[GroupHealth]:
    """One look at every group: what is healthy and, in one line each, what is not."""
    described = _describe_groups(asg, [g.asg_name for g in groups if g.asg_name])
    targets = _target_states(elbv2, target_group_arn) if groups else {}
    return [_group_health(g, described.get(g.asg_name), target_group_arn, targets) for g in groups]


def verify(
    asg,
    elbv2,
    *,
    target_group_arn: str | None,
    groups: Sequence[ExpectedGroup],
    timeout_s: float,
    on_progress: Callable[[list[GroupHealth]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[GroupHealth]:
    """Poll until every group is healthy and return the final check.

    Raises VerificationFailed naming what is still wrong when timeout_s runs out.
    """
    if not groups:
        return []
    last: list[GroupHealth] = []

    def all_ok() -> list[GroupHealth] | None:
        nonlocal last
        last = check_groups(asg, elbv2, target_group_arn=target_group_arn, groups=groups)
        if on_progress is not None:
            on_progress(last)
        return last if all(h.ok for h in last) else None

    what = f"release(s) {', '.join(g.release for g in groups)} to be healthy"
    try:
        return wait_for(all_ok, what=what, timeout_s=timeout_s, clock=clock, sleep=sleep)
    except WaitTimeout:
        problems = [p for h in last for p in h.problems]
        raise VerificationFailed(
            f"verification failed after {timeout_s:.0f}s: {'; '.join(problems)}", last
        ) from None


def smoke_check(
    url: str,
    *,
    expected_status: int = 200,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """GET url until it answers expected_status; VerificationFailed with the last answer otherwise."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BadInput(f"smoke check URL {url!r} is invalid: expected an http:// or https:// URL")
    last = "no answer"

    def answers() -> bool:
        nonlocal last
        status, last = _get_status(url, min(SMOKE_REQUEST_TIMEOUT_S, max(timeout_s, 1.0)))
        return status == expected_status

    try:
        wait_for(answers, what=f"{url} to answer HTTP {expected_status}", timeout_s=timeout_s, clock=clock, sleep=sleep)
    except WaitTimeout:
        raise VerificationFailed(
            f"smoke check of {url} failed after {timeout_s:.0f}s: expected HTTP {expected_status}, last got {last}"
        ) from None


# -- AWS reads ----------------------------------------------------------------------


def _describe_groups(asg, names: list[str]) -> dict[str, dict[str, Any]]:
    if not names:
        return {}
    described: dict[str, dict[str, Any]] = {}
    for page in asg.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=names):
        for group in page["AutoScalingGroups"]:
            described[group["AutoScalingGroupName"]] = group
    return described


def _target_states(elbv2, target_group_arn: str | None) -> dict[str, dict[str, Any]] | None:
    """Every registered target's TargetHealth (State, Reason, Description), by instance id;
    None when the target group does not exist."""
    if not target_group_arn:
        return {}
    try:
        response = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
    except elbv2.exceptions.TargetGroupNotFoundException:
        return None
    return {d["Target"]["Id"]: d.get("TargetHealth", {}) for d in response["TargetHealthDescriptions"]}


# -- judgement ----------------------------------------------------------------------


def _group_health(
    expected: ExpectedGroup,
    group: dict[str, Any] | None,
    target_group_arn: str | None,
    targets: dict[str, dict[str, Any]] | None,
) -> GroupHealth:
    name = expected.asg_name
    if group is None:
        missing = f"asg {name} of release {expected.release} not found" if name else (
            f"release {expected.release} has no Auto Scaling Group in the stack outputs"
        )
        return GroupHealth(expected.release, name, expected.capacity, 0, 0, (), (missing,))

    problems: list[str] = []
    unhealthy: list[str] = []
    if group["DesiredCapacity"] != expected.capacity:
        problems.append(f"asg {name}: desired capacity {group['DesiredCapacity']}, expected {expected.capacity}")

    attached_to = set(group.get("TargetGroupARNs") or ())
    if expected.attached and not target_group_arn:
        problems.append(f"asg {name}: no target group ARN to check its instances against")
    elif targets is None:
        problems.append(f"asg {name}: target group {target_group_arn} not found")
        targets = {}
    elif expected.attached and target_group_arn not in attached_to:
        problems.append(f"asg {name}: not attached to target group {target_group_arn}")
    elif not expected.attached and target_group_arn in attached_to:
        problems.append(f"asg {name}: standby but still attached to target group {target_group_arn}")

    in_service = [i for i in group.get("Instances", []) if i["LifecycleState"] == IN_SERVICE]
    healthy = 0
    for instance in in_service:
        reason = _instance_problem(instance, expected.attached, targets)
        if reason:
            unhealthy.append(instance["InstanceId"])
            problems.append(f"asg {name}: instance {instance['InstanceId']} {reason}")
        else:
            healthy += 1
    if len(in_service) < expected.capacity:
        problems.append(f"asg {name}: {len(in_service)}/{expected.capacity} instances InService")
    elif healthy < expected.capacity:
        problems.append(f"asg {name}: {healthy}/{expected.capacity} instances healthy")

    return GroupHealth(
        release=expected.release,
        asg_name=name,
        expected=expected.capacity,
        in_service=len(in_service),
        healthy=healthy,
        unhealthy_instances=tuple(unhealthy),
        problems=tuple(problems),
    )


def _instance_problem(instance: dict[str, Any], attached: bool, targets: dict[str, dict[str, Any]]) -> str:
    """Why an InService instance does not count as healthy ('' when it does)."""
    if instance.get("HealthStatus") != ASG_HEALTHY:
        return f"is {instance.get('HealthStatus', 'of unknown health')} in its Auto Scaling Group"
    target = targets.get(instance["InstanceId"])
    if attached:
        if target is None:
            return "is not registered in the target group"
        if target.get("State") != TARGET_HEALTHY:
            detail = target.get("Reason") or target.get("Description") or ""
            return f"is {target.get('State')} in the target group" + (f" ({detail})" if detail else "")
    elif target is not None and target.get("State") not in LEAVING_STATES:
        return f"is standby but {target.get('State')} in the target group"
    return ""


def _get_status(url: str, timeout_s: float) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return None, f"no answer ({reason})"
