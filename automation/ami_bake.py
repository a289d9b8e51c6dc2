"""Baking an application AMI for a version.

A bake follows Packer's amazon-ebs builder: a temporary builder instance (private, IMDSv2,
encrypted volume, no public IP, tagged with a time-to-live) runs the install through SSM Run
Command, is stopped and imaged, and is terminated whatever happens. An image left half-made
by a failure is deregistered with its snapshots.
"""
from __future__ import annotations

import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from automation.ami import (
    APP_TAG,
    BAKED_AT_TAG,
    BAKED_BY_TAG,
    BUILDER_ROLE,
    COMMIT_TAG,
    DEFAULT_APP,
    EXPIRES_AT_TAG,
    IMAGE_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    ROLE_TAG,
    SOURCE_AMI_TAG,
    VERSION_TAG,
    Ami,
    Progress,
    app_images,
    check_app,
    check_version,
    describe_candidates,
    describe_image,
    instance_architectures,
    region_of,
    utc_now,
)
from automation.ami_cleanup import delete_image
from automation.aws import error_code
from automation.errors import BadInput, Blocked, ReleaseFailed
from automation.release_state import iso_utc
from automation.waiting import wait_for

DEFAULT_INSTANCE_TYPE = "t3.micro"
DEFAULT_INSTANCE_PROFILE = "fleet-ami-builder"
DEFAULT_TIMEOUT_MINUTES = 45
# A builder outlives its bake's timeout by this much before `fleet ami sweep` may terminate it.
BUILDER_TTL_MARGIN = timedelta(minutes=15)
BASE_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
MAX_SCRIPT_BYTES = 64 * 1024
DEFAULT_ROOT_VOLUME_GIB = 8
OUTPUT_TAIL_LINES = 20
# SSM refuses delivery timeouts below 30 s.
MIN_COMMAND_TIMEOUT_S = 30

PACKAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:~-]{0,199}$")
SUBNET_PATTERN = re.compile(r"^subnet-[0-9a-f]{8,17}$")
INSTANCE_PROFILE_PATTERN = re.compile(r"^[\w+=,.@-]{1,128}$")

STEPS = ("security-group", "launch", "wait-running", "wait-ssm", "install", "stop", "create-image", "wait-image", "tag-snapshots")

Wait = Callable[..., object]


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


@dataclass(frozen=True)
class InstallSource:
    """What the builder installs: exactly one of an RPM URL, a yum repository + package, a script."""

    rpm_url: str | None = None
    yum_repo: str | None = None
    package: str | None = None
    repo_gpg_key: str | None = None
    script: str | None = None  # path of a local shell script

    def describe(self) -> str:
        if self.rpm_url:
            return f"RPM {self.rpm_url}"
        if self.yum_repo:
            return f"package {self.package} from yum repository {self.yum_repo}"
        return f"script {self.script}"


def check_url(url: str, what: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https", "s3") or not parsed.netloc or any(c.isspace() for c in url):
        raise BadInput(f"{what} {url!r} is not a URL fleet can fetch: expected http://, https:// or s3:// with a host or bucket")
    return url


def check_install_source(source: InstallSource) -> None:
    given = [name for name, value in (("--rpm-url", source.rpm_url), ("--yum-repo", source.yum_repo), ("--script", source.script)) if value]
    if len(given) != 1:
        raise BadInput(
            f"install source {'/'.join(given) or 'missing'}: expected exactly one of --rpm-url URL, "
            "--yum-repo URL --package NAME, --script FILE"
        )
    if source.rpm_url:
        check_url(source.rpm_url, "RPM URL")
    if source.yum_repo:
        check_url(source.yum_repo, "yum repository URL")
        if not source.package or not PACKAGE_PATTERN.match(source.package):
            raise BadInput(f"package {source.package!r} is malformed or missing: expected a package name such as myapp-1.4.2")
        if source.repo_gpg_key:
            check_url(source.repo_gpg_key, "repository GPG key URL")
    elif source.package or source.repo_gpg_key:
        raise BadInput("--package and --repo-gpg-key go with --yum-repo only")
    if source.script:
        path = Path(source.script)
        if not path.is_file():
            raise BadInput(f"script file {source.script!r} does not exist: expected a readable shell script")
        size = path.stat().st_size
        if size == 0 or size > MAX_SCRIPT_BYTES:
            raise BadInput(f"script file {source.script!r} has {size} bytes: expected 1 to {MAX_SCRIPT_BYTES}")


def install_commands(source: InstallSource, version: str) -> list[str]:
    """The shell lines SSM runs on the builder (AWS-RunShellScript, as root). An install
    script gets the version being baked in FLEET_VERSION (examples/app/install.sh)."""
    lines = ["set -euo pipefail"]
    if source.rpm_url and source.rpm_url.startswith("s3://"):
        lines += [f"aws s3 cp {shlex.quote(source.rpm_url)} /tmp/fleet-app.rpm", "dnf install -y /tmp/fleet-app.rpm", "rm -f /tmp/fleet-app.rpm"]
    elif source.rpm_url:
        lines.append(f"dnf install -y {shlex.quote(source.rpm_url)}")
    elif source.yum_repo:
        repo = ["[fleet-app]", "name=fleet application", f"baseurl={source.yum_repo}", "enabled=1"]
        repo += [f"gpgcheck=1", f"gpgkey={source.repo_gpg_key}"] if source.repo_gpg_key else ["gpgcheck=0"]
        lines.append(f"printf '%s\\n' {' '.join(shlex.quote(line) for line in repo)} > /etc/yum.repos.d/fleet-app.repo")
        lines.append(f"dnf install -y {shlex.quote(source.package)}")
    else:
        body = Path(source.script).read_text()
        # The script travels inside the command; a quoted heredoc keeps it byte for byte.
        lines += ["cat > /tmp/fleet-install.sh <<'FLEET_INSTALL_EOF'", body.rstrip("\n"), "FLEET_INSTALL_EOF",
                  f"FLEET_VERSION={shlex.quote(version)} bash /tmp/fleet-install.sh", "rm -f /tmp/fleet-install.sh"]
    lines.append("dnf clean all")
    return lines


@dataclass(frozen=True)
class BakeRequest:
    version: str
    source: InstallSource
    app: str = DEFAULT_APP
    base_ami: str | None = None
    instance_type: str = DEFAULT_INSTANCE_TYPE
    subnet: str | None = None
    stack: str | None = None
    instance_profile: str = DEFAULT_INSTANCE_PROFILE
    commit: str = ""
    baked_by: str = ""
    force: bool = False
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES


@dataclass(frozen=True)
class BakePlan:
    """A checked request: everything resolved, nothing launched yet."""

    request: BakeRequest
    region: str
    base_ami: str
    architecture: str
    subnet: str
    vpc: str
    root_device: str
    root_volume_gib: int
    image_name: str
    baked_at: str
    expires_at: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class BakeResult:
    ami: Ami
    created: bool
    region: str

    def to_dict(self) -> dict:
        return {**self.ami.to_dict(), "created": self.created, "region": self.region}


@dataclass
class BakeClients:
    ec2: object
    ssm: object
    iam: object


@dataclass
class _Made:
    """What a bake has made so far, for the cleanup."""

    security_group: str | None = None
    instance: str | None = None
    image: str | None = None
    complete: bool = False
    problems: list[str] = field(default_factory=list)


def find_subnet(ec2, request: BakeRequest) -> dict:
    region = region_of(ec2)
    if bool(request.subnet) == bool(request.stack):
        raise BadInput("builder subnet: expected exactly one of --subnet SUBNET_ID or --stack STACK")
    if request.subnet:
        if not SUBNET_PATTERN.match(request.subnet):
            raise BadInput(f"subnet {request.subnet!r} is malformed: expected subnet- followed by 8-17 hex digits")
        try:
            return ec2.describe_subnets(SubnetIds=[request.subnet])["Subnets"][0]
        except ClientError as error:
            if error_code(error).startswith("InvalidSubnetID"):
                raise BadInput(f"subnet {request.subnet} does not exist in region {region}: pass a subnet of this region or --region") from None
            raise
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "tag:fleet:stack", "Values": [request.stack]},
            {"Name": "tag:SubnetType", "Values": ["Private"]},
        ]
    )["Subnets"]
    if not subnets:
        raise BadInput(
            f"stack {request.stack} has no private subnet in region {region} (tags fleet:stack={request.stack}, "
            "SubnetType=Private): deploy the stack first, pass --region, or pass --subnet"
        )
    # The roomiest subnet; ties broken by id so the choice is repeatable.
    return sorted(subnets, key=lambda s: (-int(s.get("AvailableIpAddressCount", 0)), s["SubnetId"]))[0]


def check_instance_profile(iam, name: str) -> None:
    if not INSTANCE_PROFILE_PATTERN.match(name or ""):
        raise BadInput(f"instance profile name {name!r} is malformed")
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            raise BadInput(
                f"instance profile {name} does not exist: create it with a role that has AmazonSSMManagedInstanceCore "
                "(see docs/ami.md) or pass --instance-profile"
            ) from None
        raise
    if not profile.get("Roles"):
        raise BadInput(f"instance profile {name} has no role: the builder could not reach SSM; add a role with AmazonSSMManagedInstanceCore")


def base_image(clients: BakeClients, request: BakeRequest, architectures: tuple[str, ...]) -> dict:
    if request.base_ami:
        image = describe_image(clients.ec2, request.base_ami, "base AMI")
        if image is None:
            raise BadInput(f"base AMI {request.base_ami} is deregistered: pass an available image")
    else:
        arch = "arm64" if "arm64" in architectures and "x86_64" not in architectures else "x86_64"
        parameter = BASE_AMI_PARAMETER.format(arch=arch)
        try:
            image_id = clients.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                raise BadInput(f"public parameter {parameter} does not exist in region {region_of(clients.ssm)}: pass --base-ami") from None
            raise
        image = describe_image(clients.ec2, image_id, f"base AMI from {parameter}")
        if image is None:
            raise BadInput(f"base AMI {image_id} from {parameter} is deregistered: pass --base-ami")
    if image.get("State") != "available":
        raise BadInput(f"base AMI {image['ImageId']} is {image.get('State')}: expected an available image")
    if image.get("Architecture") not in architectures:
        raise BadInput(
            f"base AMI {image['ImageId']} is {image.get('Architecture')} but instance type {request.instance_type} "
            f"runs {'/'.join(architectures)}: pick a matching --base-ami or --instance-type"
        )
    return image


def root_volume_gib(image: dict) -> int:
    """The size of the base image's root volume: the builder's encrypted root volume is the same size."""
    root = image.get("RootDeviceName")
    for mapping in image.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == root and mapping.get("Ebs", {}).get("VolumeSize"):
            return int(mapping["Ebs"]["VolumeSize"])
    return DEFAULT_ROOT_VOLUME_GIB


def plan_bake(clients: BakeClients, request: BakeRequest, now: datetime | None = None) -> BakePlan:
    """Check every input against AWS without changing anything."""
    check_app(request.app)
    check_version(request.version)
    check_install_source(request.source)
    if not 1 <= request.timeout_minutes <= 24 * 60:
        raise BadInput(f"timeout {request.timeout_minutes} minutes is out of range: expected 1 to 1440")
    if request.commit and not re.match(r"^[\w./-]{1,128}$", request.commit):
        raise BadInput(f"commit {request.commit!r} is malformed: expected a git revision such as a1b2c3d")
    check_instance_profile(clients.iam, request.instance_profile)
    architectures = instance_architectures(clients.ec2, request.instance_type)
    subnet = find_subnet(clients.ec2, request)
    image = base_image(clients, request, architectures)
    now = now or utc_now()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return BakePlan(
        request=request,
        region=region_of(clients.ec2),
        base_ami=image["ImageId"],
        architecture=image["Architecture"],
        subnet=subnet["SubnetId"],
        vpc=subnet["VpcId"],
        root_device=image.get("RootDeviceName") or "/dev/xvda",
        root_volume_gib=root_volume_gib(image),
        # The random suffix keeps names unique (AWS requires it) even for two bakes in one second.
        image_name=f"{request.app}-{request.version}-{stamp}-{secrets.token_hex(2)}",
        baked_at=iso_utc(now),
        expires_at=iso_utc(now + timedelta(minutes=request.timeout_minutes) + BUILDER_TTL_MARGIN),
        commands=tuple(install_commands(request.source, request.version)),
    )


def existing_image(ec2, app: str, version: str) -> Ami | None:
    """The image a re-run of this bake may reuse; Blocked while another bake's image is pending."""
    images = app_images(ec2, app, version)
    available = [i for i in images if i.get("State") == "available"]
    if available:
        return Ami.from_image(available[0])
    pending = [i for i in images if i.get("State") == "pending"]
    if pending:
        raise Blocked(
            f"an image of {app} {version} is still pending ({describe_candidates(pending)}): "
            "another bake is running or just ended; re-run when it is available, or pass --force"
        )
    return None


class Baker:
    """Runs one planned bake, step by step, and cleans up whatever happens."""

    def __init__(self, clients: BakeClients, plan: BakePlan, *, progress: Progress, wait: Wait = wait_for, on_step: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.ec2, self.ssm = clients.ec2, clients.ssm
        self.plan = plan
        self.progress = progress
        self.wait = wait
        self.on_step = on_step or (lambda step: None)
        self.clock = clock
        self.deadline = clock() + plan.request.timeout_minutes * 60
        self.made = _Made()

    # -- the steps --------------------------------------------------------

    def run(self) -> Ami:
        plan, request = self.plan, self.plan.request
        try:
            self._step("security-group", self._create_security_group)
            self._step("launch", self._launch)
            self._step("wait-running", self._wait_running)
            command_id = self._step("wait-ssm", self._send_install)
            self._step("install", lambda: self._wait_install(command_id))
            self._step("stop", self._stop)
            self._step("create-image", self._create_image)
            image = self._step("wait-image", self._wait_image)
            self._step("tag-snapshots", lambda: self._tag_snapshots(image))
            self.made.complete = True
            self.progress(f"baked {self.made.image} ({request.app} {request.version}, {plan.architecture}) in {plan.region}")
            return Ami.from_image(image)
        finally:
            self._clean_up()

    def _step(self, name: str, action: Callable[[], object]):
        self.on_step(name)
        return action()

    def _remaining_s(self) -> float:
        return max(self.deadline - self.clock(), 0.0)

    def _tags(self, name: str) -> dict[str, str]:
        request = self.plan.request
        tags = {
            "Name": name,
            MANAGED_BY_TAG: MANAGED_BY,
            ROLE_TAG: BUILDER_ROLE,
            EXPIRES_AT_TAG: self.plan.expires_at,
            APP_TAG: request.app,
            VERSION_TAG: request.version,
        }
        if request.stack:
            tags["fleet:stack"] = request.stack
        return tags

    def _create_security_group(self) -> None:
        plan = self.plan
        name = f"fleet-ami-builder-{plan.image_name}"
        # No inbound rule at all: the builder is driven through SSM, which it reaches outbound.
        self.made.security_group = self.ec2.create_security_group(
            GroupName=name,
            Description="fleet AMI builder: no inbound access, outbound for SSM and packages",
            VpcId=plan.vpc,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(self._tags(name))}],
        )["GroupId"]

    def _launch(self) -> None:
        plan, request = self.plan, self.plan.request
        name = f"fleet-ami-builder-{plan.image_name}"
        tags = tag_list(self._tags(name))
        reservation = self.ec2.run_instances(
            ImageId=plan.base_ami,
            InstanceType=request.instance_type,
            MinCount=1,
            MaxCount=1,
            IamInstanceProfile={"Name": request.instance_profile},
            NetworkInterfaces=[
                {"DeviceIndex": 0, "SubnetId": plan.subnet, "Groups": [self.made.security_group], "AssociatePublicIpAddress": False}
            ],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            BlockDeviceMappings=[
                {"DeviceName": plan.root_device, "Ebs": {"Encrypted": True, "DeleteOnTermination": True, "VolumeType": "gp3", "VolumeSize": plan.root_volume_gib}}
            ],
            # Should the builder shut itself down, it must not linger as a stopped instance.
            InstanceInitiatedShutdownBehavior="terminate",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        )
        self.made.instance = reservation["Instances"][0]["InstanceId"]
        self.progress(f"launched builder {self.made.instance} ({request.instance_type}) in {plan.subnet}; it expires at {plan.expires_at}")

    def _instance_state(self) -> str:
        instance = self.ec2.describe_instances(InstanceIds=[self.made.instance])["Reservations"][0]["Instances"][0]
        return instance["State"]["Name"]

    def _wait_running(self) -> None:
        def running():
            state = self._instance_state()
            if state in ("shutting-down", "terminated", "stopping", "stopped"):
                raise ReleaseFailed(f"builder {self.made.instance} is {state} before the install: check its console output")
            return state == "running"

        self.wait(running, what=f"builder {self.made.instance} to run", timeout_s=self._remaining_s())

    def _send_install(self) -> str:
        """Send the install; SSM answers InvalidInstanceId until the builder's agent has
        registered, so the first accepted send is also the reachability check."""
        self.progress(f"waiting for {self.made.instance} to be reachable through SSM")

        def send():
            timeout_s = int(self._remaining_s())
            try:
                return self.ssm.send_command(
                    InstanceIds=[self.made.instance],
                    DocumentName="AWS-RunShellScript",
                    Comment=f"fleet bake {self.plan.request.app} {self.plan.request.version}"[:100],
                    TimeoutSeconds=max(timeout_s, MIN_COMMAND_TIMEOUT_S),
                    Parameters={"commands": list(self.plan.commands), "executionTimeout": [str(max(timeout_s, MIN_COMMAND_TIMEOUT_S))]},
                )["Command"]["CommandId"]
            except ClientError as error:
                if error_code(error) == "InvalidInstanceId":
                    return None
                raise

        command_id = self.wait(send, what=f"builder {self.made.instance} to be reachable through SSM", timeout_s=self._remaining_s(), first_delay_s=5.0)
        self.progress(f"installing {self.plan.request.source.describe()} (SSM command {command_id})")
        return command_id

    def _wait_install(self, command_id: str) -> None:
        def finished():
            try:
                invocation = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=self.made.instance)
            except ClientError as error:
                # Right after the send, the invocation may not be visible yet.
                if error_code(error) == "InvocationDoesNotExist":
                    return None
                raise
            return invocation if invocation["Status"] not in ("Pending", "InProgress", "Delayed") else None

        invocation = self.wait(finished, what=f"the install on {self.made.instance}", timeout_s=self._remaining_s(), first_delay_s=2.0)
        if invocation["Status"] != "Success":
            tail = output_tail(invocation)
            self.progress(f"install output (last {OUTPUT_TAIL_LINES} lines):\n{tail}" if tail else "install printed nothing")
            last = tail.splitlines()[-1].strip() if tail else "no output"
            raise ReleaseFailed(
                f"install of {self.plan.request.source.describe()} failed on {self.made.instance} "
                f"({invocation['Status']}, exit {invocation.get('ResponseCode')}): {last}"
            )
        self.progress("install succeeded")

    def _stop(self) -> None:
        self.ec2.stop_instances(InstanceIds=[self.made.instance])
        self.wait(lambda: self._instance_state() == "stopped", what=f"builder {self.made.instance} to stop", timeout_s=self._remaining_s(), first_delay_s=5.0)

    def _create_image(self) -> None:
        plan, request = self.plan, self.plan.request
        tags = {
            "Name": plan.image_name,
            MANAGED_BY_TAG: MANAGED_BY,
            APP_TAG: request.app,
            VERSION_TAG: request.version,
            SOURCE_AMI_TAG: plan.base_ami,
            BAKED_AT_TAG: plan.baked_at,
            BAKED_BY_TAG: request.baked_by or "unknown",
        }
        if request.commit:
            tags[COMMIT_TAG] = request.commit
        # Tagged as it is created, so even a half-made image is recognisable as fleet's.
        self.made.image = self.ec2.create_image(
            InstanceId=self.made.instance,
            Name=plan.image_name,
            Description=f"fleet {request.app} {request.version} from {plan.base_ami}",
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(tags)}],
        )["ImageId"]
        self.progress(f"creating image {self.made.image} ({plan.image_name})")

    def _wait_image(self) -> dict:
        def available():
            images = self.ec2.describe_images(ImageIds=[self.made.image])["Images"]
            state = images[0]["State"] if images else "deregistered"
            if state in ("failed", "deregistered", "error", "invalid"):
                reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
                raise ReleaseFailed(f"image {self.made.image} is {state}{': ' + reason if reason else ''}")
            return images[0] if state == "available" else None

        return self.wait(available, what=f"image {self.made.image} to be available", timeout_s=self._remaining_s(), first_delay_s=10.0, max_delay_s=30.0)

    def _tag_snapshots(self, image: dict) -> None:
        snapshots = Ami.from_image(image).snapshot_ids
        if snapshots:
            self.ec2.create_tags(Resources=list(snapshots), Tags=image["Tags"] + [{"Key": IMAGE_TAG, "Value": image["ImageId"]}])

    # -- cleanup ------------------------------------------------------------

    def _clean_up(self) -> None:
        """Terminate the builder, drop a half-made image and the security group. Each part
        is attempted whatever happened to the others; leftovers are reported, not hidden."""
        made = self.made
        if made.instance:
            self._attempt(f"terminate builder {made.instance}", lambda: self.ec2.terminate_instances(InstanceIds=[made.instance]))
        if made.image and not made.complete:
            self._attempt(f"deregister half-made image {made.image}", lambda: delete_image(self.ec2, made.image, instance_id=made.instance))
        if made.security_group:
            if made.instance:
                self._attempt(f"wait for builder {made.instance} to terminate", self._wait_terminated)
            self._attempt(f"delete security group {made.security_group}", lambda: self.ec2.delete_security_group(GroupId=made.security_group))
        if made.problems:
            self.progress(
                "cleanup left something behind: " + "; ".join(made.problems)
                + f". `fleet ami sweep` removes builders after {self.plan.expires_at}."
            )
        elif made.instance:
            self.progress(f"builder {made.instance} terminated")

    def _wait_terminated(self) -> None:
        self.wait(lambda: self._instance_state() == "terminated", what=f"builder {self.made.instance} to terminate", timeout_s=600, first_delay_s=5.0)

    def _attempt(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - cleanup must go on; the cause is reported
            self.made.problems.append(f"could not {what} ({type(error).__name__}: {error})")


def output_tail(invocation: dict, lines: int = OUTPUT_TAIL_LINES) -> str:
    text = "\n".join(part for part in (invocation.get("StandardOutputContent", ""), invocation.get("StandardErrorContent", "")) if part)
    return "\n".join(text.rstrip().splitlines()[-lines:])


def bake(
    clients: BakeClients,
    request: BakeRequest,
    *,
    progress: Progress,
    wait: Wait = wait_for,
    on_step: Callable[[str], None] | None = None,
) -> BakeResult:
    """Bake an image of request.version, or return the available one that exists (unless force).

    Every input is checked before anything is launched (BadInput, exit 2). on_step is
    called with each step's name before it runs (STEPS); tests use it to interrupt.
    """
    plan = plan_bake(clients, request)
    if not request.force:
        existing = existing_image(clients.ec2, request.app, request.version)
        if existing:
            progress(f"{request.app} {request.version} already has available image {existing.image_id} ({existing.name}); nothing to bake")
            return BakeResult(existing, created=False, region=plan.region)
    progress(
        f"will bake {plan.image_name} in {plan.region}: builder {request.instance_type} from {plan.base_ami} "
        f"({plan.architecture}) in {plan.subnet}, install {request.source.describe()}, then image it and terminate the builder"
    )
    ami = Baker(clients, plan, progress=progress, wait=wait, on_step=on_step).run()
    return BakeResult(ami, created=True, region=plan.region)
