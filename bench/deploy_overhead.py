"""Time fleet itself spends per deploy, outside the Pulumi step and outside its waits.

Replace deploys of staging (2 instances) through the CLI (automation.cli.main), against a moto
server this script starts, with AwsProgramDouble (tests/support/aws_program_double.py, a test
double making the program's AWS changes) as the Pulumi step. For each deploy:

- total: wall time of `fleet deploy staging --release V --yes --json`;
- pulumi: time inside the Pulumi step (the double's up: its own calls to moto). A real
  `pulumi up` takes minutes instead; that is the launch and health-check time the release
  timeline predicts, not fleet's;
- waits: time in fleet's polling sleeps (every sleep of automation's wait loops, counted);
- fleet: total - pulumi - waits, what fleet itself costs: CLI, SSM state, AMI selection,
  verification calls, orphan sweep;
- AWS calls fleet makes, by kind (a botocore before-call hook on every client), outside the
  Pulumi step, and the workspace operations it asks for (each a `pulumi` process for real).

Prints the median of RUNS deploys (default 5). Run from the project root:
    .venv/bin/python bench/deploy_overhead.py [RUNS]
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:  # the project's own moto launcher, where it exists; else the test layer's
    from automation.local_aws import start_moto_server  # noqa: E402
except ImportError:  # pragma: no cover - older checkouts
    from tests.support.moto_server import start_moto_server  # noqa: E402

STACK = "staging"
DEFAULT_RUNS = 5
WORKSPACE_OPERATIONS = ("outputs", "config", "settings_hash", "preview", "up")


@dataclass
class Meter:
    """What one command spent where: the Pulumi step, waits, AWS calls by kind."""

    pulumi_s: float = 0.0
    wait_s: float = 0.0
    sleeps: int = 0
    calls: Counter = field(default_factory=Counter)
    pulumi_calls: int = 0
    workspace: Counter = field(default_factory=Counter)
    clients: int = 0
    client_s: float = 0.0
    in_pulumi: bool = False

    def on_call(self, model, **_) -> None:
        if self.in_pulumi:
            self.pulumi_calls += 1
        else:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        started = time.perf_counter()
        time.sleep(seconds)
        self.wait_s += time.perf_counter() - started


@dataclass
class Bench:
    """A moto server, the program double standing in for staging's Pulumi stack, and the meters."""

    server: object
    double: object
    meter: Meter

    def command(self, *argv: str) -> "Measured":
        """Run one fleet command; its measurements. Fails loudly when the command fails."""
        from automation.cli import main

        self.meter = Meter()   # the hooks below read bench.meter at call time
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        total = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"`fleet {' '.join(argv)}` exited {code}:\n{err.getvalue()}")
        return Measured(total, self.meter)


@dataclass
class Measured:
    total_s: float
    meter: Meter

    @property
    def fleet_s(self) -> float:
        return self.total_s - self.meter.pulumi_s - self.meter.wait_s


def start(stack: str = STACK) -> Bench:
    """Start moto, point boto3 at it, and put the program double behind `fleet`."""
    server = start_moto_server()
    os.environ.update(server.env())
    for name in ("GITHUB_ACTIONS", "CI", "GITHUB_SHA"):
        os.environ.pop(name, None)
    from automation import services
    from tests.support.aws_program_double import AwsProgramDouble

    bench = Bench(server, None, Meter())
    hook_clients(bench)   # before the double makes its clients, so its calls are seen too
    bench.double = AwsProgramDouble(stack)
    count_sleeps(bench)
    time_workspace(bench)

    def factory(name, *, project_dir, on_change):
        if name != stack:
            raise SystemExit(f"this bench runs stack {stack}, not {name}")
        return bench.double

    services.workspace_factory = factory
    return bench


def hook_clients(bench: Bench) -> None:
    """Every boto3 client made from now on reports its calls to the current meter; the clients
    fleet makes, and the time making them, are counted too."""
    import boto3

    original = boto3.session.Session.client

    def client(self, *args, **kwargs):
        started = time.perf_counter()
        made = original(self, *args, **kwargs)
        if not bench.meter.in_pulumi:
            bench.meter.clients += 1
            bench.meter.client_s += time.perf_counter() - started
        made.meta.events.register("before-call", lambda **event: bench.meter.on_call(**event))
        return made

    boto3.session.Session.client = client


def count_sleeps(bench: Bench) -> None:
    """fleet's wait loops take `sleep=time.sleep` as a keyword default: count and time those."""
    import automation.cli  # noqa: F401 - loads every module a command uses

    def sleep(seconds: float) -> None:
        bench.meter.sleep(seconds)

    for module in [m for name, m in sys.modules.items() if name.startswith("automation.")]:
        for function in vars(module).values():
            defaults = getattr(function, "__kwdefaults__", None) if isinstance(function, types.FunctionType) else None
            if defaults and defaults.get("sleep") is time.sleep:
                defaults["sleep"] = sleep


def time_workspace(bench: Bench) -> None:
    """Count the workspace operations fleet asks for, and time the Pulumi step (up)."""
    double = bench.double
    for name in WORKSPACE_OPERATIONS:
        real = getattr(double, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            bench.meter.workspace[_name] += 1
            if _name != "up":
                return _real(*args, **kwargs)
            bench.meter.in_pulumi = True
            started = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                bench.meter.pulumi_s += time.perf_counter() - started
                bench.meter.in_pulumi = False

        setattr(double, name, counted)


def bake_images(versions: list[str], app: str = "web") -> None:
    """Available images of `app` tagged with each version, as `fleet ami bake` leaves them."""
    from automation.aws import client

    ec2 = client("ec2")
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    for version in versions:
        image = ec2.create_image(InstanceId=instance, Name=f"{app}-{version}")["ImageId"]
        ec2.create_tags(Resources=[image], Tags=[{"Key": "fleet:app", "Value": app}, {"Key": "fleet:version", "Value": version}])
    ec2.terminate_instances(InstanceIds=[instance])


def median(runs: list[Measured], figure) -> float:
    return statistics.median(figure(run) for run in runs)


def print_runs(title: str, runs: list[Measured]) -> None:
    print(title)
    print(f"  {'run':>3}  {'total':>8}  {'pulumi':>8}  {'waits':>8}  {'sleeps':>6}  {'fleet':>8}  "
          f"{'of which clients':>16}  {'AWS calls':>9}")
    rows = [(str(n), run.total_s, run.meter.pulumi_s, run.meter.wait_s, run.meter.sleeps, run.fleet_s,
             run.meter.clients, run.meter.client_s, sum(run.meter.calls.values())) for n, run in enumerate(runs, 1)]
    rows.append(("med",) + tuple(statistics.median(row[i] for row in rows) for i in range(1, 9)))
    for name, total, pulumi, waits, sleeps, fleet, clients, client_s, calls in rows:
        print(f"  {name:>3}  {total * 1000:>6.0f}ms  {pulumi * 1000:>6.0f}ms  {waits * 1000:>6.0f}ms  {sleeps:>6g}  "
              f"{fleet * 1000:>6.0f}ms  {client_s * 1000:>6.0f}ms ({clients:g})  {calls:>9g}")


def print_calls(runs: list[Measured]) -> None:
    kinds = sorted({kind for run in runs for kind in run.meter.calls})
    print("  AWS calls fleet makes per command, by kind (median; the Pulumi step's own calls left out):")
    for kind in kinds:
        print(f"    {kind:<48} {median(runs, lambda r: r.meter.calls[kind]):g}")
    print(f"  the Pulumi step's calls to moto (the double, not fleet): {median(runs, lambda r: r.meter.pulumi_calls):g}")
    operations = ", ".join(f"{name} {median(runs, lambda r: r.meter.workspace[name]):g}" for name in WORKSPACE_OPERATIONS)
    print(f"  workspace operations per command (each a `pulumi` process for real): {operations}")


def main() -> None:
    runs_wanted = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RUNS
    bench = start()
    try:
        versions = [f"1.0.{n}" for n in range(runs_wanted + 1)]
        bake_images(versions)
        bench.command("deploy", STACK, "--release", versions[0], "--yes", "--json")   # foundation + first release
        runs = [bench.command("deploy", STACK, "--release", v, "--yes", "--json") for v in versions[1:]]
    finally:
        bench.server.stop()
    print_runs(f"replace deploy of {STACK} (2 instances) against moto, {len(runs)} runs:", runs)
    print_calls(runs)


if __name__ == "__main__":
    main()
