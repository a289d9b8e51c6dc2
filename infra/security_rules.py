"""One TCP port opened on a security group, as its own rule resource.

Separate rule resources (not inline rules) let the load balancer's and the instances' groups
refer to each other without a cycle, and change one rule without rewriting the group.
"""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

ANYWHERE_IPV4 = "0.0.0.0/0"


def allow_tcp(
    name: str,
    *,
    direction: str,
    security_group_id: pulumi.Input[str],
    port: int,
    description: str,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
    peer_security_group_id: pulumi.Input[str] | None = None,
) -> pulumi.CustomResource:
    """Allow `port` in ("ingress") or out ("egress"): to/from the peer group, else to/from anywhere."""
    rule = aws.vpc.SecurityGroupIngressRule if direction == "ingress" else aws.vpc.SecurityGroupEgressRule
    return rule(
        name,
        security_group_id=security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=peer_security_group_id,
        cidr_ipv4=None if peer_security_group_id is not None else ANYWHERE_IPV4,
        description=description,
        tags=tags,
        opts=opts,
    )
