"""AwsProgramDouble: a test double for the Pulumi program and CLI in aws-layer release tests.

The real `pulumi` CLI cannot run here, so this stands in for automation.workspace.StackWorkspace
(same methods, same result types) and makes the AWS changes the program would make, with boto3
against the moto server:

- a foundation created on the first update: VPC, two public and two private subnets, security
  groups, an ALB with an HTTP listener and its target group;
- one launch template + ASG per release group of the state, with name_prefix-style unique names,
  tagged fleet:stack / fleet:release / fleet:managed-by (propagated to instances), desired =
  capacity, the target group attached inline for active groups only;
- new groups are created before the groups that left the state are deleted (create-before-destroy);
- outputs shaped like infra/__main__.py's (releaseGroups, targetGroupArn, settings, releaseState…;
  without the alarm, log group and topic outputs, which this double does not create).

Its own memory of what it created plays the Pulumi state, so one double serves one stack for a
whole test. With state None it reads the release state from SSM, as the program does.

Failure injection:
- fail_next_up_for_release=R: the next update creates R's ASG, then fails with UpdateFailed and
  leaves that ASG out of its state and outputs (like pulumi-aws #5178); nothing old is deleted.
- unhealthy_release=R: R's instances are stopped right after creation, so verification fails.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from automation.aws import client
from automation.errors import BadInput
from automation.release_state import ACTIVE, ReleaseGroup, ReleaseState
from automation.state_store import StateStore
from automation.workspace import (
    PROJECT_DIR,
    PreviewResult,
    ResourceChange,
    UpdateFailed,
    UpResult,
    known_stacks,
)

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AUTO_SCALING_GROUP = "aws:autoscaling/group:Group"
FOUNDATION = "fleet:foundation:Foundation"
VPC_CIDR = "10.0.0.0/16"
PUBLIC_CIDRS = ("10.0.1.0/24", "10.0.2.0/24")
PRIVATE_CIDRS = ("10.0.11.0/24", "10.0.12.0/24")
# infra/__main__.py's `settings` output: camelCase key -> type.
SETTINGS = {
    "appName": str, "instanceType": str, "minSize": int, "desiredCapacity": int, "maxSize": int,
    "appPort": int, "healthCheckPath": str, "healthCheckIntervalSeconds": int, "healthyThreshold": int,
    "unhealthyThreshold": int, "deregistrationDelaySeconds": int, "healthCheckGracePeriodSeconds": int,
    "capacityTimeoutMinutes": int, "requireApprovedPlan": bool,
}


@dataclass
class _Group:
    """One release group as the double's state remembers it."""

    group: ReleaseGroup
    capacity: int
    asg_name: str
    launch_template_id: str
    launch_template_version: int


class AwsProgramDouble:
    """Stands in for StackWorkspace(stack) in aws-layer tests; see the module docstring."""

    def __init__(
        self,
        stack: str,
        *,
        project_dir: Path = PROJECT_DIR,
        on_change: Callable[[ResourceChange, str], None] | None = None,
        fail_next_up_for_release: str | None = None,
        unhealthy_release: str | None = None,
    ):
        stacks = known_stacks(project_dir)
        if stack not in stacks:
            raise BadInput(f"stack {stack!r} is unknown: expected one of {', '.join(stacks)}")
        self.stack = stack
        self.on_change = on_change
        self.fail_next_up_for_release = fail_next_up_for_release
        self.unhealthy_release = unhealthy_release
        # The stack's own config file, and the project's schema defaults for the effective settings.
        self.stack_config: dict[str, Any] = _config_of(project_dir / f"Pulumi.{stack}.yaml")
        self.defaults = {
            f"fleet:{key}": spec.get("default")
            for key, spec in (_yaml(project_dir / "Pulumi.yaml").get("config") or {}).items()
        }
        self.foundation: dict[str, Any] = {}
        self.groups: dict[str, _Group] = {}
        self.declared = ReleaseState()
        self.asg = client("autoscaling", self.region)
        self.ec2 = client("ec2", self.region)
        self.elbv2 = client("elbv2", self.region)

    # -- StackWorkspace interface ---------------------------------------------------

    @property
    def region(self) -> str:
        return str(self.stack_config.get("aws:region", "us-east-1"))

    def config(self) -> dict[str, str]:
        return {key: _config_text(value) for key, value in sorted(self.stack_config.items())}

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()

    def outputs(self) -> dict[str, Any]:
        if not self.foundation:
            return {}
        f = self.foundation
        return {
            "url": f"http://{f['dns']}",
            "vpcId": f["vpc"],
            "publicSubnetIds": list(f["public"]),
            "privateSubnetIds": list(f["private"]),
            "loadBalancerArn": f["lb"],
            "loadBalancerDnsName": f["dns"],
            "targetGroupArn": f["tg"],
            "albSecurityGroupId": f["alb_sg"],
            "appSecurityGroupId": f["app_sg"],
            "releaseGroups": {
                release: {
                    "asgName": g.asg_name,
                    "launchTemplateId": g.launch_template_id,
                    "launchTemplateVersion": g.launch_template_version,
                    "ami": g.group.ami,
                    "role": g.group.role,
                    "capacity": g.capacity,
                    "instanceType": self.setting("instanceType"),
                }
                for release, g in self.groups.items()
            },
            "settings": {"region": self.region, **{key: self.setting(key) for key in SETTINGS}},
            "releaseState": self.declared.to_dict(),
        }

    def preview(self, state: ReleaseState | None = None) -> PreviewResult:
        changes = self._plan(self._desired(state))
        return PreviewResult(changes=tuple(changes), counts=_counts(changes))

    def up(self, state: ReleaseState | None = None) -> UpResult:
        desired = self._desired(state)
        changes = self._plan(desired)
        if not self.foundation:
            self._step(changes[0], self._create_foundation)
        wanted = {g.release for g in desired.groups}
        leaving = [g for r, g in self.groups.items() if r not in wanted]
        for group in desired.groups:   # creates and in-place updates first …
            known = self.groups.get(group.release)
            if self._replaces(group):
                self._create_group(group, changes)
                leaving += [known] if known else []
            elif group != known.group:
                self._update_group(group, changes)
        for known in leaving:   # … deletes only at the end
            self.groups = {r: g for r, g in self.groups.items() if g is not known}
            self._delete_group(known, changes)
        self.declared = desired
        return UpResult(counts=_counts(changes), outputs=self.outputs())

    def refresh(self) -> None:
        """Forget groups whose ASG no longer exists, as `pulumi refresh` would."""
        names = [g.asg_name for g in self.groups.values()]
        found = {
            g["AutoScalingGroupName"]
            for g in self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]
        } if names else set()
        self.groups = {r: g for r, g in self.groups.items() if g.asg_name in found}

    # -- the program's decisions ------------------------------------------------------

    def setting(self, key: str) -> Any:
        name = f"fleet:{key}"
        value = self.stack_config.get(name, self.defaults.get(name))
        kind = SETTINGS[key]
        return (str(value).lower() == "true") if kind is bool else kind(value)

    def _desired(self, state: ReleaseState | None) -> ReleaseState:
        return state if state is not None else StateStore(client("ssm", self.region)).read(self.stack)

    def _capacity(self, group: ReleaseGroup) -> int:
        return group.capacity if group.capacity is not None else self.setting("desiredCapacity")

    def _replaces(self, group: ReleaseGroup) -> bool:
        known = self.groups.get(group.release)
        return known is None or known.group.ami != group.ami

    def _plan(self, desired: ReleaseState) -> list[ResourceChange]:
        changes = [] if self.foundation else [self._change("create", FOUNDATION, "foundation")]
        replaced = []
        for group in desired.groups:
            if self._replaces(group):
                op = "create-replacement" if group.release in self.groups else "create"
                changes += [self._change(op, t, f"release-{group.release}-{s}") for t, s in _PARTS]
                replaced += [group.release] if group.release in self.groups else []
            else:
                known = self.groups[group.release]
                diffs = tuple(sorted(
                    ({"targetGroupArns"} if known.group.role != group.role else set())
                    | ({"desiredCapacity"} if known.capacity != self._capacity(group) else set())
                ))
                if diffs:
                    changes.append(self._change("update", AUTO_SCALING_GROUP, f"release-{group.release}-asg", diffs))
        wanted = {g.release for g in desired.groups}
        for release in self.groups:
            if release not in wanted:
                changes += [self._change("delete", t, f"release-{release}-{s}") for t, s in reversed(_PARTS)]
        for release in replaced:
            changes += [self._change("delete-replaced", t, f"release-{release}-{s}") for t, s in reversed(_PARTS)]
        return changes

    def _change(self, op: str, type_: str, name: str, diffs: tuple[str, ...] = ()) -> ResourceChange:
        return ResourceChange(op, type_, name, f"urn:pulumi:{self.stack}::fleet::{type_}::{name}", diffs)

    def _step(self, change: ResourceChange, action: Callable[[], Any]) -> Any:
        if self.on_change:
            self.on_change(change, "pre")
        result = action()
        if self.on_change:
            self.on_change(change, "done")
        return result

    def _tags(self, release: str | None = None) -> dict[str, str]:
        tags = {"fleet:stack": self.stack, "fleet:managed-by": "fleet"}
        return {**tags, "fleet:release": release} if release else tags

    # -- AWS changes ------------------------------------------------------------------

    def _create_foundation(self) -> None:
        spec = lambda kind: [{"ResourceType": kind, "Tags": _tag_list(self._tags())}]  # noqa: E731
        vpc = self.ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=spec("vpc"))["Vpc"]["VpcId"]
        zones = [z["ZoneName"] for z in self.ec2.describe_availability_zones()["AvailabilityZones"]][:2]

        def subnets(cidrs):
            return [
                self.ec2.create_subnet(VpcId=vpc, CidrBlock=c, AvailabilityZone=z, TagSpecifications=spec("subnet"))[
                    "Subnet"]["SubnetId"]
                for c, z in zip(cidrs, zones)
            ]

        public, private = subnets(PUBLIC_CIDRS), subnets(PRIVATE_CIDRS)
        alb_sg, app_sg = (
            self.ec2.create_security_group(
                GroupName=f"fleet-{self.stack}-{what}-{_suffix()}", Description=f"fleet {what}", VpcId=vpc,
                TagSpecifications=spec("security-group"),
            )["GroupId"]
            for what in ("alb", "app")
        )
        tags = _tag_list(self._tags())
        lb = self.elbv2.create_load_balancer(
            Name=f"fleet-{self.stack}-{_suffix()}"[:32], Subnets=public, SecurityGroups=[alb_sg], Scheme="internet-facing",
            Type="application", Tags=tags,
        )["LoadBalancers"][0]
        tg = self.elbv2.create_target_group(
            Name=f"fleet-{self.stack}-{_suffix()}"[:32], Protocol="HTTP", Port=self.setting("appPort"), VpcId=vpc,
            TargetType="instance", HealthCheckPath=self.setting("healthCheckPath"), Tags=tags,
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )
        self.foundation = {
            "vpc": vpc, "public": public, "private": private, "alb_sg": alb_sg, "app_sg": app_sg,
            "lb": lb["LoadBalancerArn"], "dns": lb["DNSName"], "tg": tg,
        }

    def _create_group(self, group: ReleaseGroup, changes: list[ResourceChange]) -> None:
        capacity = self._capacity(group)
        lt_change, asg_change = _steps_of(group.release, changes, CREATES)
        template = self._step(lt_change, lambda: self.ec2.create_launch_template(
            LaunchTemplateName=f"fleet-{self.stack}-{group.release}-{_suffix()}",
            LaunchTemplateData={
                "ImageId": group.ami,
                "InstanceType": self.setting("instanceType"),
                "SecurityGroupIds": [self.foundation["app_sg"]],
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            },
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": _tag_list(self._tags(group.release))}],
        )["LaunchTemplate"])
        asg_name = f"fleet-{self.stack}-{group.release}-{_suffix()}"

        def create_asg() -> None:
            self.asg.create_auto_scaling_group(
                AutoScalingGroupName=asg_name,
                LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": str(template["LatestVersionNumber"])},
                MinSize=min(self.setting("minSize"), capacity),
                MaxSize=max(self.setting("maxSize"), capacity),
                DesiredCapacity=capacity,
                VPCZoneIdentifier=",".join(self.foundation["private"]),
                TargetGroupARNs=[self.foundation["tg"]] if group.role == ACTIVE else [],
                HealthCheckType="ELB",
                HealthCheckGracePeriod=self.setting("healthCheckGracePeriodSeconds"),
                Tags=[
                    {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": asg_name,
                     "ResourceType": "auto-scaling-group"}
                    for k, v in self._tags(group.release).items()
                ],
            )
            if group.release == self.unhealthy_release:
                self._stop_instances(asg_name)
            if group.release == self.fail_next_up_for_release:
                self.fail_next_up_for_release = None
                raise UpdateFailed(
                    f"update of stack {self.stack!r} failed at {AUTO_SCALING_GROUP} {asg_change.name}: "
                    f"waiting for ELB capacity: timeout while waiting for state to become 'ok'",
                    failed=(asg_change,),
                )

        if self.on_change:
            self.on_change(asg_change, "pre")
        try:
            create_asg()
        except UpdateFailed:
            if self.on_change:
                self.on_change(asg_change, "failed")
            raise
        if self.on_change:
            self.on_change(asg_change, "done")
        self.groups[group.release] = _Group(
            group, capacity, asg_name, template["LaunchTemplateId"], int(template["LatestVersionNumber"])
        )

    def _update_group(self, group: ReleaseGroup, changes: list[ResourceChange]) -> None:
        known = self.groups[group.release]
        change = next((c for c in changes if c.name == f"release-{group.release}-asg" and c.op == "update"), None)
        capacity = self._capacity(group)

        def update() -> None:
            if known.group.role != group.role:
                if group.role == ACTIVE:
                    self.asg.attach_load_balancer_target_groups(
                        AutoScalingGroupName=known.asg_name, TargetGroupARNs=[self.foundation["tg"]])
                else:
                    self.asg.detach_load_balancer_target_groups(
                        AutoScalingGroupName=known.asg_name, TargetGroupARNs=[self.foundation["tg"]])
            if known.capacity != capacity:
                self.asg.update_auto_scaling_group(
                    AutoScalingGroupName=known.asg_name, DesiredCapacity=capacity,
                    MinSize=min(self.setting("minSize"), capacity), MaxSize=max(self.setting("maxSize"), capacity),
                )

        if change is not None:
            self._step(change, update)
        known.group, known.capacity = group, capacity

    def _delete_group(self, known: _Group, changes: list[ResourceChange]) -> None:
        release = known.group.release
        asg_change, lt_change = _steps_of(release, changes, DELETES)

        def delete_asg() -> None:
            # AWS deregisters (drains) an attached ASG's instances as it deletes them; moto
            # does not, so detaching first keeps the target group as AWS would leave it.
            if known.group.role == ACTIVE:
                self.asg.detach_load_balancer_target_groups(
                    AutoScalingGroupName=known.asg_name, TargetGroupARNs=[self.foundation["tg"]])
            self.asg.delete_auto_scaling_group(AutoScalingGroupName=known.asg_name, ForceDelete=True)

        self._step(asg_change, delete_asg)
        self._step(lt_change, lambda: self.ec2.delete_launch_template(LaunchTemplateId=known.launch_template_id))

    def _stop_instances(self, asg_name: str) -> None:
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
        instance_ids = [i["InstanceId"] for i in group["Instances"]]
        if instance_ids:
            self.ec2.stop_instances(InstanceIds=instance_ids)


_PARTS = ((LAUNCH_TEMPLATE, "lt"), (AUTO_SCALING_GROUP, "asg"))
CREATES = ("create", "create-replacement")
DELETES = ("delete", "delete-replaced")


def _steps_of(release: str, changes: list[ResourceChange], ops: tuple[str, ...]) -> list[ResourceChange]:
    names = {f"release-{release}-{suffix}" for _, suffix in _PARTS}
    return [c for c in changes if c.name in names and c.op in ops]


def _counts(changes: list[ResourceChange]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.op] = counts.get(change.op, 0) + 1
    return counts


def _suffix() -> str:
    """Pulumi autonaming's random suffix."""
    return secrets.token_hex(4)[:7]


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _config_of(path: Path) -> dict[str, Any]:
    return dict(_yaml(path).get("config") or {})


def _config_text(value: Any) -> str:
    """A config value as `pulumi config --json` reports it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
