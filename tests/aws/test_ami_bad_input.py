"""Every bad input to `fleet ami bake`: one line naming the value, exit 2, nothing launched."""
from __future__ import annotations

import pytest

from automation.aws import client
from automation.cli import main
from tests.aws.ami_world import STACK, all_instances, builder_security_groups, make_world

pytestmark = pytest.mark.aws


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "install.sh"
    path.write_text("echo install\n")
    return str(path)


CASES = {
    "malformed version": (["1.4 beta", "--script", "{script}", "--stack", STACK], "release version '1.4 beta' is malformed"),
    "unknown base image": (["1.4.2", "--script", "{script}", "--stack", STACK, "--base-ami", "ami-0123456789abcdef0"],
                           "base AMI ami-0123456789abcdef0 does not exist in region us-east-1"),
    "malformed base image": (["1.4.2", "--script", "{script}", "--stack", STACK, "--base-ami", "ubuntu"], "base AMI: AMI id 'ubuntu' is malformed"),
    "missing subnet": (["1.4.2", "--script", "{script}", "--subnet", "subnet-0123456789abcdef0"],
                       "subnet subnet-0123456789abcdef0 does not exist in region us-east-1"),
    "stack without private subnet": (["1.4.2", "--script", "{script}", "--stack", "staging"], "stack staging has no private subnet"),
    "no subnet at all": (["1.4.2", "--script", "{script}"], "expected exactly one of --subnet SUBNET_ID or --stack STACK"),
    "rpm url not http or s3": (["1.4.2", "--rpm-url", "ftp://repo.example.com/web-1.4.2.rpm", "--stack", STACK],
                               "RPM URL 'ftp://repo.example.com/web-1.4.2.rpm' is not a URL"),
    "yum repo url is a file": (["1.4.2", "--yum-repo", "file:///srv/repo", "--package", "web-1.4.2", "--stack", STACK],
                               "yum repository URL 'file:///srv/repo' is not a URL"),
    "yum repo without package": (["1.4.2", "--yum-repo", "https://nexus.example.com/repo", "--stack", STACK], "package None is malformed or missing"),
    "script file missing": (["1.4.2", "--script", "/nonexistent/install.sh", "--stack", STACK], "script file '/nonexistent/install.sh' does not exist"),
    "two install sources": (["1.4.2", "--script", "{script}", "--rpm-url", "https://x.example.com/a.rpm", "--stack", STACK],
                            "install source --rpm-url/--script: expected exactly one of"),
    "no install source": (["1.4.2", "--stack", STACK], "install source missing"),
    "region mismatch": (["1.4.2", "--script", "{script}", "--subnet", "{subnet}", "--region", "eu-west-1"], "does not exist in region eu-west-1"),
    "unknown region": (["1.4.2", "--script", "{script}", "--stack", STACK, "--region", "mars-north-1"], "region 'mars-north-1' is unknown"),
    "unknown instance type": (["1.4.2", "--script", "{script}", "--stack", STACK, "--instance-type", "t9.huge"], "instance type 't9.huge' does not exist"),
    "base image of the wrong architecture": (["1.4.2", "--script", "{script}", "--stack", STACK, "--instance-type", "t4g.micro", "--base-ami", "{x86_base}"],
                                             "is x86_64 but instance type t4g.micro runs arm64"),
    "missing instance profile": (["1.4.2", "--script", "{script}", "--stack", STACK, "--instance-profile", "nope"], "instance profile nope does not exist"),
    "malformed app": (["1.4.2", "--script", "{script}", "--stack", STACK, "--app", "Web App"], "app name 'Web App' is malformed"),
    "timeout out of range": (["1.4.2", "--script", "{script}", "--stack", STACK, "--timeout", "0"], "timeout 0.0 minutes is out of range"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_bake_input_is_one_line_exit_2_and_launches_nothing(aws, script, capsys, case):
    """Bad input is refused before anything is created, in every region touched."""
    world = make_world()
    x86_base = world.clients.ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]
    argv, expected = CASES[case]
    argv = [a.format(script=script, subnet=world.subnet, x86_base=x86_base) for a in argv]
    assert main(["ami", "bake", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fleet: ")
    assert expected in err
    assert all_instances(world.clients.ec2) == []
    if "eu-west-1" in argv:
        assert all_instances(client("ec2", "eu-west-1")) == []
    assert builder_security_groups(world.clients.ec2) == []
