"""Application AMIs: bake one for a version, select one for a release, list, prune, sweep.

Every AWS call goes through boto3 clients passed in (see automation.aws.client), so the
same code runs against AWS and, in the aws test layer, against a moto server.

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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from automation import aws
from automation.errors import BadInput, Blocked, ReleaseFailed
from automation.release_state import ReleaseState, ReleaseStateError, check_ami, check_release
from automation.waiting import wait_for

# Tags (docs/ami.md lists them).
APP_TAG = "fleet:app"
VERSION_TAG = "fleet:version"
SOURCE_AMI_TAG = "fleet:source-ami"
COMMIT_TAG = "fleet:commit"
BAKED_AT_TAG = "fleet:baked-at"
BAKED_BY_TAG = "fleet:baked-by"
ROLE_TAG = "fleet:role"
EXPIRES_AT_TAG = "fleet:expires-at"
MANAGED_BY_TAG = "fleet:managed-by"
IMAGE_TAG = "fleet:image"  # on snapshots: the image they belong to, so prune finds orphans
BUILDER_ROLE = "ami-builder"
MANAGED_BY = "fleet"

DEFAULT_APP = "web"
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

APP_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
PACKAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:~-]{0,199}$")
SUBNET_PATTERN = re.compile(r"^subnet-[0-9a-f]{8,17}$")
INSTANCE_PROFILE_PATTERN = re.compile(r"^[\w+=,.@-]{1,128}$")

BUILDER_LIVE_STATES = ("pending", "running", "stopping", "stopped")
STEPS = ("security-group", "launch", "wait-running", "wait-ssm", "install", "stop", "create-image", "wait-image", "tag-snapshots")

Wait = Callable[..., object]
Progress = Callable[[str], None]


# -- images as fleet sees them ------------------------------------------------


@dataclass(frozen=True)
class Ami:
    image_id: str
    name: str
    app: str
    version: str
    created: str
    state: str
    architecture: str
    source_ami: str
    commit: str
    snapshot_ids: tuple[str, ...] = ()
    owner_id: str = ""
    baked_by: str = ""

    @classmethod
    def from_image(cls, image: dict) -> "Ami":
        tags = tags_of(image)
        return cls(
            image_id=image["ImageId"],
            name=image.get("Name", ""),
            app=tags.get(APP_TAG, ""),
            version=tags.get(VERSION_TAG, ""),
            created=image.get("CreationDate", ""),
            state=image.get("State", ""),
            architecture=image.get("Architecture", ""),
            source_ami=tags.get(SOURCE_AMI_TAG, ""),
            commit=tags.get(COMMIT_TAG, ""),
            snapshot_ids=tuple(
                m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")
            ),
            owner_id=image.get("OwnerId", ""),
            baked_by=tags.get(BAKED_BY_TAG, ""),
        )

    def to_dict(self) -> dict:
        return {
            "imageId": self.image_id,
            "name": self.name,
            "app": self.app,
            "version": self.version,
            "created": self.created,
            "state": self.state,
            "architecture": self.architecture,
            "sourceAmi": self.source_ami,
            "commit": self.commit,
            "snapshotIds": list(self.snapshot_ids),
            "bakedBy": self.baked_by,
        }


def tags_of(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def region_of(client) -> str:
    return client.meta.region_name


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- input checks (no side effects) -------------------------------------------


def check_app(app: str) -> str:
    if not APP_PATTERN.match(app or ""):
        raise BadInput(f"app name {app!r} is malformed: expected 1-32 lowercase letters, digits or '-' (e.g. web)")
    return app


def check_version(version: str) -> str:
    try:
        return check_release(version)
    except ReleaseStateError as error:
        raise BadInput(str(error)) from None


def check_region(region: str | None) -> str | None:
    if region is not None and region not in boto3.session.Session().get_available_regions("ec2"):
        raise BadInput(f"region {region!r} is unknown: expected an AWS region name such as us-east-1")
    return region


def instance_architectures(ec2, instance_type: str) -> tuple[str, ...]:
    """The CPU architectures an instance type runs (x86_64, arm64, …)."""
    try:
        types = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as error:
        if error_code(error) in ("InvalidInstanceType", "InvalidParameterValue"):
            types = []
        else:
            raise
    if not types:
        raise BadInput(
            f"instance type {instance_type!r} does not exist in region {region_of(ec2)}: expected e.g. t3.micro or t4g.micro"
        )
    return tuple(types[0]["ProcessorInfo"]["SupportedArchitectures"])


def describe_image(ec2, image_id: str, what: str) -> dict | None:
    """The image with this id in the client's region; None when it was deregistered."""
    try:
        check_ami(image_id)
    except ReleaseStateError as error:
        raise BadInput(f"{what}: {error}") from None
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as error:
        if error_code(error).startswith("InvalidAMIID"):
            raise BadInput(
                f"{what} {image_id} does not exist in region {region_of(ec2)}: AMIs are regional, "
                "use an image of this region or pass --region"
            ) from None
        raise
    return images[0] if images else None


# -- selection ------------------------------------------------------------------


def account_id(region: str | None = None) -> str:
    return aws.client("sts", region).get_caller_identity()["Account"]


def refusal(image: dict, *, app: str, account: str, architectures: tuple[str, ...] | None, instance_type: str | None) -> str | None:
    """Why this image must not be released, or None when it may be."""
    image_id = image["ImageId"]
    if image.get("OwnerId") != account:
        return f"AMI {image_id} is owned by account {image.get('OwnerId')}, not this account {account}: fleet releases only images it baked"
    tag_app = tags_of(image).get(APP_TAG)
    if tag_app != app:
        found = f"tagged {APP_TAG}={tag_app}" if tag_app else f"not tagged {APP_TAG}"
        return f"AMI {image_id} is {found}: expected an image baked for app {app}"
    state = image.get("State", "")
    if state == "pending":
        return f"AMI {image_id} is still pending: wait until it is available"
    if state == "failed":
        return f"AMI {image_id} failed to be created: bake the version again"
    if state == "deregistered":
        return f"AMI {image_id} is deregistered"
    if state != "available":
        return f"AMI {image_id} is {state}: expected an available image"
    if architectures is not None and image.get("Architecture") not in architectures:
        return (
            f"AMI {image_id} is {image.get('Architecture')} but instance type {instance_type} runs "
            f"{'/'.join(architectures)}: bake for the right architecture or change the instance type"
        )
    return None


def app_images(ec2, app: str, version: str | None = None) -> list[dict]:
    """This account's images of an app (every state), newest first."""
    filters = [{"Name": f"tag:{APP_TAG}", "Values": [app]}]
    if version is not None:
        filters.append({"Name": f"tag:{VERSION_TAG}", "Values": [version]})
    images: list[dict] = []
    for page in ec2.get_paginator("describe_images").paginate(Owners=["self"], Filters=filters):
        images.extend(page["Images"])
    return sorted(images, key=lambda image: (image.get("CreationDate", ""), image["ImageId"]), reverse=True)


def _candidates(images: Iterable[dict]) -> str:
    return ", ".join(f"{i['ImageId']} ({i.get('State')}, created {i.get('CreationDate', '?')})" for i in images)


def select_ami(
    ec2,
    spec: str,
    *,
    app: str = DEFAULT_APP,
    instance_type: str | None = None,
    account: str | None = None,
) -> Ami:
    """The one available image a release may use for spec: an exact version, "latest" or an ami- id.

    Raises BadInput with the reason for anything else: unknown or ambiguous version,
    pending/failed/deregistered/foreign image, wrong architecture for instance_type,
    an id from another region. account defaults to the caller's account (STS).
    """
    check_app(app)
    architectures = instance_architectures(ec2, instance_type) if instance_type else None
    account = account or account_id(region_of(ec2))
    region = region_of(ec2)

    def checked(image: dict) -> Ami:
        reason = refusal(image, app=app, account=account, architectures=architectures, instance_type=instance_type)
        if reason:
            raise BadInput(reason)
        return Ami.from_image(image)

    if spec.startswith("ami-"):
        image = describe_image(ec2, spec, "AMI")
        if image is None:
            raise BadInput(f"AMI {spec} is deregistered")
        return checked(image)

    if spec == "latest":
        available = [i for i in app_images(ec2, app) if i.get("State") == "available"]
        if not available:
            raise BadInput(f"no available image of app {app} in region {region}: bake one with `fleet ami bake VERSION`")
        return checked(available[0])

    version = check_version(spec)
    images = app_images(ec2, app, version)
    available = [i for i in images if i.get("State") == "available"]
    if len(available) > 1:
        raise BadInput(
            f"version {version} of app {app} matches {len(available)} available images: {_candidates(available)}; "
            "pass the ami- id, or deregister the extra ones"
        )
    if available:
        return checked(available[0])
    if images:
        raise BadInput(f"version {version} of app {app} has no available image in region {region}: {_candidates(images)}")
    raise BadInput(
        f"no image of app {app} version {version} in region {region}: bake it with `fleet ami bake {version}` "
        "or pass an ami- id"
    )


def stacks_using(states: dict[str, ReleaseState]) -> dict[str, list[str]]:
    """Which stacks' release states reference each image id."""
    using: dict[str, list[str]] = {}
    for stack, state in sorted(states.items()):
        for group in state.groups:
            using.setdefault(group.ami, [])
            if stack not in using[group.ami]:
                using[group.ami].append(stack)
    return using


def list_amis(ec2, app: str = DEFAULT_APP) -> list[Ami]:
    """Every image of the app in this account and region, newest first."""
    return [Ami.from_image(image) for image in app_images(ec2, check_app(app))]


@dataclass(frozen=True)
class Shown:
    ami: Ami
    usable: bool
    reason: str


def show_amis(ec2, spec: str, *, app: str = DEFAULT_APP, instance_type: str | None = None) -> list[Shown]:
    """The images spec names, whatever their state, each with whether a release may use it and why not."""
    check_app(app)
    account = account_id(region_of(ec2))
    architectures = instance_architectures(ec2, instance_type) if instance_type else None
    if spec.startswith("ami-"):
        image = describe_image(ec2, spec, "AMI")
        if image is None:
            raise BadInput(f"AMI {spec} is deregistered")
        images = [image]
    elif spec == "latest":
        images = [i for i in app_images(ec2, app) if i.get("State") == "available"][:1]
    else:
        images = app_images(ec2, app, check_version(spec))
    if not images:
        raise BadInput(f"no image of app {app} matches {spec!r} in region {region_of(ec2)}")
    shown = []
    for image in images:
        reason = refusal(image, app=app, account=account, architectures=architectures, instance_type=instance_type)
        shown.append(Shown(Ami.from_image(image), reason is None, reason or ""))
    if len(shown) > 1 and sum(s.usable for s in shown) > 1:
        shown = [Shown(s.ami, False, "ambiguous: several available images carry this version") if s.usable else s for s in shown]
    return shown


# -- bake -----------------------------------------------------------------------


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
        baked_at=iso(now),
        expires_at=iso(now + timedelta(minutes=request.timeout_minutes) + BUILDER_TTL_MARGIN),
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
            f"an image of {app} {version} is still pending ({_candidates(pending)}): "
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


# -- removing images --------------------------------------------------------------


def image_snapshots(ec2, image_id: str, instance_id: str | None = None) -> list[str]:
    """Snapshot ids of an image: from its block devices, and for a half-made image also
    the snapshots CreateImage has started (found by the description AWS gives them)."""
    snapshots: set[str] = set()
    try:
        for image in ec2.describe_images(ImageIds=[image_id])["Images"]:
            snapshots.update(Ami.from_image(image).snapshot_ids)
    except ClientError as error:
        if not error_code(error).startswith("InvalidAMIID"):
            raise
    if instance_id:
        found = ec2.describe_snapshots(
            OwnerIds=["self"],
            Filters=[{"Name": "description", "Values": [f"Created by CreateImage({instance_id}) for {image_id}*"]}],
        )["Snapshots"]
        snapshots.update(s["SnapshotId"] for s in found)
    return sorted(snapshots)


def delete_image(ec2, image_id: str, *, instance_id: str | None = None, snapshots: Iterable[str] | None = None) -> list[str]:
    """Deregister an image and delete its snapshots; safe to repeat. Returns the snapshots deleted."""
    snapshot_ids = list(snapshots) if snapshots is not None else image_snapshots(ec2, image_id, instance_id)
    try:
        ec2.deregister_image(ImageId=image_id)
    except ClientError as error:
        if not error_code(error).startswith("InvalidAMIID"):
            raise
    deleted = []
    for snapshot_id in snapshot_ids:
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
            deleted.append(snapshot_id)
        except ClientError as error:
            if error_code(error) != "InvalidSnapshot.NotFound":
                raise
    return deleted


@dataclass(frozen=True)
class PruneItem:
    ami: Ami
    action: str  # "deregister" or "keep"
    reason: str

    def to_dict(self) -> dict:
        return {**self.ami.to_dict(), "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class PrunePlan:
    items: tuple[PruneItem, ...]
    orphan_snapshots: tuple[str, ...]

    @property
    def to_deregister(self) -> tuple[PruneItem, ...]:
        return tuple(item for item in self.items if item.action == "deregister")

    def to_dict(self) -> dict:
        return {"images": [item.to_dict() for item in self.items], "orphanSnapshots": list(self.orphan_snapshots)}


def plan_prune(ec2, states: dict[str, ReleaseState], *, app: str = DEFAULT_APP, keep: int) -> PrunePlan:
    """Which images of the app prune would deregister, and why each other one stays."""
    check_app(app)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise BadInput(f"--keep {keep!r} is invalid: expected a whole number >= 1 (the newest images to keep)")
    in_use = stacks_using(states)
    items, kept_newest = [], 0
    images = app_images(ec2, app)
    for image in images:
        ami = Ami.from_image(image)
        if ami.image_id in in_use:
            items.append(PruneItem(ami, "keep", f"in use by {', '.join(in_use[ami.image_id])}"))
        elif ami.state == "pending":
            items.append(PruneItem(ami, "keep", "pending: a bake may still be running"))
        elif ami.state == "available" and kept_newest < keep:
            kept_newest += 1
            items.append(PruneItem(ami, "keep", f"among the newest {keep}"))
        else:
            items.append(PruneItem(ami, "deregister", f"older than the newest {keep}" if ami.state == "available" else ami.state))
    live = {image["ImageId"] for image in images}
    snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{APP_TAG}", "Values": [app]}])["Snapshots"]
    orphans = tuple(
        sorted(s["SnapshotId"] for s in snapshots if tags_of(s).get(IMAGE_TAG) and tags_of(s)[IMAGE_TAG] not in live)
    )
    return PrunePlan(tuple(items), orphans)


def apply_prune(ec2, plan: PrunePlan, progress: Progress) -> None:
    for item in plan.to_deregister:
        deleted = delete_image(ec2, item.ami.image_id, snapshots=item.ami.snapshot_ids)
        progress(f"deregistered {item.ami.image_id} ({item.ami.version}), deleted {', '.join(deleted) or 'no snapshots'}")
    for snapshot_id in plan.orphan_snapshots:
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            if error_code(error) != "InvalidSnapshot.NotFound":
                raise
        progress(f"deleted orphan snapshot {snapshot_id}")


# -- sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    kind: str  # "instance" or "security-group"
    resource_id: str
    expires_at: str
    version: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "id": self.resource_id, "expiresAt": self.expires_at, "version": self.version}


def _expired(tags: dict[str, str], now: datetime) -> bool:
    try:
        expires = datetime.fromisoformat(tags.get(EXPIRES_AT_TAG, "").replace("Z", "+00:00"))
    except ValueError:
        return True  # a builder without a readable time-to-live is not worth keeping
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return expires <= now


def find_leftovers(ec2, now: datetime | None = None) -> list[Leftover]:
    """Builder instances and security groups whose time-to-live has passed."""
    now = now or utc_now()
    role = {"Name": f"tag:{ROLE_TAG}", "Values": [BUILDER_ROLE]}
    leftovers = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[role, {"Name": "instance-state-name", "Values": list(BUILDER_LIVE_STATES)}]
    ):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = tags_of(instance)
                if _expired(tags, now):
                    leftovers.append(Leftover("instance", instance["InstanceId"], tags.get(EXPIRES_AT_TAG, ""), tags.get(VERSION_TAG, "")))
    for group in ec2.describe_security_groups(Filters=[role])["SecurityGroups"]:
        tags = tags_of(group)
        if _expired(tags, now):
            leftovers.append(Leftover("security-group", group["GroupId"], tags.get(EXPIRES_AT_TAG, ""), tags.get(VERSION_TAG, "")))
    return leftovers


def sweep(ec2, leftovers: list[Leftover], progress: Progress) -> list[str]:
    """Terminate expired builders, then delete their security groups; returns what could
    not be removed yet (a group whose builder is still shutting down waits for the next sweep)."""
    instances = [l.resource_id for l in leftovers if l.kind == "instance"]
    if instances:
        ec2.terminate_instances(InstanceIds=instances)
        progress(f"terminated {', '.join(instances)}")
    remaining = []
    for leftover in (l for l in leftovers if l.kind == "security-group"):
        try:
            ec2.delete_security_group(GroupId=leftover.resource_id)
            progress(f"deleted security group {leftover.resource_id}")
        except ClientError as error:
            if error_code(error) == "InvalidGroup.NotFound":
                continue
            if error_code(error) != "DependencyViolation":
                raise
            remaining.append(leftover.resource_id)
            progress(f"security group {leftover.resource_id} is still in use by a terminating builder: run sweep again later")
    return remaining

