"""The e2e layer: the real pulumi CLI and provider plugins against a moto server.

Every test in this directory is marked `e2e` and skipped, with the reason, where
the pulumi CLI or the aws/awsx resource plugins are not installed (they come from
the internet, which build machines here do not reach).

The moto server: FLEET_E2E_MOTO_ENDPOINT when set (CI's service container, see
.github/workflows/e2e.yml), else one started on 127.0.0.1 with automation.local_aws.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from automation.local_aws import MotoServer, start_moto_server

REQUIRED_PLUGINS = ("aws", "awsx")
MOTO_ENDPOINT_ENV = "FLEET_E2E_MOTO_ENDPOINT"
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



@pytest.fixture(scope="session")
def moto_server(e2e_tooling_missing: str | None):
    """The suite's moto server, under the name the shared `aws` fixture uses: the one CI
    names in FLEET_E2E_MOTO_ENDPOINT, else our own (stopped at the end)."""
    if e2e_tooling_missing:
        pytest.skip(e2e_tooling_missing)
    endpoint = os.environ.get(MOTO_ENDPOINT_ENV)
    server = MotoServer.running_at(endpoint) if endpoint else start_moto_server()
    yield server
    server.stop()
