"""The stack's network: a VPC with one public and one private subnet per availability zone."""
from __future__ import annotations

import pulumi
import pulumi_awsx as awsx

from infra.settings import Settings


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("fleet:network:Network", name, None, opts)
        tags = settings.tags()
        vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=settings.vpc_cidr,
            availability_zone_names=list(settings.availability_zones),
            # Explicit CIDRs per zone with the Auto strategy keep the documented layout exactly,
            # instead of the Legacy default that sizes and orders subnets by itself.
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(
                    type=awsx.ec2.SubnetType.PUBLIC,
                    name="public",
                    cidr_blocks=list(settings.public_subnet_cidrs),
                    tags={**tags, "fleet:tier": "public"},
                ),
                awsx.ec2.SubnetSpecArgs(
                    type=awsx.ec2.SubnetType.PRIVATE,
                    name="private",
                    cidr_blocks=list(settings.private_subnet_cidrs),
                    tags={**tags, "fleet:tier": "private"},
                ),
            ],
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                strategy=awsx.ec2.NatGatewayStrategy(settings.nat_strategy),
            ),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect_foundation),
        )
        self.vpc_id = vpc.vpc_id
        self.public_subnet_ids = vpc.public_subnet_ids
        self.private_subnet_ids = vpc.private_subnet_ids
        self.register_outputs(
            {"vpcId": self.vpc_id, "publicSubnetIds": self.public_subnet_ids, "privateSubnetIds": self.private_subnet_ids}
        )
