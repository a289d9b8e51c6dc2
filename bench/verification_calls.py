"""AWS API calls per verification poll, for a release group of 2 and of 200 instances.

Starts its own moto server, creates a foundation and one release group of each size with
the aws-layer program double, and counts the calls of one check_groups() with a botocore
before-call hook. The count must not grow with the instance count (beyond pagination).
Run from the project root: .venv/bin/python bench/verification_calls.py
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automation.local_aws import start_moto_server  # noqa: E402

SIZES = (2, 200)
POLLS = 5
AMI = "ami-0123456789abcdef0"


def main() -> None:
    server = start_moto_server()
    try:
        os.environ.update(server.env())
        measure()
    finally:
        server.stop()


def measure() -> None:
    from automation.aws import client
    from automation.health import ExpectedGroup, check_groups
    from automation.release_state import ReleaseGroup, ReleaseState
    from tests.support.aws_program_double import AwsProgramDouble

    double = AwsProgramDouble("integration")
    asg, elbv2 = client("autoscaling"), client("elbv2")
    calls: Counter[str] = Counter()
    for aws_client in (asg, elbv2):
        aws_client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))

    print(f"{'instances':>9}  {'calls/poll':>10}  {'ms/poll (moto)':>14}  calls")
    for size in SIZES:
        release = f"bench-{size}"
        outputs = double.up(ReleaseState(groups=(ReleaseGroup(release, AMI, capacity=size),))).outputs
        groups = [ExpectedGroup(release, outputs["releaseGroups"][release]["asgName"], size)]
        calls.clear()
        started = time.perf_counter()
        for _ in range(POLLS):
            [health] = check_groups(asg, elbv2, target_group_arn=outputs["targetGroupArn"], groups=groups)
            if not health.ok:
                raise SystemExit(f"group of {size} is not healthy: {'; '.join(health.problems)}")
        elapsed_ms = (time.perf_counter() - started) * 1000 / POLLS
        per_poll = sum(calls.values()) / POLLS
        detail = ", ".join(f"{name} {count / POLLS:g}" for name, count in sorted(calls.items()))
        print(f"{size:>9}  {per_poll:>10g}  {elapsed_ms:>14.1f}  {detail}")


if __name__ == "__main__":
    main()
