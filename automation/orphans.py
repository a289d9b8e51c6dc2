"""Orphans: AWS resources tagged for a stack that the stack's Pulumi state does not hold.

A failed update can leave them behind: pulumi-aws #5178 leaves an Auto Scaling Group
whose capacity wait timed out out of the Pulumi state, still running instances. Only
resources tagged fleet:stack=<stack> and fleet:managed-by=fleet are considered, AMI
builders (fleet:role=ami-builder) never, and a launch template or instance used by a
known ASG never.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from botocore.exceptions import ClientError

from automation.ami import BUILDER_ROLE, MANAGED_BY, MANAGED_BY_TAG, ROLE_TAG
from automation.aws import error_code

STACK_TAG = "fleet:stack"
ASG_NAME_TAG = "aws:autoscaling:groupName"
LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped")
# terminate_instances takes at most this many ids per call.
TERMINATE_BATCH = 1000

# Error codes that mean the resource is already gone (or on its way): deleting again is done.
ASG_GONE_MARKERS = ("not found", "pending delete")
LAUNCH_TEMPLATE_GONE = ("InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException")
INSTANCE_GONE = ("InvalidInstanceID.NotFound",)


@dataclass(frozen=True)
class Orphans:
    auto_scaling_groups: tuple[str, ...] = ()
    launch_templates: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.auto_scaling_groups or self.launch_templates or self.instances)

    def to_dict(self) -> dict[str, list[str]]:
        return {key: list(value) for key, value in asdict(self).items()}


def find_orphans(
    asg, ec2, *, stack: str, known_asg_names: set[str], known_launch_template_ids: set[str]
) -> Orphans:
    """Everything fleet tagged for `stack` that is neither known nor used by something known."""
    groups = [g for g in _stack_groups(asg, stack) if not _is_builder(g.get("Tags", []))]
    known_groups = [g for g in groups if g["AutoScalingGroupName"] in known_asg_names]
    in_known_groups = {i["InstanceId"] for g in known_groups for i in g.get("Instances", [])}
    templates_in_use = set(known_launch_template_ids) | {
        template_id for g in known_groups for template_id in _launch_template_ids(g)
    }

    orphan_groups = sorted(g["AutoScalingGroupName"] for g in groups if g["AutoScalingGroupName"] not in known_asg_names)
    orphan_templates = sorted(
        t["LaunchTemplateId"]
        for t in _stack_launch_templates(ec2, stack)
        if t["LaunchTemplateId"] not in templates_in_use and not _is_builder(t.get("Tags", []))
    )
    orphan_instances = sorted(
        i["InstanceId"]
        for i in _stack_instances(ec2, stack)
        if i["InstanceId"] not in in_known_groups
        and _tag(i.get("Tags", []), ASG_NAME_TAG) not in known_asg_names
        and not _is_builder(i.get("Tags", []))
    )
    return Orphans(tuple(orphan_groups), tuple(orphan_templates), tuple(orphan_instances))


def delete_orphans(asg, ec2, orphans: Orphans) -> None:
    """Force-delete the ASGs (with their instances), terminate the instances, then delete
    the launch templates no ASG uses any more. Already gone counts as done."""
    for name in orphans.auto_scaling_groups:
        try:
            asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        except ClientError as error:
            if not any(marker in _message(error).lower() for marker in ASG_GONE_MARKERS):
                raise
    for start in range(0, len(orphans.instances), TERMINATE_BATCH):
        _terminate(ec2, list(orphans.instances[start : start + TERMINATE_BATCH]))
    for template_id in orphans.launch_templates:
        try:
            ec2.delete_launch_template(LaunchTemplateId=template_id)
        except ClientError as error:
            if error_code(error) not in LAUNCH_TEMPLATE_GONE:
                raise


# -- AWS reads ----------------------------------------------------------------------


def _stack_filters(stack: str) -> list[dict[str, Any]]:
    return [
        {"Name": f"tag:{STACK_TAG}", "Values": [stack]},
        {"Name": f"tag:{MANAGED_BY_TAG}", "Values": [MANAGED_BY]},
    ]


def _stack_groups(asg, stack: str) -> list[dict[str, Any]]:
    pages = asg.get_paginator("describe_auto_scaling_groups").paginate(Filters=_stack_filters(stack))
    return [g for page in pages for g in page["AutoScalingGroups"]]


def _stack_launch_templates(ec2, stack: str) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_launch_templates").paginate(Filters=_stack_filters(stack))
    return [t for page in pages for t in page["LaunchTemplates"]]


def _stack_instances(ec2, stack: str) -> list[dict[str, Any]]:
    filters = _stack_filters(stack) + [{"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _launch_template_ids(group: dict[str, Any]) -> Iterable[str]:
    direct = group.get("LaunchTemplate") or {}
    mixed = ((group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
    return [spec["LaunchTemplateId"] for spec in (direct, mixed) if spec.get("LaunchTemplateId")]


# -- helpers ------------------------------------------------------------------------


def _terminate(ec2, instance_ids: list[str]) -> None:
    if not instance_ids:
        return
    try:
        ec2.terminate_instances(InstanceIds=instance_ids)
    except ClientError as error:
        if error_code(error) not in INSTANCE_GONE:
            raise
        # One unknown id fails the whole call: terminate the rest one by one.
        if len(instance_ids) > 1:
            for instance_id in instance_ids:
                _terminate(ec2, [instance_id])


def _tag(tags: list[dict[str, Any]], key: str) -> str | None:
    return next((t["Value"] for t in tags if t["Key"] == key), None)


def _is_builder(tags: list[dict[str, Any]]) -> bool:
    return _tag(tags, ROLE_TAG) == BUILDER_ROLE


def _message(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Message", "")
