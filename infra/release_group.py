"""One live release: a launch template for its AMI and an Auto Scaling Group pinned to it.

A new release is a new ReleaseGroup (its logical name carries the release id), and the old one
leaves the program: Pulumi creates the new group, waits until all its instances are healthy in
the target group, and deletes the old group only at the end of a successful update.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from automation.release_state import ACTIVE, ReleaseGroup as ReleaseGroupState
from infra.settings import Settings


@dataclass(frozen=True)
class ReleaseGroupArgs:
    settings: Settings
    group: ReleaseGroupState
    private_subnet_ids: pulumi.Input[list[str]]
    target_group_arn: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    instance_profile_arn: pulumi.Input[str]


def release_group_name(release: str) -> str:
    """The logical name of a release's component; its children's names derive from it."""
    return f"release-{release}"


class ReleaseGroup(pulumi.ComponentResource):
    asg_name: pulumi.Output[str]
    launch_template_id: pulumi.Output[str]
    launch_template_version: pulumi.Output[int]

    def __init__(self, args: ReleaseGroupArgs, opts: pulumi.ResourceOptions | None = None):
        settings, group = args.settings, args.group
        name = release_group_name(group.release)
        super().__init__("fleet:release:ReleaseGroup", name, None, opts)
        self.release = group.release
        self.ami = group.ami
        self.role = group.role
        self.capacity = settings.desired_capacity if group.capacity is None else group.capacity
        self.instance_type = settings.instance_type
        tags = settings.tags(release=group.release)
        label = f"{settings.app_name}-{settings.stack}-{group.release}"

        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name_prefix=f"{label}-",
            description=f"fleet {settings.stack} release {group.release}",
            image_id=group.ami,
            instance_type=settings.instance_type,
            user_data=_encoded(settings.user_data),
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=args.instance_profile_arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",           # IMDSv2 only
                http_put_response_hop_limit=1,    # credentials stay on the host
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=settings.root_device_name,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=settings.root_volume_size_gib,
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="false",
                    delete_on_termination="true",
                    security_groups=[args.security_group_id],
                )
            ],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={**tags, "Name": label})
                for kind in ("instance", "volume", "network-interface")
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

        active = group.role == ACTIVE
        group_asg = aws.autoscaling.Group(
            f"{name}-asg",
            name_prefix=f"{label}-",
            vpc_zone_identifiers=args.private_subnet_ids,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id,
                # The explicit number of the version this update made, never $Latest/$Default:
                # those let instances drift from what the state says and defeat rollback.
                version=template.latest_version.apply(str),
            ),
            min_size=min(settings.min_size, self.capacity),
            max_size=max(settings.max_size, self.capacity),
            desired_capacity=self.capacity,
            # Inline, so the group drains an instance in the target group before terminating it.
            # A standby group is kept warm but detached: it serves nothing until promoted. Always an
            # explicit list: an omitted one leaves a group attached (terraform-provider-aws #39594).
            target_group_arns=[args.target_group_arn] if active else [],
            health_check_type="ELB" if active else "EC2",
            health_check_grace_period=settings.health_check_grace_period_seconds,
            # The update succeeds only when every instance of an active group is healthy in the
            # target group, never just one of them.
            wait_for_elb_capacity=self.capacity if active else None,
            wait_for_capacity_timeout=f"{settings.capacity_timeout_minutes}m",
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in {**tags, "Name": label}.items()
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                # A new launch template version (instance type, user data) replaces the group
                # create-before-destroy: the autonamed new group is healthy before the old one goes.
                replace_on_changes=["launchTemplate"],
                delete_before_replace=False,
            ),
        )

        self.asg_name = group_asg.name
        self.launch_template_id = template.id
        self.launch_template_version = template.latest_version
        self.register_outputs(self.exported())

    def exported(self) -> dict[str, Any]:
        """This group's entry in the `releaseGroups` stack output."""
        return {
            "asgName": self.asg_name,
            "launchTemplateId": self.launch_template_id,
            "launchTemplateVersion": self.launch_template_version,
            "ami": self.ami,
            "role": self.role,
            "capacity": self.capacity,
            "instanceType": self.instance_type,
        }


def _encoded(user_data: str) -> str | None:
    return base64.b64encode(user_data.encode()).decode() if user_data else None
