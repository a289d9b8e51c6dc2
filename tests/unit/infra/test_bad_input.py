"""Every bad setting or release state stops the program with one line, before any resource is declared."""
from __future__ import annotations

import pulumi
import pytest

from automation.release_state import PROPOSED_STATE_ENV, parameter_name
from infra.settings import SettingsError
from tests.unit.infra.program_harness import ProgramRun, run_program, stack_config

BAD_SETTINGS = [
    # (case, overrides, text the message must contain: the key and the bad value)
    ("malformed CIDR", {"fleet:vpcCidr": "10.1.0.0/33"}, ["fleet:vpcCidr", "10.1.0.0/33", "expected"]),
    ("CIDR with host bits", {"fleet:vpcCidr": "10.1.0.1/16"}, ["fleet:vpcCidr", "10.1.0.1/16"]),
    ("subnet outside the VPC", {"fleet:publicSubnetCidrs": ["10.1.1.0/24", "10.9.2.0/24"]},
     ["fleet:publicSubnetCidrs", "10.9.2.0/24", "inside vpcCidr 10.1.0.0/16"]),
    ("overlapping subnets", {"fleet:privateSubnetCidrs": ["10.1.11.0/24", "10.1.1.0/25"]},
     ["fleet:privateSubnetCidrs", "10.1.1.0/25", "not overlapping"]),
    ("one CIDR for two zones", {"fleet:privateSubnetCidrs": ["10.1.11.0/24"]},
     ["fleet:privateSubnetCidrs", "10.1.11.0/24", "one CIDR per availability zone"]),
    ("fewer than two zones", {"fleet:availabilityZones": ["us-east-1a"]},
     ["fleet:availabilityZones", "us-east-1a", "at least two"]),
    ("zone of another region", {"fleet:availabilityZones": ["us-east-1a", "eu-west-1b"]},
     ["fleet:availabilityZones", "eu-west-1b", "us-east-1"]),
    ("min greater than max", {"fleet:minSize": 3, "fleet:maxSize": 2}, ["fleet:minSize", "3", "fleet:maxSize"]),
    ("desired outside min..max", {"fleet:desiredCapacity": 9}, ["fleet:desiredCapacity", "9", "maxSize"]),
    ("unknown NAT strategy", {"fleet:natStrategy": "Double"}, ["fleet:natStrategy", "Double", "Single or OnePerAz"]),
    ("NAT strategy None", {"fleet:natStrategy": "None"}, ["fleet:natStrategy", "None"]),
    ("instance type without size", {"fleet:instanceType": "t3micro"}, ["fleet:instanceType", "t3micro"]),
    ("instance type without family", {"fleet:instanceType": "large"}, ["fleet:instanceType", "large"]),
    ("not a number", {"fleet:appPort": "http"}, ["fleet:appPort", "http", "whole number"]),
    ("retention CloudWatch refuses", {"fleet:logRetentionDays": 10}, ["fleet:logRetentionDays", "10", "365"]),
    ("health check path", {"fleet:healthCheckPath": "health"}, ["fleet:healthCheckPath", "health", "/"]),
    ("timeout not below interval", {"fleet:healthCheckTimeoutSeconds": 5},
     ["fleet:healthCheckTimeoutSeconds", "5", "less than"]),
    ("certificate ARN", {"fleet:certificateArn": "my-cert"}, ["fleet:certificateArn", "my-cert", "ACM"]),
    ("boolean", {"fleet:protectFoundation": "yes"}, ["fleet:protectFoundation", "yes", "true or false"]),
    ("list", {"fleet:availabilityZones": "us-east-1a,us-east-1b"}, ["fleet:availabilityZones", "a list"]),
    ("region", {"aws:region": "virginia"}, ["aws:region", "virginia"]),
]


def assert_one_line_and_nothing_declared(run: ProgramRun, *fragments: str) -> str:
    assert isinstance(run.error, SettingsError), repr(run.error)
    assert isinstance(run.error, pulumi.RunError), "Pulumi prints a RunError without a traceback"
    message = str(run.error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert run.resources == [], "nothing may be declared before the settings are valid"
    return message


@pytest.mark.parametrize("case, overrides, fragments", BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_bad_setting_fails_with_one_line(case, overrides, fragments):
    """A bad stack setting names the key, the value and what is expected, and declares nothing."""
    run = run_program("integration", overrides=overrides, expect_failure=True)
    assert_one_line_and_nothing_declared(run, *fragments)


def test_missing_setting_names_the_key():
    """A key absent from config (no Pulumi.yaml default reached the program) is named, not guessed."""
    config = stack_config("integration")
    del config["fleet:instanceType"]
    run = run_program("integration", config=config, expect_failure=True)
    assert_one_line_and_nothing_declared(run, "fleet:instanceType", "not set")


BAD_STATES = [
    ("not JSON", "{groups: [", "not valid JSON"),
    ("unsupported schema", '{"schema": 2, "groups": []}', "schema 2"),
    ("bad AMI", '{"schema": 1, "groups": [{"release": "1.0.0", "ami": "ami-nope"}]}', "ami-nope"),
    ("bad release id", '{"schema": 1, "groups": [{"release": "1 0", "ami": "ami-0123456789abcdef0"}]}', "'1 0'"),
    ("three groups", '{"schema": 1, "groups": ['
     + ",".join(f'{{"release": "1.0.{n}", "ami": "ami-0123456789abcdef0"}}' for n in range(3)) + "]}",
     "at most 2"),
]


@pytest.mark.parametrize("case, text, fragment", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_malformed_stored_state_fails_with_one_line(case, text, fragment):
    """A malformed state in SSM names the parameter and the fault, and declares nothing."""
    run = run_program("staging", stored_state=text, expect_failure=True)
    assert_one_line_and_nothing_declared(run, parameter_name("staging"), fragment)


@pytest.mark.parametrize("case, text, fragment", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_malformed_proposed_state_fails_with_one_line(case, text, fragment):
    """A malformed proposed state names the environment variable and the fault, and declares nothing."""
    run = run_program("staging", proposed_state=text, expect_failure=True)
    assert_one_line_and_nothing_declared(run, PROPOSED_STATE_ENV, fragment)
