"""docs/settings.md is what automation/settings_reference.py renders from Pulumi.yaml and the stack files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from automation import settings_reference
from automation.program_model import PROJECT_ROOT


def test_committed_reference_is_current():
    """A setting added to Pulumi.yaml or a stack file without regenerating the docs fails here."""
    committed = (PROJECT_ROOT / settings_reference.DOC).read_text(encoding="utf-8")
    assert committed == settings_reference.render(), (
        f"docs/settings.md is out of date: run `{settings_reference.WRITE_COMMAND}` and commit it"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Pulumi files to change."""
    for path in PROJECT_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_new_setting_gets_a_row_with_its_default_and_stack_values(project: Path):
    """Each schema key is a row: type, default, every stack's value (or "default"), description."""
    def add(data):
        data["config"]["drainMode"] = {"type": "string", "description": "How | to drain.", "default": "fast"}
    _edit(project / "Pulumi.yaml", add)
    _edit(project / "Pulumi.staging.yaml", lambda data: data["config"].update({"fleet:drainMode": "slow"}))
    row = next(line for line in settings_reference.render(project).splitlines() if "`fleet:drainMode`" in line)
    assert row == "| `fleet:drainMode` | string | `fast` | default | `slow` | default | How \\| to drain. |"


def test_network_layout_follows_the_stack_files(project: Path):
    """The network table shows each stack's VPC, subnets and NAT gateways as its file sets them."""
    _edit(project / "Pulumi.staging.yaml", lambda data: data["config"].update({"fleet:natStrategy": "OnePerAz"}))
    text = settings_reference.render(project)
    assert "| staging | 10.2.0.0/16 | 10.2.1.0/24, 10.2.2.0/24 | 10.2.11.0/24, 10.2.12.0/24 | one per zone |" in text
    assert "| integration | 10.1.0.0/16 | 10.1.1.0/24, 10.1.2.0/24 | 10.1.11.0/24, 10.1.12.0/24 | one |" in text


def test_an_undescribed_foreign_key_is_refused(project: Path):
    """A stack file setting another package's key the reference cannot describe stops the render, naming it."""
    _edit(project / "Pulumi.production.yaml", lambda data: data["config"].update({"aws:profile": "ops"}))
    with pytest.raises(ValueError, match="aws:profile"):
        settings_reference.render(project)
