"""The aws test layer really talks to a separate moto server process."""
import boto3
import pytest

pytestmark = pytest.mark.aws


def test_boto3_reaches_moto_server_and_reset_isolates_tests(aws):
    ec2 = boto3.client("ec2")
    assert ec2.meta.endpoint_url == aws.endpoint
    assert aws.process.poll() is None
    vpcs_before = len(ec2.describe_vpcs()["Vpcs"])
    ec2.create_vpc(CidrBlock="10.9.0.0/16")
    assert len(ec2.describe_vpcs()["Vpcs"]) == vpcs_before + 1
    aws.reset()
    assert len(ec2.describe_vpcs()["Vpcs"]) == vpcs_before
