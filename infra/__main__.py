"""fleet's Pulumi program: wires the components for the stack's settings and release state."""
import sys
from pathlib import Path

# Pulumi runs this file by path (main: infra/); put the project root first so `infra` and
# `automation.release_state` import as packages even without an installed copy.
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

import pulumi  # noqa: E402

from infra.instance_access import InstanceAccess  # noqa: E402
from infra.load_balancer import LoadBalancer  # noqa: E402
from infra.monitoring import Monitoring  # noqa: E402
from infra.network import Network  # noqa: E402
from infra.release_group import ReleaseGroup, ReleaseGroupArgs  # noqa: E402
from infra.release_state_source import read_release_state  # noqa: E402
from infra.settings import load_settings  # noqa: E402

# Both fail with one line before any resource is declared.
settings = load_settings()
release_state = read_release_state(settings.stack)

network = Network("network", settings)
load_balancer = LoadBalancer("web", settings, network.vpc_id, network.public_subnet_ids)
instances = InstanceAccess("instances", settings, network.vpc_id, load_balancer.security_group_id)
monitoring = Monitoring("ops", settings, load_balancer.arn_suffix, load_balancer.target_group_arn_suffix)
release_groups = [
    ReleaseGroup(
        ReleaseGroupArgs(
            settings=settings,
            group=group,
            private_subnet_ids=network.private_subnet_ids,
            target_group_arn=load_balancer.target_group_arn,
            security_group_id=instances.security_group_id,
            instance_profile_arn=instances.instance_profile_arn,
        )
    )
    for group in release_state.groups
]

outputs = {
    "url": load_balancer.url,
    "vpcId": network.vpc_id,
    "publicSubnetIds": network.public_subnet_ids,
    "privateSubnetIds": network.private_subnet_ids,
    "loadBalancerArn": load_balancer.arn,
    "loadBalancerDnsName": load_balancer.dns_name,
    "targetGroupArn": load_balancer.target_group_arn,
    "albSecurityGroupId": load_balancer.security_group_id,
    "appSecurityGroupId": instances.security_group_id,
    "opsTopicArn": monitoring.topic_arn,
    "logGroupName": monitoring.log_group_name,
    "alarmNames": monitoring.alarm_names,
    "releaseGroups": {group.release: group.exported() for group in release_groups},
    "settings": settings.exported(),
    "releaseState": release_state.to_dict(),
}
for output_name, value in outputs.items():
    pulumi.export(output_name, value)
