"""The stack's settings: read from Pulumi config, typed and validated before anything is declared.

Defaults live in one place, the config schema in Pulumi.yaml, which the Pulumi CLI merges into
every stack's config; a key missing here means the program runs without that schema. Every bad
value stops the program with SettingsError: one line naming the key, the value and what is
expected, and no traceback (it is a pulumi.RunError).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import pulumi

NAMESPACE = "fleet"
MANAGED_BY = "fleet"

NAT_STRATEGIES = ("Single", "OnePerAz")

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

APP_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ZONE_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
# family with a generation digit and optional attributes, then a size: t3.micro, m7i-flex.2xlarge, c7g.metal
INSTANCE_TYPE_PATTERN = re.compile(
    r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|[0-9]*x?large|metal(-[0-9]+xl)?)$"
)
CERTIFICATE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USER_DATA_MAX_BYTES = 16 * 1024


class SettingsError(pulumi.RunError):
    """A stack setting (or the release state) is missing or malformed; the message is one line."""


def invalid(key: str, value: Any, expected: str) -> SettingsError:
    return SettingsError(f"setting {key} = {value!r} is invalid: expected {expected}")


@dataclass(frozen=True)
class Settings:
    stack: str
    region: str
    app_name: str
    availability_zones: tuple[str, ...]
    vpc_cidr: str
    public_subnet_cidrs: tuple[str, ...]
    private_subnet_cidrs: tuple[str, ...]
    nat_strategy: str
    instance_type: str
    min_size: int
    desired_capacity: int
    max_size: int
    app_port: int
    health_check_path: str
    health_check_interval_seconds: int
    health_check_timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int
    deregistration_delay_seconds: int
    health_check_grace_period_seconds: int
    capacity_timeout_minutes: int
    root_volume_size_gib: int
    root_device_name: str
    user_data: str
    certificate_arn: str
    log_retention_days: int
    http5xx_alarm_threshold: int
    ops_email: str
    protect_foundation: bool
    require_approved_plan: bool

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn)

    def tags(self, release: str | None = None) -> dict[str, str]:
        """The tags every resource of this stack carries; release-group resources add their release."""
        tags = {"fleet:stack": self.stack, "fleet:managed-by": MANAGED_BY}
        if release is not None:
            tags["fleet:release"] = release
        return tags

    def exported(self) -> dict[str, Any]:
        """The effective settings the release CLI reads from the `settings` stack output."""
        return {
            "region": self.region,
            "appName": self.app_name,
            "instanceType": self.instance_type,
            "minSize": self.min_size,
            "desiredCapacity": self.desired_capacity,
            "maxSize": self.max_size,
            "appPort": self.app_port,
            "healthCheckPath": self.health_check_path,
            "healthCheckIntervalSeconds": self.health_check_interval_seconds,
            "healthyThreshold": self.healthy_threshold,
            "unhealthyThreshold": self.unhealthy_threshold,
            "deregistrationDelaySeconds": self.deregistration_delay_seconds,
            "healthCheckGracePeriodSeconds": self.health_check_grace_period_seconds,
            "capacityTimeoutMinutes": self.capacity_timeout_minutes,
            "requireApprovedPlan": self.require_approved_plan,
        }


# -- reading raw config values ---------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads `namespace:key` config values as the CLI passes them (strings; arrays as JSON)."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.config = pulumi.Config(namespace)

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def raw(self, name: str) -> str:
        value = self.config.get(name)
        if value is None:
            raise SettingsError(
                f"setting {self.key(name)} is not set: expected a value (set it in Pulumi.<stack>.yaml; "
                "its default comes from Pulumi.yaml)"
            )
        return value

    def string(self, name: str, pattern: re.Pattern[str] | None = None, expected: str = "") -> str:
        value = self.raw(name)
        if pattern is not None and not pattern.match(value):
            raise invalid(self.key(name), value, expected)
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.raw(name)
        try:
            number = int(value.strip())
        except ValueError:
            raise invalid(self.key(name), value, f"a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise invalid(self.key(name), number, f"a whole number from {low} to {high}")
        return number

    def boolean(self, name: str) -> bool:
        value = self.raw(name).strip().lower()
        if value not in ("true", "false"):
            raise invalid(self.key(name), self.raw(name), "true or false")
        return value == "true"

    def string_list(self, name: str, check: Callable[[str, str], T]) -> tuple[T, ...]:
        value = self.raw(name)
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise invalid(self.key(name), value, "a list of strings")
        return tuple(check(self.key(name), item) for item in items)


def _network(key: str, value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        network = None
    if not isinstance(network, ipaddress.IPv4Network):
        raise invalid(key, value, "an IPv4 CIDR block with no host bits set, such as 10.1.0.0/16")
    return network


def _zone(key: str, value: str) -> str:
    if not ZONE_PATTERN.match(value):
        raise invalid(key, value, "availability zone names such as us-east-1a")
    return value


# -- the settings ----------------------------------------------------------------------------

def load_settings() -> Settings:
    """Read and validate every setting of the current stack; raises SettingsError on the first bad one."""
    fleet = _Reader(NAMESPACE)
    aws = _Reader("aws")

    region = aws.string("region", REGION_PATTERN, "an AWS region such as us-east-1")
    zones = fleet.string_list("availabilityZones", _zone)
    _check_zones(fleet.key("availabilityZones"), zones, region)

    vpc = _network(fleet.key("vpcCidr"), fleet.raw("vpcCidr"))
    if not 16 <= vpc.prefixlen <= 24:
        raise invalid(fleet.key("vpcCidr"), str(vpc), "a /16 to /24 network")
    public = fleet.string_list("publicSubnetCidrs", _network)
    private = fleet.string_list("privateSubnetCidrs", _network)
    _check_subnets(fleet, vpc, zones, public=public, private=private)

    nat = fleet.raw("natStrategy")
    if nat not in NAT_STRATEGIES:
        raise invalid(fleet.key("natStrategy"), nat, " or ".join(NAT_STRATEGIES))

    min_size = fleet.integer("minSize", 0, 100)
    max_size = fleet.integer("maxSize", 1, 100)
    desired = fleet.integer("desiredCapacity", 0, 100)
    if min_size > max_size:
        raise invalid(fleet.key("minSize"), min_size, f"at most {fleet.key('maxSize')} ({max_size})")
    if not min_size <= desired <= max_size:
        raise invalid(
            fleet.key("desiredCapacity"), desired, f"between minSize ({min_size}) and maxSize ({max_size})"
        )

    interval = fleet.integer("healthCheckIntervalSeconds", 5, 300)
    timeout = fleet.integer("healthCheckTimeoutSeconds", 2, 120)
    if timeout >= interval:
        raise invalid(
            fleet.key("healthCheckTimeoutSeconds"), timeout, f"less than healthCheckIntervalSeconds ({interval})"
        )

    path = fleet.raw("healthCheckPath")
    if not re.match(r"^/[A-Za-z0-9/._~%!$&'()*+,;=:@?-]{0,1023}$", path):
        raise invalid(fleet.key("healthCheckPath"), path, "an HTTP path starting with / (up to 1024 characters)")

    retention = fleet.integer("logRetentionDays", 1, 3653)
    if retention not in LOG_RETENTION_DAYS:
        raise invalid(
            fleet.key("logRetentionDays"), retention,
            "a retention CloudWatch accepts: " + ", ".join(map(str, LOG_RETENTION_DAYS)),
        )

    user_data = fleet.raw("userData")
    if len(user_data.encode()) > USER_DATA_MAX_BYTES:
        raise invalid(fleet.key("userData"), f"{user_data[:20]}…", f"at most {USER_DATA_MAX_BYTES} bytes")

    certificate = fleet.raw("certificateArn")
    if certificate and not CERTIFICATE_ARN_PATTERN.match(certificate):
        raise invalid(fleet.key("certificateArn"), certificate, "empty or an ACM certificate ARN")
    email = fleet.raw("opsEmail")
    if email and not EMAIL_PATTERN.match(email):
        raise invalid(fleet.key("opsEmail"), email, "empty or an email address")

    return Settings(
        stack=pulumi.get_stack(),
        region=region,
        app_name=fleet.string(
            "appName", APP_NAME_PATTERN, "up to 20 lower-case letters, digits or '-', starting with a letter"
        ),
        availability_zones=zones,
        vpc_cidr=str(vpc),
        public_subnet_cidrs=tuple(map(str, public)),
        private_subnet_cidrs=tuple(map(str, private)),
        nat_strategy=nat,
        instance_type=fleet.string(
            "instanceType", INSTANCE_TYPE_PATTERN, "an EC2 instance type such as t3.micro or m7i.large"
        ),
        min_size=min_size,
        desired_capacity=desired,
        max_size=max_size,
        app_port=fleet.integer("appPort", 1024, 65535),
        health_check_path=path,
        health_check_interval_seconds=interval,
        health_check_timeout_seconds=timeout,
        healthy_threshold=fleet.integer("healthyThreshold", 2, 10),
        unhealthy_threshold=fleet.integer("unhealthyThreshold", 2, 10),
        deregistration_delay_seconds=fleet.integer("deregistrationDelaySeconds", 0, 3600),
        health_check_grace_period_seconds=fleet.integer("healthCheckGracePeriodSeconds", 0, 7200),
        capacity_timeout_minutes=fleet.integer("capacityTimeoutMinutes", 1, 60),
        root_volume_size_gib=fleet.integer("rootVolumeSizeGib", 8, 1024),
        root_device_name=fleet.string(
            "rootDeviceName", re.compile(r"^/dev/(sd[a-z][0-9]*|xvd[a-z]+|nvme[0-9]+n1)$"),
            "a root device name such as /dev/xvda or /dev/sda1",
        ),
        user_data=user_data,
        certificate_arn=certificate,
        log_retention_days=retention,
        http5xx_alarm_threshold=fleet.integer("http5xxAlarmThreshold", 1, 100000),
        ops_email=email,
        protect_foundation=fleet.boolean("protectFoundation"),
        require_approved_plan=fleet.boolean("requireApprovedPlan"),
    )


def _check_zones(key: str, zones: tuple[str, ...], region: str) -> None:
    if len(zones) < 2:
        raise invalid(key, list(zones), "at least two availability zones, so the load balancer and fleet survive one")
    if len(set(zones)) != len(zones):
        raise invalid(key, list(zones), "each availability zone once")
    for zone in zones:
        if zone[:-1] != region:
            raise invalid(key, zone, f"availability zones of aws:region {region}")


def _check_subnets(
    fleet: _Reader,
    vpc: ipaddress.IPv4Network,
    zones: tuple[str, ...],
    **subnets: tuple[ipaddress.IPv4Network, ...],
) -> None:
    seen: list[ipaddress.IPv4Network] = []
    for kind, networks in subnets.items():
        key = fleet.key(f"{kind}SubnetCidrs")
        if len(networks) != len(zones):
            raise invalid(
                key, [str(n) for n in networks],
                f"one CIDR per availability zone ({len(zones)}: {', '.join(zones)})",
            )
        for network in networks:
            if not network.subnet_of(vpc):
                raise invalid(key, str(network), f"a subnet inside vpcCidr {vpc}")
            if not 16 <= network.prefixlen <= 28:
                raise invalid(key, str(network), "a /16 to /28 subnet")
            clash = next((other for other in seen if other.overlaps(network)), None)
            if clash is not None:
                raise invalid(key, str(network), f"a CIDR not overlapping another subnet ({clash})")
            seen.append(network)
