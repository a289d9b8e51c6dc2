"""A local stack whose AWS endpoint is a moto server: for the rehearsal and the e2e suite.

It lives in its own folder (never in the project's stack files): a copy of
Pulumi.yaml pointing at the project's virtualenv, a link to the program in
infra/, and Pulumi.<stack>.yaml holding the base stack's settings plus the
provider settings that send every AWS call to the endpoint.
"""
from __future__ import annotations

from pathlib import Path

import yaml

LOCAL_STACK = "local"
# Every AWS service the program's resources and invokes call.
ENDPOINT_SERVICES = ("autoscaling", "cloudwatch", "ec2", "elbv2", "iam", "logs", "sns", "ssm", "sts")
PROJECT_DIR = Path(__file__).resolve().parent.parent


def provider_settings(endpoint: str) -> dict:
    """pulumi-aws settings for an endpoint that is not AWS (moto): no account or metadata lookups."""
    return {
        "aws:endpoints": [{service: endpoint for service in ENDPOINT_SERVICES}],
        "aws:skipCredentialsValidation": True,
        "aws:skipRequestingAccountId": True,
        "aws:skipMetadataApiCheck": True,
        "aws:s3UsePathStyle": True,
    }


def prepare_local_project(
    work_dir: Path,
    *,
    endpoint: str,
    stack: str = LOCAL_STACK,
    base_stack: str = "integration",
    project_dir: Path = PROJECT_DIR,
) -> Path:
    """Write (or refresh) the local project in work_dir and return it. Safe to re-run."""
    work_dir.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    project.setdefault("runtime", {}).setdefault("options", {})["virtualenv"] = str(project_dir / ".venv")
    (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    program = work_dir / "infra"
    if program.is_symlink() or program.exists():
        program.unlink()
    program.symlink_to(project_dir / "infra", target_is_directory=True)
    base = yaml.safe_load((project_dir / f"Pulumi.{base_stack}.yaml").read_text()).get("config", {})
    config = {**base, **provider_settings(endpoint)}
    (work_dir / f"Pulumi.{stack}.yaml").write_text(
        f"# Local stack on {endpoint}: settings of {base_stack} plus a moto endpoint. Made by fleet; safe to delete.\n"
        + yaml.safe_dump({"config": config}, sort_keys=False)
    )
    return work_dir
