"""Predicted release and rollback durations per strategy: fleet's health settings vs AWS's defaults.

For each stack, the health check and drain settings come from Pulumi.yaml's defaults and the
stack's Pulumi.<stack>.yaml; the same release (1.0.0 -> 2.0.0) is then predicted again with AWS's
defaults (30 s interval, 5 healthy checks, 300 s deregistration delay). "serving again" is when
the earlier release serves once more during the rollback (before the rolled-back one drains).
The canary is 1 instance and its hold is left out (it lasts what the operator chooses).
Figures are predictions from automation/timeline.py's stated estimates, printed below.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automation.release_state import STRATEGIES, ReleaseGroup, ReleaseState  # noqa: E402
from automation.strategies import release_phases  # noqa: E402
from automation.timeline import SETTINGS_USED, Timeline, duration_text, predict, predict_rollback  # noqa: E402

STACKS = ("integration", "staging", "production")
AWS_DEFAULTS = {"healthCheckIntervalSeconds": 30, "healthyThreshold": 5, "deregistrationDelaySeconds": 300}
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
BASE = ReleaseState(groups=(ReleaseGroup("1.0.0", "ami-00000000000000001"),))
NEW = ReleaseGroup("2.0.0", "ami-00000000000000002")


def stack_settings(stack: str) -> dict[str, int]:
    """The effective settings the timeline reads, as the program would export them."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    values = {key: spec["default"] for key, spec in project["config"].items() if "default" in spec}
    overrides = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()).get("config", {})
    values.update({key.split(":", 1)[1]: value for key, value in overrides.items() if key.startswith("fleet:")})
    return {key: values[key] for key in SETTINGS_USED}


def serving_again(rollback: Timeline) -> float:
    """Seconds until the earlier release serves again: the first phase up to its health checks."""
    first = rollback.phases[0]
    total = 0.0
    for step, seconds in first.steps:
        total += seconds
        if step == "health checks":
            break
    return total


def main() -> None:
    header = (
        f"{'stack':<12} {'strategy':<9} | {'release':>8} {'rollback':>8} {'serving':>8} | "
        f"{'release':>8} {'rollback':>8} {'serving':>8} | peak"
    )
    print(f"{'':<22} | {'fleet settings':^26} | {'AWS defaults':^26} |")
    print(header)
    print("-" * len(header))
    assumptions = ()
    for stack in STACKS:
        tuned = stack_settings(stack)
        slow = {**tuned, **AWS_DEFAULTS}
        for strategy in STRATEGIES:
            phases = release_phases(BASE, NEW, strategy=strategy, now=NOW)
            cells = []
            for settings in (tuned, slow):
                release = predict(phases, settings, base=BASE)
                rollback = predict_rollback(phases[-1].state, settings, previous=BASE, now=NOW)
                cells.append(
                    f"{duration_text(release.total_seconds):>8} {duration_text(rollback.total_seconds):>8} "
                    f"{duration_text(serving_again(rollback)):>8}"
                )
                assumptions = assumptions or release.assumptions
            print(f"{stack:<12} {strategy:<9} | {cells[0]} | {cells[1]} | {release.peak_instances}")
        print(f"{'':<12} settings: {tuned}")
    print("\nassumptions (with integration's fleet settings; AWS defaults change the health and drain lines):")
    for line in assumptions:
        print(f"  - {line}")


if __name__ == "__main__":
    main()
