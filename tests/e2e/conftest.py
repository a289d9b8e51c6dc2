"""The e2e layer: the real pulumi CLI and provider plugins against a moto server.

Every test in this directory is marked `e2e` and skipped, with the reason, where
the pulumi CLI or the aws/awsx resource plugins are not installed (they come from
the internet, which build machines here do not reach).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRED_PLUGINS = ("aws", "awsx")
E2E_DIR = Path(__file__).resolve().parent


def missing_tooling() -> str | None:
    """Why the e2e suite cannot run here, or None when it can."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        return (
            "the pulumi CLI is not installed (no `pulumi` on PATH); the e2e suite needs it and the "
            f"{' and '.join(REQUIRED_PLUGINS)} resource plugins: see https://www.pulumi.com/docs/install/"
        )
    try:
        listed = subprocess.run(
            [pulumi, "plugin", "ls", "--json"],
            capture_output=True, text=True, check=True, timeout=120,
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        )
        plugins = json.loads(listed.stdout or "null") or []
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return f"`pulumi plugin ls --json` failed, so the plugins cannot be checked: {error}"
    installed = {plugin.get("name") for plugin in plugins if plugin.get("kind") == "resource"}
    missing = [name for name in REQUIRED_PLUGINS if name not in installed]
    if missing:
        installs = "; ".join(f"pulumi plugin install resource {name}" for name in missing)
        return f"pulumi resource plugin(s) {', '.join(missing)} not installed: run `{installs}` (or `pulumi install`)"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_tooling_missing() -> str | None:
    return missing_tooling()


@pytest.fixture(autouse=True)
def require_pulumi_tooling(e2e_tooling_missing: str | None) -> None:
    """Skip each e2e test, saying why, where the CLI or plugins are absent."""
    if e2e_tooling_missing:
        pytest.skip(e2e_tooling_missing)

