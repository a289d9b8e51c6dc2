"""Application AMIs as fleet sees them: their tags, reading them, selecting one for a release, list and show.

Every AWS call goes through boto3 clients passed in (see automation.aws.client), so the
same code runs against AWS and, in the aws test layer, against a moto server. Baking is in
automation.ami_bake, prune and sweep in automation.ami_cleanup.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

import boto3
from botocore.exceptions import ClientError

from automation import aws
from automation.aws import error_code
from automation.errors import BadInput
from automation.release_state import ReleaseState, ReleaseStateError, check_ami, check_release

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

APP_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

# How bake, prune and sweep report each step to the caller.
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


def region_of(client) -> str:
    return client.meta.region_name


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


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


def describe_candidates(images: Iterable[dict]) -> str:
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
            f"version {version} of app {app} matches {len(available)} available images: {describe_candidates(available)}; "
            "pass the ami- id, or deregister the extra ones"
        )
    if available:
        return checked(available[0])
    if images:
        raise BadInput(f"version {version} of app {app} has no available image in region {region}: {describe_candidates(images)}")
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
