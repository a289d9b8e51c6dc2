"""A standby rollback measured against moto, next to the one automation.timeline predicts.

staging (2 instances) runs 1.0.0, then 2.0.0 is deployed with `--strategy standby` (1.0.0 stays
warm, detached); `fleet rollback staging --yes` is measured: total wall time, time in the
Pulumi step (AwsProgramDouble's up, a test double making the program's AWS changes), waits,
and fleet's own time (the rest), with the AWS calls fleet makes. The same rollback is then
predicted by automation.timeline from the stack's settings output and its stated estimates:
against moto the health checks and the drain take no time, so the measured total is fleet's
own cost plus the double's, while the prediction is what AWS adds to it.

Prints the median of RUNS rollbacks (default 5). Run from the project root:
    .venv/bin/python bench/standby_rollback.py [RUNS]
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deploy_overhead import STACK, bake_images, print_calls, print_runs, start  # noqa: E402

DEFAULT_RUNS = 5
OLD, NEW = "1.0.0", "2.0.0"


def predicted(bench) -> None:
    """The timeline of the same rollback, from the last standby release's end state."""
    from automation.aws import client
    from automation.state_store import StateStore
    from automation.timeline import duration_text, predict_rollback

    released = next(
        stored.state for stored in StateStore(client("ssm")).history(STACK)
        if stored.state.standby and stored.state.record.outcome == "released"
    )
    settings = bench.double.outputs()["settings"]
    # previous=None: back to the standby group, as `fleet rollback` without --to does.
    timeline = predict_rollback(released, settings, previous=None, now=datetime.now(timezone.utc))
    print(timeline.render(f"predicted standby rollback on AWS ({STACK}, automation.timeline)"))
    serving = timeline.phases[0].seconds
    print(f"  {OLD} serves again after {duration_text(serving)} (end of reactivate); the rest is retiring {NEW}")


def main() -> None:
    runs_wanted = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RUNS
    bench = start()
    try:
        bake_images([OLD, NEW])
        bench.command("deploy", STACK, "--release", OLD, "--yes", "--json")
        deploys, rollbacks = [], []
        for _ in range(runs_wanted):
            deploys.append(bench.command("deploy", STACK, "--release", NEW, "--strategy", "standby", "--yes", "--json"))
            rollbacks.append(bench.command("rollback", STACK, "--yes", "--json"))
        print_runs(f"standby rollback of {STACK} (2 instances, {NEW} -> warm {OLD}) against moto, {len(rollbacks)} runs:",
                   rollbacks)
        print_calls(rollbacks)
        print_runs(f"for comparison, the standby deploy before each rollback ({OLD} -> {NEW}):", deploys)
        print()
        predicted(bench)
    finally:
        bench.server.stop()


if __name__ == "__main__":
    main()
