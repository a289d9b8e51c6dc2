"""Builds the real services a release command talks to (workspace, SSM, AWS clients).

The one place where commands meet concrete implementations; tests swap
`workspace_factory` for a test double.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from automation import aws
from automation.actor import current_actor
from automation.render import render_change
from automation.rollout import DEFAULT_VERIFY_TIMEOUT_S, Release, Services
from automation.state_store import StateStore
from automation.workspace import PROJECT_DIR, StackWorkspace

workspace_factory: Callable[..., object] = StackWorkspace
PROJECT_DIR_ENV = "FLEET_PROJECT_DIR"


def project_dir() -> Path:
    """The Pulumi project: this checkout, or FLEET_PROJECT_DIR (a local stack's folder)."""
    return Path(os.environ.get(PROJECT_DIR_ENV) or PROJECT_DIR)


def open_release(
    stack: str,
    *,
    progress: Callable[[str], None],
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S,
    smoke_url: str | None = None,
    smoke_status: int = 200,
) -> Release:
    workspace = workspace_factory(
        stack,
        project_dir=project_dir(),
        on_change=lambda change, phase: progress(render_change(change, phase)),
    )
    region = workspace.config().get("aws:region") or None
    return Release(
        Services(
            stack=stack,
            workspace=workspace,
            store=StateStore(aws.client("ssm", region)),
            asg=aws.client("autoscaling", region),
            elbv2=aws.client("elbv2", region),
            ec2=aws.client("ec2", region),
            cloudwatch=aws.client("cloudwatch", region),
            actor=current_actor(),
            progress=progress,
            verify_timeout_s=verify_timeout_s,
            smoke_url=smoke_url,
            smoke_status=smoke_status,
        )
    )

