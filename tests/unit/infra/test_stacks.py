"""The program for each of the three stacks, evaluated with the real Pulumi.<stack>.yaml files."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.unit.infra.program_harness import STACKS, ProgramRun, run_program
from tests.unit.infra.states import AMI_OLD, one_group

ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ALB = "aws:lb/loadBalancer:LoadBalancer"
VPC = "awsx:ec2:Vpc"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"

# The environment table: what each stack file must produce.
EXPECTED = {
    "integration": dict(octet=1, nat="Single", sizes=(1, 1, 2), retention=7, protected=False),
    "staging": dict(octet=2, nat="Single", sizes=(2, 2, 4), retention=30, protected=False),
    "production": dict(octet=3, nat="OnePerAz", sizes=(2, 3, 6), retention=365, protected=True),
}

RESOURCE_GRAPH = Counter(
    {
        "fleet:network:Network": 1,
        VPC: 1,
        "fleet:loadBalancer:LoadBalancer": 1,
        "aws:ec2/securityGroup:SecurityGroup": 2,
        INGRESS: 2,
        EGRESS: 2,
        ALB: 1,
        TARGET_GROUP: 1,
        "aws:lb/listener:Listener": 1,
        "fleet:instances:InstanceAccess": 1,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 2,
        "aws:iam/instanceProfile:InstanceProfile": 1,
        "fleet:monitoring:Monitoring": 1,
        "aws:cloudwatch/logGroup:LogGroup": 1,
        "aws:sns/topic:Topic": 1,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 2,
        "fleet:release:ReleaseGroup": 1,
        LAUNCH_TEMPLATE: 1,
        ASG: 1,
    }
)


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def run(stack: str) -> ProgramRun:
    """The stack with one live release stored in SSM."""
    return run_program(stack, stored_state=one_group("1.0.0", AMI_OLD))


def test_resource_graph(run: ProgramRun):
    """Exactly the resources of the design, every cloud resource inside one of fleet's components."""
    assert Counter(r.type for r in run.resources) == RESOURCE_GRAPH
    components = {r.urn for r in run.resources if r.type.startswith("fleet:")}
    for resource in run.resources:
        if not resource.type.startswith("fleet:"):
            assert resource.parent in components, resource.name


def test_network_layout_and_nat_strategy(run: ProgramRun, stack: str):
    """The VPC gets the stack's /16, two public and two private /24s per the table, explicit allocation, the NAT strategy."""
    octet = EXPECTED[stack]["octet"]
    vpc = run.one(VPC).inputs
    assert vpc["cidrBlock"] == f"10.{octet}.0.0/16"
    assert vpc["subnetStrategy"] == "Auto"
    assert len(vpc["availabilityZoneNames"]) >= 2
    specs = {spec["type"]: spec["cidrBlocks"] for spec in vpc["subnetSpecs"]}
    assert specs == {
        "Public": [f"10.{octet}.1.0/24", f"10.{octet}.2.0/24"],
        "Private": [f"10.{octet}.11.0/24", f"10.{octet}.12.0/24"],
    }
    assert vpc["natGateways"]["strategy"] == EXPECTED[stack]["nat"]


def test_instances_only_in_private_subnets(run: ProgramRun):
    """The fleet runs in the private subnets without public addresses; only the load balancer faces the internet."""
    asg = run.one(ASG).inputs
    assert asg["vpcZoneIdentifiers"] == run.outputs["privateSubnetIds"]
    assert not set(asg["vpcZoneIdentifiers"]) & set(run.outputs["publicSubnetIds"])
    interfaces = run.one(LAUNCH_TEMPLATE).inputs["networkInterfaces"]
    assert [i["associatePublicIpAddress"] for i in interfaces] == ["false"]
    assert run.one(ALB).inputs["subnets"] == run.outputs["publicSubnetIds"]


def test_security_group_rules(run: ProgramRun):
    """Internet reaches the ALB on 80 only; instances admit only the app port from the ALB; no SSH anywhere."""
    alb_sg, app_sg = run.outputs["albSecurityGroupId"], run.outputs["appSecurityGroupId"]
    app_port = run.outputs["settings"]["appPort"]
    ingress = {(r.inputs["securityGroupId"], r.inputs["fromPort"], r.inputs["toPort"],
                r.inputs.get("cidrIpv4"), r.inputs.get("referencedSecurityGroupId")) for r in run.of_type(INGRESS)}
    assert ingress == {
        (alb_sg, 80, 80, "0.0.0.0/0", None),
        (app_sg, app_port, app_port, None, alb_sg),
    }
    egress = {(r.inputs["securityGroupId"], r.inputs["fromPort"], r.inputs.get("cidrIpv4"),
               r.inputs.get("referencedSecurityGroupId")) for r in run.of_type(EGRESS)}
    assert egress == {(alb_sg, app_port, None, app_sg), (app_sg, 443, "0.0.0.0/0", None)}
    for group in run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert not group.inputs.get("ingress") and not group.inputs.get("egress"), "no inline rules"
    assert all(r.inputs["fromPort"] != 22 for r in run.of_type(INGRESS))
    assert "keyName" not in run.one(LAUNCH_TEMPLATE).inputs


def test_imdsv2_and_encrypted_root_volume(run: ProgramRun):
    """Instances require IMDSv2 tokens and boot from an encrypted gp3 root volume."""
    template = run.one(LAUNCH_TEMPLATE).inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    [root] = template["blockDeviceMappings"]
    assert root["ebs"]["encrypted"] == "true"
    assert root["ebs"]["volumeType"] == "gp3"


def test_instance_role_has_only_ssm_and_cloudwatch_agent(run: ProgramRun):
    """Least privilege: the instance role carries exactly the SSM core and CloudWatch agent policies."""
    attached = {r.inputs["policyArn"] for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == {
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",
    }
    assert run.one(LAUNCH_TEMPLATE).inputs["iamInstanceProfile"]["arn"].endswith("instances-profile")


def test_launch_template_version_is_an_explicit_number(run: ProgramRun):
    """The ASG pins the launch template's own latest version number, never $Latest or $Default."""
    version = run.one(ASG).inputs["launchTemplate"]["version"]
    assert version not in ("$Latest", "$Default")
    assert version == "1"  # FakeAws answers latestVersion=1 for a new template
    assert run.outputs["releaseGroups"]["1.0.0"]["launchTemplateVersion"] == 1


def test_no_fixed_names_where_replacement_needs_new_ones(run: ProgramRun):
    """ASG, launch template, target group and ALB are autonamed or prefixed, so a replacement never collides."""
    for type_ in (ASG, LAUNCH_TEMPLATE):
        inputs = run.one(type_).inputs
        assert "name" not in inputs and inputs["namePrefix"].endswith("-")
    for type_ in (TARGET_GROUP, ALB):
        assert "name" not in run.one(type_).inputs


def test_target_group_attached_inline(run: ProgramRun):
    """The ASG lists the target group itself; no separate attachment resource exists to race it."""
    assert run.one(ASG).inputs["targetGroupArns"] == [run.outputs["targetGroupArn"]]
    types = {r.type for r in run.resources}
    assert "aws:autoscaling/attachment:Attachment" not in types
    assert "aws:lb/targetGroupAttachment:TargetGroupAttachment" not in types


def test_waits_for_every_desired_instance(run: ProgramRun, stack: str):
    """The update waits for all desired instances healthy in the target group, sized from the stack file."""
    low, desired, high = EXPECTED[stack]["sizes"]
    asg = run.one(ASG).inputs
    assert (asg["minSize"], asg["desiredCapacity"], asg["maxSize"]) == (low, desired, high)
    assert asg["waitForElbCapacity"] == desired
    assert asg["healthCheckType"] == "ELB"
    assert asg["healthCheckGracePeriod"] == run.outputs["settings"]["healthCheckGracePeriodSeconds"]


def test_launch_template_change_replaces_asg_create_before_destroy(run: ProgramRun):
    """replaceOnChanges on the launch template reaches the engine, without delete-before-replace."""
    asg = run.one(ASG)
    assert asg.replace_on_changes == ["launchTemplate"]
    assert asg.delete_before_replace is False


def test_foundation_protected_only_in_production(run: ProgramRun, stack: str):
    """Production protects the VPC and the load balancer (Pulumi protect and ALB deletion protection)."""
    protected = EXPECTED[stack]["protected"]
    assert bool(run.one(VPC).protect) is protected
    assert bool(run.one(ALB).protect) is protected
    assert run.one(ALB).inputs["enableDeletionProtection"] is protected
    assert not run.one(ASG).protect, "release groups must stay replaceable"


def test_log_retention_and_alarms(run: ProgramRun, stack: str):
    """Retention comes from the stack (longest in production); both alarms notify the operations topic."""
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == EXPECTED[stack]["retention"]
    topic = run.outputs["opsTopicArn"]
    alarms = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert {a.inputs["alarmActions"][0] for a in alarms} == {topic}
    assert sorted(run.outputs["alarmNames"].values()) == sorted(f"{a.name}-mock" for a in alarms)
    unhealthy = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "unhealthy").inputs
    assert unhealthy["metricName"] == "UnHealthyHostCount"
    http5xx = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "5xx").inputs
    assert {q["metric"]["metricName"] for q in http5xx["metricQueries"] if "metric" in q} == {
        "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count",
    }


def test_every_resource_tagged_for_its_stack(run: ProgramRun, stack: str):
    """Stack and manager tags on every taggable resource; release-group resources also carry their release."""
    for resource in run.resources:
        tags = resource.inputs.get("tags")
        if tags is None:
            continue
        if isinstance(tags, list):  # the ASG's tag blocks
            assert all(t["propagateAtLaunch"] for t in tags)
            tags = {t["key"]: t["value"] for t in tags}
        assert tags["fleet:stack"] == stack and tags["fleet:managed-by"] == "fleet", resource.name
        if resource.type in (ASG, LAUNCH_TEMPLATE):
            assert tags["fleet:release"] == "1.0.0"
    untagged = {r.type for r in run.resources if r.custom and "tags" not in r.inputs}
    assert untagged == {"aws:iam/rolePolicyAttachment:RolePolicyAttachment"}  # AWS cannot tag these


def test_outputs(run: ProgramRun, stack: str):
    """Every agreed stack output exists with the stack's values."""
    low, desired, high = EXPECTED[stack]["sizes"]
    outputs = run.outputs
    assert set(outputs) == {
        "url", "vpcId", "publicSubnetIds", "privateSubnetIds", "loadBalancerArn", "loadBalancerDnsName",
        "targetGroupArn", "albSecurityGroupId", "appSecurityGroupId", "opsTopicArn", "logGroupName",
        "alarmNames", "releaseGroups", "settings", "releaseState",
    }
    assert outputs["url"] == f"http://{outputs['loadBalancerDnsName']}"
    assert outputs["logGroupName"] == f"/fleet/{stack}/web"
    assert set(outputs["alarmNames"]) == {"unhealthyHosts", "http5xx"}
    assert outputs["releaseGroups"] == {
        "1.0.0": {
            "asgName": "web-" + stack + "-1.0.0-mock",
            "launchTemplateId": "lt-release-1.0.0-lt",
            "launchTemplateVersion": 1,
            "ami": AMI_OLD,
            "role": "active",
            "capacity": desired,
            "instanceType": "t3.micro",
        }
    }
    settings = outputs["settings"]
    assert (settings["minSize"], settings["desiredCapacity"], settings["maxSize"]) == (low, desired, high)
    assert settings["region"] == "us-east-1"
    assert settings["requireApprovedPlan"] is (stack == "production")
    assert set(settings) == {
        "region", "appName", "instanceType", "minSize", "desiredCapacity", "maxSize", "appPort",
        "healthCheckPath", "healthCheckIntervalSeconds", "healthyThreshold", "unhealthyThreshold",
        "deregistrationDelaySeconds", "healthCheckGracePeriodSeconds", "capacityTimeoutMinutes",
        "requireApprovedPlan",
    }
    assert outputs["releaseState"] == one_group("1.0.0", AMI_OLD).to_dict()
