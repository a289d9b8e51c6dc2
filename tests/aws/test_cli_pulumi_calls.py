"""Which pulumi commands each fleet command runs, end to end through the CLI.

The Pulumi CLI is played by RecordingPulumiCommand (tests/support/recording_pulumi.py), a test
double behind the real automation.workspace.StackWorkspace; SSM and AMI selection are the real
code against the moto server. This proves the exact Pulumi calls and that every refusal happens
before any of them changes anything; it says nothing about what real Pulumi would do with them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from automation import services
from automation.aws import client
from automation.cli import main
from automation.release_state import PROPOSED_STATE_ENV, ReleaseState
from automation.state_store import StateStore
from automation.workspace import StackWorkspace
from tests.support.recording_pulumi import DIY_LOCK_STDERR, Answer, RecordingPulumiCommand

pytestmark = pytest.mark.aws

STACK_FILES = {
    "integration": "config:\n  aws:region: us-east-1\n",
    "production": "config:\n  aws:region: us-east-1\n  fleet:requireApprovedPlan: true\n",
}


@pytest.fixture
def pulumi(aws, tmp_path, monkeypatch) -> dict[str, RecordingPulumiCommand]:
    """One CLI double per stack (each with that stack's config) behind real StackWorkspaces."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: fleet\nruntime: python\nmain: infra/\n")
    doubles = {}
    for stack, text in STACK_FILES.items():
        (project / f"Pulumi.{stack}.yaml").write_text(text)
        doubles[stack] = RecordingPulumiCommand(tmp_path / f"cli-{stack}", stacks=(stack,))
        doubles[stack].config = {"aws:region": ("us-east-1", False)}
    doubles["production"].config["fleet:requireApprovedPlan"] = ("true", False)

    def factory(stack: str, *, project_dir: Path, on_change):
        return StackWorkspace(stack, project_dir=project, pulumi_command=doubles[stack], on_change=on_change)

    monkeypatch.setattr(services, "workspace_factory", factory)
    monkeypatch.delenv(PROPOSED_STATE_ENV, raising=False)
    return doubles


def commands(double: RecordingPulumiCommand) -> list[str]:
    return [call.command for call in double.calls]


def test_preview_runs_one_pulumi_preview_of_the_proposed_state_and_writes_nothing(pulumi, images, capsys):
    """`fleet preview` selects the stack, reads config and outputs, and runs exactly one
    `pulumi preview` with the proposed state in its environment; no update, no SSM write."""
    assert main(["preview", "integration", "--release", "1.0.0", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    integration = pulumi["integration"]
    assert "up" not in commands(integration) and commands(integration).count("preview") == 1
    preview = integration.call("preview")
    assert "--stack" in preview.argv and preview.argv[preview.argv.index("--stack") + 1] == "integration"
    proposed = ReleaseState.from_json(preview.env[PROPOSED_STATE_ENV])
    assert [(g.release, g.ami) for g in proposed.groups] == [("1.0.0", images["1.0.0"])]
    assert plan["proposed"]["groups"] == [{"ami": images["1.0.0"], "release": "1.0.0", "role": "active"}]
    assert StateStore(client("ssm")).history("integration") == []


def test_gated_stack_without_plan_never_reaches_pulumi_up(pulumi, images, capsys):
    """Production without an approved plan: refused (exit 3) before any update or SSM write."""
    assert main(["deploy", "production", "--release", "1.0.0", "--yes"]) == 3
    assert "approved plan" in capsys.readouterr().err
    assert "up" not in commands(pulumi["production"]) and "preview" not in commands(pulumi["production"])
    assert StateStore(client("ssm")).history("production") == []


def test_stale_plan_is_refused_after_a_fresh_preview_and_before_any_update(pulumi, images, capsys, tmp_path):
    """A plan whose operations a fresh preview does not reproduce is refused: the deploy runs
    `pulumi preview` again and never `pulumi up`."""
    plan_file = tmp_path / "plan.json"
    assert main(["preview", "production", "--release", "1.0.0", "--out", str(plan_file)]) == 0
    plan = json.loads(plan_file.read_text())
    plan["operations"] = [["create", "aws:autoscaling/group:Group", "release-1.0.0-asg"]]
    plan_file.write_text(json.dumps(plan))
    production = pulumi["production"]
    production.calls.clear()
    assert main(["deploy", "production", "--release", "1.0.0", "--plan", str(plan_file), "--yes"]) == 3
    assert "a fresh preview does not" in capsys.readouterr().err
    assert commands(production).count("preview") == 1 and "up" not in commands(production)
    assert StateStore(client("ssm")).history("production") == []


def test_locked_stack_during_deploy_restores_the_state_and_exits_3(pulumi, images, capsys):
    """A lock met at `pulumi up`: exit 3 naming `pulumi cancel`, SSM back to what it was."""
    pulumi["integration"].answers["up"] = Answer(stderr=DIY_LOCK_STDERR.format(stack="integration"), code=255)
    assert main(["deploy", "integration", "--release", "1.0.0", "--yes"]) == 3
    err = capsys.readouterr().err
    assert "pulumi cancel --yes --stack integration" in err and len(err.strip().splitlines()) == 1
    assert StateStore(client("ssm")).read("integration").is_empty
