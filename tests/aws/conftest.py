"""Fixtures of the aws-layer release tests (test_release_flow, test_release_strategies, …)."""
from __future__ import annotations

import pytest

from automation import services
from automation.aws import client
from tests.aws.release_world import Stacks


@pytest.fixture
def stacks(aws, monkeypatch):
    fake = Stacks()
    monkeypatch.setattr(services, "workspace_factory", fake)
    for name in ("GITHUB_ACTIONS", "CI", "GITHUB_SHA"):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def images(aws):
    """Available images of app `web`, versions 1.0.0, 2.0.0 and 3.0.0, as a bake tags them."""
    ec2 = client("ec2")
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    made = {}
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        image = ec2.create_image(InstanceId=instance, Name=f"web-{version}")["ImageId"]
        ec2.create_tags(Resources=[image], Tags=[{"Key": "fleet:app", "Value": "web"}, {"Key": "fleet:version", "Value": version}])
        made[version] = image
    ec2.terminate_instances(InstanceIds=[instance])
    return made
