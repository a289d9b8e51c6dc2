"""`./dev rehearse`: a full release rehearsed on this machine, with a moto server as AWS.

It starts a moto server on 127.0.0.1, prepares the local stack `local` in
.fleet/rehearsal/ (file state backend inside it), creates what an AWS account
would already have, bakes AMIs of the sample application for two versions with
`fleet ami bake`, then runs `fleet apply`, two `fleet deploy`s (the second
replaces the first create-before-destroy), `fleet status` and `fleet history`.
Those last steps need the Pulumi CLI: when it is missing the rehearsal installs
it with the Automation API's installer into .fleet/pulumi/; when that cannot
download, it stops there with exit code 3 and says how to continue.

Every fleet step runs the real `fleet` command in a child process with the
rehearsal's environment. The moto server is stopped on every way out, Ctrl-C
included. A re-run starts from scratch: a fresh moto server has none of the
previous run's resources, so the previous local state is deleted first.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import yaml

from automation import aws
from automation.ami_bake import DEFAULT_INSTANCE_PROFILE
from automation.errors import Blocked, ExitCode
from automation.local_aws import MotoServer, start_moto_server
from automation.local_stack import LOCAL_STACK, PROJECT_DIR, prepare_local_project
from automation.workspace import INSTALL_HINT

REHEARSAL_DIR = PROJECT_DIR / ".fleet" / "rehearsal"
PULUMI_ROOT = PROJECT_DIR / ".fleet" / "pulumi"
INSTALL_SCRIPT = PROJECT_DIR / "examples" / "app" / "install.sh"
VERSIONS = ("1.0.0", "2.0.0")
# Protects only the secrets of a throwaway stack whose "AWS" is a local moto server.
PASSPHRASE = "fleet-rehearsal-not-a-secret"
INSTALL_TIMEOUT_S = 300.0
# The official installer, run in a child process of its own so that a download
# that hangs can be stopped at the deadline (the SDK's urlopen has no timeout).
INSTALLER_PROGRAM = "import sys; from automation.workspace import install_cli; install_cli(sys.argv[1])"
# Variables of the caller that must not reach the rehearsal: real credentials and
# profiles, another backend's secrets, a stray proposed release state.
CLEARED_ENV = (
    "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "PULUMI_CONFIG_PASSPHRASE_FILE", "FLEET_PROPOSED_RELEASE_STATE",
)

Say = Callable[[str], None]


class PulumiUnavailable(Blocked):
    """The Pulumi CLI is not installed and could not be installed."""


@dataclass
class RehearsalOutcome:
    exit_code: int
    endpoint: str = ""
    amis: dict[str, str] = field(default_factory=dict)
    message: str = ""


def find_pulumi(pulumi_root: Path) -> str | None:
    """The pulumi CLI on PATH, else one the rehearsal installed earlier."""
    installed = pulumi_root / "bin" / "pulumi"
    return shutil.which("pulumi") or (str(installed) if os.access(installed, os.X_OK) else None)


def install_pulumi(pulumi_root: Path, timeout_s: float = INSTALL_TIMEOUT_S, *, program: str = INSTALLER_PROGRAM) -> str:
    """Install the CLI with the Automation API's installer into pulumi_root, within
    timeout_s; returns the pulumi executable or raises PulumiUnavailable with the reason."""
    pulumi_root.mkdir(parents=True, exist_ok=True)
    # A session of its own: the installer's children (install.sh, curl, tar) are stopped with it.
    with subprocess.Popen(
        [sys.executable, "-c", program, str(pulumi_root)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    ) as installer:
        try:
            output, _ = installer.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(installer)
            raise PulumiUnavailable(f"the installer did not finish within {timeout_s:.0f}s (a download that hangs?)") from None
        except BaseException:
            _kill_group(installer)
            raise
    if installer.returncode != 0:
        lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
        raise PulumiUnavailable(lines[-1] if lines else f"the installer exited with code {installer.returncode}")
    executable = pulumi_root / "bin" / "pulumi"
    if not os.access(executable, os.X_OK):
        raise PulumiUnavailable(f"the installer finished but left no executable {executable}")
    return str(executable)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def rehearse(
    *,
    work_dir: Path = REHEARSAL_DIR,
    pulumi_root: Path = PULUMI_ROOT,
    find_cli: Callable[[Path], str | None] = find_pulumi,
    install_cli: Callable[[Path, float], str] = install_pulumi,
    start_server: Callable[[], MotoServer] = start_moto_server,
    install_timeout_s: float = INSTALL_TIMEOUT_S,
    say: Say = print,
) -> RehearsalOutcome:
    """Run the rehearsal; the outcome says how far it got. Leaves no process running."""
    say("starting a moto server on 127.0.0.1 as the AWS endpoint")
    server = start_server()
    outcome = RehearsalOutcome(ExitCode.OK, endpoint=server.endpoint)
    try:
        say(f"moto server listening on {server.endpoint}")
        region = _prepare(work_dir, server, say)
        with _environment(_fleet_env(server, work_dir, region)):
            create_builder_profile(region)
            say(f"created the AMI builder instance profile {DEFAULT_INSTANCE_PROFILE} in moto")
            subnet = default_subnet(region)
            # The stack's own private subnets exist only after `fleet apply`, which needs the
            # Pulumi CLI; moto's default VPC lets the bake run before that.
            say(f"baking AMIs in subnet {subnet} of moto's default VPC (the stack's subnets come later)")
            for version in VERSIONS:
                code, image = bake(version, subnet)
                if code != ExitCode.OK:
                    return _stopped(outcome, code, f"`fleet ami bake {version}` exited with {code} (see its message above)", say)
                outcome.amis[version] = image
                say(f"baked {image} for version {version}")
            cli = find_cli(pulumi_root)
            if cli is None:
                say(f"the Pulumi CLI is not installed: installing it into {pulumi_root} (at most {install_timeout_s:.0f}s)")
                try:
                    cli = install_cli(pulumi_root, install_timeout_s)
                except PulumiUnavailable as error:
                    return _blocked_at_cli(outcome, error.reason, work_dir, say)
                say(f"installed {cli}")
            os.environ["PATH"] = os.pathsep.join([str(Path(cli).parent), os.environ.get("PATH", "")])
            for step in _release_steps():
                say(f"$ fleet {' '.join(step)}")
                code = _fleet(step).returncode
                if code != ExitCode.OK:
                    return _stopped(outcome, code, f"`fleet {' '.join(step)}` exited with {code} (see its message above)", say)
        outcome.message = (
            f"rehearsal done: released {VERSIONS[0]} then {VERSIONS[1]} create-before-destroy on a local stack; "
            f"its files are in {work_dir}"
        )
        say(outcome.message)
        return outcome
    finally:
        server.stop()
        say("moto server stopped; nothing of the rehearsal is running")


def _prepare(work_dir: Path, server: MotoServer, say: Say) -> str:
    """The local stack in work_dir, with a fresh state folder; returns the stack's region."""
    state = work_dir / "state"
    if state.exists():
        # It describes resources of an earlier moto server, which are gone with it.
        shutil.rmtree(state)
    state.mkdir(parents=True)
    prepare_local_project(work_dir, endpoint=server.endpoint)
    config = yaml.safe_load((work_dir / f"Pulumi.{LOCAL_STACK}.yaml").read_text())["config"]
    say(f"local stack {LOCAL_STACK!r} prepared in {work_dir} (state in {state})")
    return config["aws:region"]


def _fleet_env(server: MotoServer, work_dir: Path, region: str) -> dict[str, str]:
    return {
        **server.env(region),
        "FLEET_PROJECT_DIR": str(work_dir),
        "PULUMI_BACKEND_URL": f"file://{work_dir / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The rehearsal's environment for this process and the fleet commands it runs; the
    caller's environment is restored afterwards."""
    saved = dict(os.environ)
    for name in CLEARED_ENV:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def create_builder_profile(region: str) -> None:
    """What an account has before fleet's first bake (docs/ami.md): the builder's instance profile."""
    iam = aws.client("iam", region)
    iam.create_role(
        RoleName=DEFAULT_INSTANCE_PROFILE,
        AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }),
    )
    # moto does not carry AWS managed policies by default, so the core of
    # AmazonSSMManagedInstanceCore is given inline.
    iam.put_role_policy(
        RoleName=DEFAULT_INSTANCE_PROFILE,
        PolicyName="ssm-managed-instance-core",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*"],
                "Resource": "*",
            }],
        }),
    )
    iam.create_instance_profile(InstanceProfileName=DEFAULT_INSTANCE_PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=DEFAULT_INSTANCE_PROFILE, RoleName=DEFAULT_INSTANCE_PROFILE)


def default_subnet(region: str) -> str:
    """The default subnet of the first availability zone: the same one on every run."""
    subnets = aws.client("ec2", region).describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    return min(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))["SubnetId"]


def bake(version: str, subnet: str) -> tuple[int, str]:
    """`fleet ami bake` of the sample application; its exit code and the image id."""
    done = _fleet(["ami", "bake", version, "--script", str(INSTALL_SCRIPT), "--subnet", subnet, "--json"], capture=True)
    if done.returncode != ExitCode.OK:
        return done.returncode, ""
    return done.returncode, json.loads(done.stdout)["imageId"]


def _release_steps() -> list[list[str]]:
    first, second = VERSIONS
    return [
        ["apply", LOCAL_STACK, "--yes"],
        ["deploy", LOCAL_STACK, "--release", first, "--yes"],
        ["deploy", LOCAL_STACK, "--release", second, "--yes"],
        ["status", LOCAL_STACK],
        ["history", LOCAL_STACK],
    ]


def _fleet(args: list[str], *, capture: bool = False) -> subprocess.CompletedProcess:
    """The real `fleet` command, in the rehearsal's environment; its progress goes straight to the terminal."""
    return subprocess.run(
        [sys.executable, "-m", "automation.cli", *args],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE if capture else None, text=True, check=False,
    )


def _stopped(outcome: RehearsalOutcome, code: int, reason: str, say: Say) -> RehearsalOutcome:
    outcome.exit_code = code
    outcome.message = f"rehearsal stopped: {reason}"
    say(outcome.message)
    return outcome


def _blocked_at_cli(outcome: RehearsalOutcome, reason: str, work_dir: Path, say: Say) -> RehearsalOutcome:
    baked = ", ".join(f"{version} {image}" for version, image in outcome.amis.items())
    outcome.exit_code = ExitCode.BLOCKED
    outcome.message = "\n".join([
        "rehearsal stopped before the Pulumi steps (exit code 3).",
        f"done: started a moto server on {outcome.endpoint}; prepared the local stack in {work_dir}; "
        f"baked AMIs {baked}.",
        f"not done: installing the Pulumi CLI failed: {reason}",
        f"to continue: make `pulumi` available on PATH ({INSTALL_HINT}), then re-run `./dev rehearse`; "
        "it starts again from a fresh moto server.",
    ])
    say(outcome.message)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev rehearse",
        description="Rehearse a full release locally against a moto server (see docs/rehearsal.md). "
        "Exit codes: 0 done, 3 stopped because the Pulumi CLI could not be installed, others as the failing fleet command.",
    )
    parser.parse_args(argv)
    try:
        return rehearse(say=lambda line: print(line, flush=True)).exit_code
    except KeyboardInterrupt:
        print("rehearsal interrupted; the moto server was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
