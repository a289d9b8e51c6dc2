"""What the release-flow tests share: the per-stack program doubles, seeded AMIs, and ways
to drive the CLI and look at the result (fixtures `stacks` and `images` are in conftest.py)."""
from __future__ import annotations

import json

from automation.aws import client
from automation.cli import main
from automation.release_state import ReleaseState
from automation.state_store import StateStore
from tests.support.aws_program_double import AwsProgramDouble

FAST = ["--verify-timeout", "3"]


class Stacks:
    """One AwsProgramDouble per stack for a whole test, as one Pulumi state per stack would be."""

    def __init__(self):
        self.doubles: dict[str, AwsProgramDouble] = {}
        self.knobs: dict[str, dict] = {}
        self.events: list[tuple[str, str, str]] = []

    def __call__(self, stack, *, project_dir, on_change):
        def record(change, phase):
            self.events.append((change.op, change.name, phase))
            on_change(change, phase)

        if stack not in self.doubles:
            self.doubles[stack] = AwsProgramDouble(stack, project_dir=project_dir)
        double = self.doubles[stack]
        double.on_change = record   # progress goes to this command's output
        for name, value in self.knobs.pop(stack, {}).items():
            setattr(double, name, value)
        return double


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    data = json.loads(captured.out) if "--json" in argv and captured.out.strip() else None
    return code, data, captured.err


def stored(stack: str) -> ReleaseState:
    return StateStore(client("ssm")).read(stack)


def stack_asgs(stack: str) -> list[str]:
    groups = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return sorted(
        g["AutoScalingGroupName"] for g in groups
        if {"Key": "fleet:stack", "Value": stack} in [{"Key": t["Key"], "Value": t["Value"]} for t in g["Tags"]]
    )
