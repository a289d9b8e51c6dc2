"""How long evaluating the Pulumi program under mocks takes: per stack, and by number of release groups.

Prints the median wall time of several evaluations of infra/__main__.py (mocked engine and AWS, see
tests/unit/infra/program_harness.py). The release state schema allows at most 2 groups, so the
10-group figure declares the foundation from an empty state and then 10 ReleaseGroup components
directly; the 1- and 2-group rows are measured both ways so the two methods can be compared.
"""
from __future__ import annotations

import runpy
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore", DeprecationWarning)

from automation.release_state import ReleaseGroup as ReleaseGroupState, ReleaseState  # noqa: E402
from infra.release_group import ReleaseGroup, ReleaseGroupArgs  # noqa: E402
from infra.settings import load_settings  # noqa: E402
from tests.unit.infra.program_harness import PROGRAM, STACKS, run_program  # noqa: E402

RUNS = 7
AMI = "ami-0123456789abcdef0"


def state_with(groups: int) -> ReleaseState:
    return ReleaseState(groups=tuple(ReleaseGroupState(f"1.0.{n}", AMI) for n in range(groups)))


def foundation_plus_direct_groups(groups: int):
    """The real program with no release state, then `groups` ReleaseGroup components built directly."""

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        settings = load_settings()
        for n in range(groups):
            ReleaseGroup(
                ReleaseGroupArgs(
                    settings=settings,
                    group=ReleaseGroupState(f"2.0.{n}", AMI),
                    private_subnet_ids=["subnet-private-0", "subnet-private-1"],
                    target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0",
                    security_group_id="sg-0app",
                    instance_profile_arn="arn:aws:iam::123456789012:instance-profile/fleet",
                )
            )

    return program


def median_seconds(evaluate) -> tuple[float, int]:
    evaluate()  # warm-up: imports and first-use caches are not what we measure
    times, resources = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        run = evaluate()
        times.append(time.perf_counter() - start)
        resources = len(run.resources)
    return statistics.median(times), resources


def row(label: str, evaluate) -> None:
    seconds, resources = median_seconds(evaluate)
    print(f"{label:<44} {seconds * 1000:8.1f} ms  {resources:4d} resources")


def main() -> None:
    print(f"program evaluation under mocks, median of {RUNS} runs (python {sys.version.split()[0]})")
    print("-- per stack, one release group stored in SSM")
    for stack in STACKS:
        row(stack, lambda stack=stack: run_program(stack, stored_state=state_with(1)))
    print("-- staging, by release groups in the state (the schema allows at most 2)")
    for groups in (0, 1, 2):
        row(f"{groups} group(s) from the release state", lambda g=groups: run_program("staging", stored_state=state_with(g)))
    print("-- staging, foundation + release groups built directly")
    for groups in (1, 2, 10):
        row(f"{groups} group(s) built directly",
            lambda g=groups: run_program("staging", stored_state=None, program=foundation_plus_direct_groups(g)))


if __name__ == "__main__":
    main()
