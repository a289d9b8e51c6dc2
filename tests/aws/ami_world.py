"""What the AMI tests need in the moto server: a stack's private subnet, a builder
instance profile, and a few ways to look at what a bake left behind."""
from __future__ import annotations

import json
from dataclasses import dataclass

from automation import ami, ami_bake
from automation.aws import client

STACK = "integration"
PROFILE = ami_bake.DEFAULT_INSTANCE_PROFILE


@dataclass
class World:
    clients: ami_bake.BakeClients
    vpc: str
    subnet: str


def make_world(region: str | None = None) -> World:
    """A VPC with one public and one private subnet tagged the way the program tags them,
    and the builder instance profile."""
    clients = ami_bake.BakeClients(ec2=client("ec2", region), ssm=client("ssm", region), iam=client("iam", region))
    ec2 = clients.ec2
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    stack_tags = [{"Key": "fleet:stack", "Value": STACK}, {"Key": "fleet:managed-by", "Value": "fleet"}]
    ec2.create_subnet(
        VpcId=vpc,
        CidrBlock="10.0.0.0/24",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": stack_tags + [{"Key": "SubnetType", "Value": "Public"}]}],
    )
    subnet = ec2.create_subnet(
        VpcId=vpc,
        CidrBlock="10.0.1.0/24",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": stack_tags + [{"Key": "SubnetType", "Value": "Private"}]}],
    )["Subnet"]["SubnetId"]
    iam = clients.iam
    iam.create_role(
        RoleName="fleet-ami-builder",
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName="fleet-ami-builder")
    return World(clients, vpc, subnet)


def script_request(tmp_path, version: str = "1.4.2", **overrides) -> ami_bake.BakeRequest:
    script = tmp_path / "install.sh"
    script.write_text("#!/bin/bash\necho installing\n")
    fields = dict(version=version, source=ami_bake.InstallSource(script=str(script)), stack=STACK, commit="a1b2c3d", baked_by="tester")
    fields.update(overrides)
    return ami_bake.BakeRequest(**fields)


def live_instances(ec2) -> list[dict]:
    """Instances that are not terminated (a builder left behind would be one)."""
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def all_instances(ec2) -> list[dict]:
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def own_images(ec2) -> list[dict]:
    return ec2.describe_images(Owners=["self"])["Images"]


def own_snapshots(ec2) -> list[dict]:
    return ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]


def builder_security_groups(ec2) -> list[dict]:
    return ec2.describe_security_groups(Filters=[{"Name": f"tag:{ami.ROLE_TAG}", "Values": [ami.BUILDER_ROLE]}])["SecurityGroups"]


def no_wait(check, *, what, timeout_s, **_):
    """A wait that polls without sleeping: moto answers each state at once, so a check
    that is not yet true is a bug in the test, reported with what was awaited."""
    for _ in range(5):
        result = check()
        if result:
            return result
    raise AssertionError(f"moto never reached: {what}")
