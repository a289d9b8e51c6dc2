"""What every release group's instances share: their security group and their IAM role.

Kept out of the release groups so a release never replaces them and both groups of a release in
flight admit the same traffic. No SSH anywhere: operators reach instances through SSM Session
Manager, which the role allows.
"""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.security_rules import allow_tcp
from infra.settings import Settings

MANAGED_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",   # Session Manager, patching, no SSH
    "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",    # ship logs and metrics
)
HTTPS_PORT = 443

ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


class InstanceAccess(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    instance_profile_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: Settings,
        vpc_id: pulumi.Input[str],
        load_balancer_security_group_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("fleet:instances:InstanceAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = settings.tags()

        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="fleet instances: the app port from the load balancer only",
            vpc_id=vpc_id,
            tags=tags,
            opts=child,
        )
        allow_tcp(
            f"{name}-in-app-from-alb",
            direction="ingress",
            security_group_id=security_group.id,
            port=settings.app_port,
            peer_security_group_id=load_balancer_security_group_id,
            description="app port from the load balancer",
            tags=tags,
            opts=child,
        )
        # Outbound HTTPS only (through NAT): SSM, CloudWatch and package mirrors. DNS and time
        # go to the VPC resolver and the Amazon Time Sync address, which security groups do not filter.
        allow_tcp(
            f"{name}-out-https",
            direction="egress",
            security_group_id=security_group.id,
            port=HTTPS_PORT,
            description="HTTPS to AWS APIs",
            tags=tags,
            opts=child,
        )
        # The load balancer may talk only to the instances, on the app port (health checks included).
        allow_tcp(
            f"{name}-alb-out-app",
            direction="egress",
            security_group_id=load_balancer_security_group_id,
            port=settings.app_port,
            peer_security_group_id=security_group.id,
            description="app port to the instances",
            tags=tags,
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-role",
            description=f"fleet {settings.stack} instances",
            assume_role_policy=ASSUME_ROLE_POLICY,
            tags=tags,
            opts=child,
        )
        for policy_arn in MANAGED_POLICY_ARNS:
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy_arn.rsplit('/', 1)[1]}",
                role=role.name,
                policy_arn=policy_arn,
                opts=child,
            )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=tags, opts=child)

        self.security_group_id = security_group.id
        self.instance_profile_arn = profile.arn
        self.role_name = role.name
        self.register_outputs({"securityGroupId": self.security_group_id, "instanceProfileArn": profile.arn})
