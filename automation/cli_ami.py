"""`fleet ami …`: bake, list, show, prune and sweep AMIs. Parse, call, print; no logic."""
from __future__ import annotations

from typing import Optional

import typer

from automation import ami, ami_bake, ami_cleanup, aws
from automation.actor import current_actor
from automation.output import Output
from automation.state_store import StateStore

ami_app = typer.Typer(help="Bake, select, list and prune application AMIs.", no_args_is_help=True)

APP_OPTION = typer.Option(ami.DEFAULT_APP, "--app", help="Application name (tag fleet:app).")
REGION_OPTION = typer.Option(None, "--region", help="AWS region (default: the AWS environment's region).")
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document for CI; progress goes to stderr.")


def _clients(region: Optional[str]) -> ami_bake.BakeClients:
    ami.check_region(region)
    return ami_bake.BakeClients(ec2=aws.client("ec2", region), ssm=aws.client("ssm", region), iam=aws.client("iam", region))


@ami_app.command("bake")
def bake_command(
    version: str = typer.Argument(..., help="Application version to bake, e.g. 1.4.2."),
    rpm_url: Optional[str] = typer.Option(None, "--rpm-url", help="Install this RPM (http(s):// or s3://)."),
    yum_repo: Optional[str] = typer.Option(None, "--yum-repo", help="Install --package from this yum repository URL."),
    package: Optional[str] = typer.Option(None, "--package", help="Package to install from --yum-repo, e.g. myapp-1.4.2."),
    repo_gpg_key: Optional[str] = typer.Option(None, "--repo-gpg-key", help="GPG key URL of --yum-repo (turns on gpgcheck)."),
    script: Optional[str] = typer.Option(None, "--script", help="Run this local shell script on the builder as root."),
    app_name: str = APP_OPTION,
    base_ami: Optional[str] = typer.Option(None, "--base-ami", help="Base image (default: current Amazon Linux 2023 for the architecture)."),
    instance_type: str = typer.Option(ami_bake.DEFAULT_INSTANCE_TYPE, "--instance-type", help="Builder instance type."),
    subnet: Optional[str] = typer.Option(None, "--subnet", help="Builder subnet (private, with a route to SSM)."),
    stack: Optional[str] = typer.Option(None, "--stack", help="Use a private subnet of this stack instead of --subnet."),
    instance_profile: str = typer.Option(ami_bake.DEFAULT_INSTANCE_PROFILE, "--instance-profile", help="Builder instance profile (needs AmazonSSMManagedInstanceCore)."),
    region: Optional[str] = REGION_OPTION,
    commit: Optional[str] = typer.Option(None, "--commit", help="Git commit to record (default: from the CI environment)."),
    force: bool = typer.Option(False, "--force", help="Bake a new image even if one for this version exists."),
    timeout: float = typer.Option(ami_bake.DEFAULT_TIMEOUT_MINUTES, "--timeout", help="Minutes the whole bake may take."),
    json_mode: bool = JSON_OPTION,
) -> None:
    """Bake an AMI of VERSION on a temporary builder instance; prints the AMI id."""
    out = Output(json_mode)
    actor = current_actor()
    request = ami_bake.BakeRequest(
        version=version,
        source=ami_bake.InstallSource(rpm_url=rpm_url, yum_repo=yum_repo, package=package, repo_gpg_key=repo_gpg_key, script=script),
        app=app_name,
        base_ami=base_ami,
        instance_type=instance_type,
        subnet=subnet,
        stack=stack,
        instance_profile=instance_profile,
        commit=commit if commit is not None else actor.commit,
        baked_by=actor.by,
        force=force,
        timeout_minutes=timeout,
    )
    result = ami_bake.bake(_clients(region), request, progress=out.progress)
    out.result(result.to_dict(), text=result.ami.image_id)


@ami_app.command("list")
def list_command(app_name: str = APP_OPTION, region: Optional[str] = REGION_OPTION, json_mode: bool = JSON_OPTION) -> None:
    """Images of the app, newest first, with the stacks whose release state uses them."""
    out = Output(json_mode)
    clients = _clients(region)
    images = ami.list_amis(clients.ec2, app_name)
    using = ami.stacks_using(StateStore(clients.ssm).all_states())
    rows = [{**image.to_dict(), "stacks": using.get(image.image_id, [])} for image in images]
    lines = [f"{'IMAGE':<22} {'VERSION':<16} {'CREATED':<25} {'STATE':<10} {'ARCH':<7} STACKS"]
    lines += [
        f"{r['imageId']:<22} {r['version']:<16} {r['created']:<25} {r['state']:<10} {r['architecture']:<7} {','.join(r['stacks']) or '-'}"
        for r in rows
    ]
    out.result({"app": app_name, "images": rows}, text="\n".join(lines) if rows else f"no images of app {app_name}")


@ami_app.command("show")
def show_command(
    spec: str = typer.Argument(..., help="VERSION, latest, or an ami- id."),
    app_name: str = APP_OPTION,
    instance_type: Optional[str] = typer.Option(None, "--instance-type", help="Also check the architecture fits this instance type."),
    region: Optional[str] = REGION_OPTION,
    json_mode: bool = JSON_OPTION,
) -> None:
    """Details of the image(s) SPEC names and whether a release may use them."""
    out = Output(json_mode)
    clients = _clients(region)
    shown = ami.show_amis(clients.ec2, spec, app=app_name, instance_type=instance_type)
    using = ami.stacks_using(StateStore(clients.ssm).all_states())
    rows = [{**s.ami.to_dict(), "usable": s.usable, "reason": s.reason, "stacks": using.get(s.ami.image_id, [])} for s in shown]
    blocks = []
    for r in rows:
        blocks.append(
            "\n".join(
                [
                    f"{r['imageId']}  {r['name']}",
                    f"  app/version   {r['app']} {r['version']}",
                    f"  state         {r['state']} ({'usable' if r['usable'] else 'not usable: ' + r['reason']})",
                    f"  created       {r['created']}",
                    f"  architecture  {r['architecture']}",
                    f"  source AMI    {r['sourceAmi'] or '-'}",
                    f"  commit        {r['commit'] or '-'}",
                    f"  baked by      {r['bakedBy'] or '-'}",
                    f"  snapshots     {', '.join(r['snapshotIds']) or '-'}",
                    f"  stacks        {', '.join(r['stacks']) or '-'}",
                ]
            )
        )
    out.result({"spec": spec, "images": rows}, text="\n\n".join(blocks))


@ami_app.command("prune")
def prune_command(
    keep: int = typer.Option(..., "--keep", help="How many of the newest available images to keep (>= 1)."),
    yes: bool = typer.Option(False, "--yes", help="Deregister and delete; without it, only list."),
    app_name: str = APP_OPTION,
    region: Optional[str] = REGION_OPTION,
    json_mode: bool = JSON_OPTION,
) -> None:
    """List old images (and their snapshots) to deregister; with --yes, do it. Images in use are never touched."""
    out = Output(json_mode)
    clients = _clients(region)
    plan = ami_cleanup.plan_prune(clients.ec2, StateStore(clients.ssm).all_states(), app=app_name, keep=keep)
    for item in plan.items:
        verb = "would deregister" if item.action == "deregister" and not yes else item.action
        snapshots = f" and delete {', '.join(item.ami.snapshot_ids)}" if item.action == "deregister" and item.ami.snapshot_ids else ""
        out.progress(f"{verb} {item.ami.image_id} ({item.ami.version}, {item.ami.created}){snapshots}: {item.reason}")
    for snapshot_id in plan.orphan_snapshots:
        out.progress(f"{'delete' if yes else 'would delete'} orphan snapshot {snapshot_id}")
    if yes:
        ami_cleanup.apply_prune(clients.ec2, plan, out.progress)
    summary = f"{len(plan.to_deregister)} image(s) and {len(plan.orphan_snapshots)} orphan snapshot(s)"
    text = f"pruned {summary}" if yes else f"would prune {summary}; re-run with --yes to do it"
    out.result({**plan.to_dict(), "applied": yes}, text=text)


@ami_app.command("sweep")
def sweep_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the expired builders."),
    region: Optional[str] = REGION_OPTION,
    json_mode: bool = JSON_OPTION,
) -> None:
    """Terminate AMI builders (and their security groups) whose time-to-live has passed."""
    out = Output(json_mode)
    clients = _clients(region)
    leftovers = ami_cleanup.find_leftovers(clients.ec2)
    for leftover in leftovers:
        verb = "would remove" if dry_run else "removing"
        out.progress(f"{verb} {leftover.kind} {leftover.resource_id} (version {leftover.version or '?'}, expired {leftover.expires_at or '?'})")
    remaining = [] if dry_run else ami_cleanup.sweep(clients.ec2, leftovers, out.progress)
    text = f"{len(leftovers)} expired builder resource(s)" + (" found" if dry_run else " swept")
    out.result({"leftovers": [l.to_dict() for l in leftovers], "applied": not dry_run, "remaining": remaining}, text=text)
