"""Contract-layer fixtures: a project directory and the RecordingPulumiCommand double."""
from __future__ import annotations

from pathlib import Path

import pytest

from automation.release_state import PROPOSED_STATE_ENV
from tests.support.recording_pulumi import RecordingPulumiCommand

STACKS = ("integration", "staging", "production")
STAGING_SETTINGS = """\
encryptionsalt: v1:3Qm9rZXN0YWdpbmc=:v1:H0lCq0x8sGqR0F2c:Yl2v1W3kq8n0xPz9Qm4T1A==
config:
  aws:region: eu-west-1
  fleet:instanceType: t3.small
  fleet:smokeToken:
    secure: v1:AAAAAAAAAAAAAAAA:Zm9vYmFyYmF6cXV4
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fleet project as the workspace sees it: Pulumi.yaml and one settings file per stack."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: fleet\nruntime: python\nmain: infra/\n")
    for stack in STACKS:
        (project / f"Pulumi.{stack}.yaml").write_text(
            STAGING_SETTINGS if stack == "staging" else "config:\n  aws:region: eu-west-1\n"
        )
    return project


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray proposed state or Pulumi settings from the machine running the tests."""
    for name in (PROPOSED_STATE_ENV, "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["3.272.0", "3.205.0"], ids=["events-over-grpc", "events-in-log-file"])
def any_transport_pulumi(request, tmp_path: Path) -> RecordingPulumiCommand:
    """The double as a current CLI (engine events over gRPC) and as an older one (event log file)."""
    return RecordingPulumiCommand(tmp_path / "cli", version=request.param, stacks=("staging",))


@pytest.fixture
def pulumi(tmp_path: Path) -> RecordingPulumiCommand:
    """The double as a current CLI whose backend already has the staging stack."""
    return RecordingPulumiCommand(tmp_path / "cli", stacks=("staging",))
