"""docs/settings.md, rendered from Pulumi.yaml's config schema and the stack files, so it cannot drift.

The settings table (key, type, default, each stack's value, description) and the network layout
come from Pulumi.yaml and Pulumi.<stack>.yaml; the prose around them (how settings are changed and
checked, the choices behind the defaults, release groups, outputs, tags) is fixed here.

    python -m automation.settings_reference --write   # regenerate docs/settings.md
    python -m automation.settings_reference           # print it
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from automation.program_model import PROJECT_ROOT
from automation.workspace import known_stacks

DOC = Path("docs") / "settings.md"
WRITE_COMMAND = "python -m automation.settings_reference --write"
# Stacks in promotion order; any other stack follows alphabetically.
PROMOTION_ORDER = ("integration", "staging", "production")
# Settings of other packages that stack files set: not in fleet's schema, described here.
PROVIDER_SETTINGS = {
    "aws:region": "AWS region of the stack (the AWS provider's setting; availability zones must belong to it).",
}
NAT_GATEWAYS = {"Single": "one", "OnePerAz": "one per zone"}

HEADER = (
    f"<!-- Rendered from Pulumi.yaml and Pulumi.<stack>.yaml by `{WRITE_COMMAND}`: "
    "change those files (or automation/settings_reference.py), then run it. -->\n\n"
)

INTRO = """\
# Stack settings and outputs

The Pulumi program (`infra/`) reads its settings from Pulumi config. **Pulumi.yaml** declares every
setting with its type, description and default (its `config:` schema is the one source of defaults);
each **Pulumi.&lt;stack&gt;.yaml** sets only what differs for that environment. Change a setting with
`pulumi config set fleet:<key> <value> -s <stack>` (arrays: `pulumi config set --path 'fleet:availabilityZones[0]' us-east-1a`),
or by editing the stack file, then run `pulumi up -s <stack>`.

Every value is checked before anything is declared. A bad one stops the program with one line that
names the key, the value and what is expected, for example:

```
setting fleet:minSize = 3 is invalid: expected at most fleet:maxSize (2)
setting fleet:natStrategy = 'Double' is invalid: expected Single or OnePerAz
```

"""

AFTER_NETWORK = """\
The subnets are given explicitly, one per zone in zone order, and allocated with awsx's `Auto`
strategy, so the VPC is exactly this table. The program checks that each subnet lies in the VPC and
overlaps no other.

### Choices behind the defaults

- **Health checks** every 5 s, healthy after 2 passes, with a 3 s timeout: a new instance is in
  service about 10–15 s after its application answers on `healthCheckPath`. AWS's defaults
  (30 s × 5) would add two and a half minutes to every release.
- **Deregistration delay** 30 s instead of AWS's 300 s: long enough for ordinary requests to
  finish on a leaving instance.
- **Capacity timeout** 10 min: an update waits this long for all of a new group's instances to be
  healthy in the target group, then fails with nothing old deleted.
- **HTTPS** turns on when `certificateArn` is set: a TLS 1.3 policy
  (`ELBSecurityPolicy-TLS13-1-2-2021-06`) on 443 and a permanent redirect from 80.
- **protectFoundation** (production) sets Pulumi's `protect` on the VPC and the load balancer and
  the load balancer's own deletion protection. Destroying production then needs both lifted first.
- **requireApprovedPlan** (production) is not used by the program; it tells the release CLI to
  apply only a change that was previewed and approved.

## Release groups come from the release state, not from settings

Which releases run (AMI, role, capacity) is not a setting. The program reads the stack's release
state from the SSM parameter `/fleet/<stack>/release-state`, which only the release CLI writes,
or, for a preview of a proposed release, from the environment variable
`FLEET_PROPOSED_RELEASE_STATE` (never persisted). With no state yet, the program declares the
network, load balancer and monitoring without instances, and logs:

```
no release state at SSM parameter /fleet/<stack>/release-state yet: declaring the foundation (network, load balancer) without instances
```

Each group in the state becomes a component `release-<version>` with a launch template and an Auto
Scaling Group. An `active` group is in the target group and the update waits until all of its
instances are healthy there. A `standby` group runs outside the target group. A group's own
`capacity` overrides `desiredCapacity`, and `minSize`/`maxSize` widen to admit it.

## Stack outputs

Read them with `pulumi stack output -s <stack> --json`. The release CLI reads them through its workspace.

| output | type | what it is |
| --- | --- | --- |
| `url` | string | `http://` or `https://` plus the load balancer's DNS name |
| `vpcId` | string | the VPC |
| `publicSubnetIds` | list of strings | public subnets, in zone order |
| `privateSubnetIds` | list of strings | private subnets, in zone order (where instances run) |
| `loadBalancerArn` | string | the Application Load Balancer |
| `loadBalancerDnsName` | string | its DNS name |
| `targetGroupArn` | string | the target group active release groups register in |
| `albSecurityGroupId` | string | the load balancer's security group (80/443 in, app port out to instances) |
| `appSecurityGroupId` | string | the instances' security group (app port from the load balancer only, HTTPS out) |
| `opsTopicArn` | string | SNS topic the alarms notify (`opsEmail` subscribes to it) |
| `logGroupName` | string | `/fleet/<stack>/<appName>`, kept `logRetentionDays` |
| `alarmNames` | object | `{"unhealthyHosts": name, "http5xx": name}` |
| `releaseGroups` | object | per release: `asgName`, `launchTemplateId`, `launchTemplateVersion` (int), `ami`, `role`, `capacity` (int), `instanceType` |
| `settings` | object | the effective settings the CLI needs, camelCase: `region`, `appName`, `instanceType`, `minSize`, `desiredCapacity`, `maxSize`, `appPort`, `healthCheckPath`, `healthCheckIntervalSeconds`, `healthyThreshold`, `unhealthyThreshold`, `deregistrationDelaySeconds`, `healthCheckGracePeriodSeconds`, `capacityTimeoutMinutes`, `requireApprovedPlan` |
| `releaseState` | object | the release state the program declared (schema, groups, record) |

## Tags

Every resource that takes tags carries `fleet:stack=<stack>` and `fleet:managed-by=fleet`. A release
group's launch template and Auto Scaling Group, and the instances, volumes and network interfaces
they launch, also carry `fleet:release=<version>` and a `Name` of `<appName>-<stack>-<version>`.
"""


def render(project_dir: Path = PROJECT_ROOT) -> str:
    """The whole of docs/settings.md for the project in project_dir."""
    project = _yaml(project_dir / "Pulumi.yaml")
    namespace = project["name"]
    schema: dict[str, dict[str, Any]] = project.get("config") or {}
    stacks = _ordered(known_stacks(project_dir))
    values = {stack: _yaml(project_dir / f"Pulumi.{stack}.yaml").get("config") or {} for stack in stacks}
    return HEADER + INTRO + _settings_table(namespace, schema, stacks, values) + _network_table(
        namespace, schema, stacks, values
    ) + AFTER_NETWORK


def _settings_table(namespace: str, schema: dict, stacks: list[str], values: dict[str, dict]) -> str:
    lines = [
        "## Settings",
        "",
        '"default" in a stack column means the stack file does not set the key.',
        "",
        "| key | type | default | " + " | ".join(stacks) + " | what it does |",
        "| --- | --- | --- | " + " | ".join("---" for _ in stacks) + " | --- |",
    ]
    stack_keys = {key for config in values.values() for key in config}
    foreign = sorted(key for key in stack_keys if not key.startswith(f"{namespace}:"))
    unknown = [key for key in foreign if key not in PROVIDER_SETTINGS]
    if unknown:
        raise ValueError(
            f"stack files set {', '.join(unknown)}, which neither Pulumi.yaml's schema nor PROVIDER_SETTINGS describes"
        )
    for key in foreign:
        cells = [_value(values[stack][key]) if key in values[stack] else "default" for stack in stacks]
        lines.append(_row(f"`{key}`", "string", "—", cells, PROVIDER_SETTINGS[key]))
    for key, spec in schema.items():
        full_key = f"{namespace}:{key}"
        cells = [_value(values[stack][full_key]) if full_key in values[stack] else "default" for stack in stacks]
        lines.append(_row(f"`{full_key}`", _type(spec), _value(spec.get("default")), cells, spec["description"]))
    return "\n".join(lines) + "\n\n"


def _network_table(namespace: str, schema: dict, stacks: list[str], values: dict[str, dict]) -> str:
    def setting(stack: str, key: str) -> Any:
        return values[stack].get(f"{namespace}:{key}", schema[key].get("default"))

    lines = [
        "### Network layout",
        "",
        "| stack | VPC | public subnets (ALB, NAT) | private subnets (instances) | NAT gateways |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stack in stacks:
        nat = setting(stack, "natStrategy")
        lines.append(
            f"| {stack} | {setting(stack, 'vpcCidr')} | {', '.join(setting(stack, 'publicSubnetCidrs'))} | "
            f"{', '.join(setting(stack, 'privateSubnetCidrs'))} | {NAT_GATEWAYS.get(nat, nat)} |"
        )
    return "\n".join(lines) + "\n\n"


def _row(key: str, type_: str, default: str, cells: list[str], description: str) -> str:
    return f"| {key} | {type_} | {default} | " + " | ".join(cells) + f" | {_cell(description)} |"


def _type(spec: dict) -> str:
    if spec["type"] == "array":
        return f"array of {(spec.get('items') or {}).get('type', 'value')}s"
    return spec["type"]


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "<br>".join(_value(item) for item in value)
    return f"`{_cell(str(value))}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ordered(stacks: list[str]) -> list[str]:
    return [s for s in PROMOTION_ORDER if s in stacks] + sorted(s for s in stacks if s not in PROMOTION_ORDER)


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render docs/settings.md from Pulumi.yaml and the stack files.")
    parser.add_argument("--write", action="store_true", help="write docs/settings.md instead of printing it")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        (PROJECT_ROOT / DOC).write_text(text, encoding="utf-8")
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
