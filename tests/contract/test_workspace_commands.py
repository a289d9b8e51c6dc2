"""The exact pulumi commands StackWorkspace runs, and what reaches their environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from automation.errors import BadInput, ExitCode
from automation.release_state import PROPOSED_STATE_ENV, ReleaseGroup, ReleaseState
from automation.workspace import StackWorkspace
from tests.support.recording_pulumi import RecordingPulumiCommand, prelude, summary

PROPOSED = ReleaseState(groups=(ReleaseGroup(release="1.4.2", ami="ami-0123456789abcdef0"),))
SELECT = ["--non-interactive", "stack", "select", "--stack", "staging"]


def event_log(argv: list[str]) -> str:
    return argv[argv.index("--event-log") + 1]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_unknown_stack_is_bad_input_and_runs_nothing(project_dir, pulumi):
    """An unknown stack name is refused with the known ones listed, before any pulumi command."""
    with pytest.raises(BadInput) as refused:
        StackWorkspace("prod", project_dir=project_dir, pulumi_command=pulumi)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert refused.value.reason == "stack 'prod' is unknown: expected one of integration, production, staging"
    assert pulumi.calls == []


def test_stray_proposed_state_in_environment_is_refused(project_dir, pulumi, monkeypatch):
    """A proposed state left in fleet's own environment would replace the stored state in every update."""
    monkeypatch.setenv(PROPOSED_STATE_ENV, PROPOSED.to_json())
    with pytest.raises(BadInput, match=PROPOSED_STATE_ENV):
        StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    assert pulumi.calls == []


def test_existing_stack_is_selected_not_created(project_dir, pulumi):
    """A stack the backend has is selected with --stack; no `stack init`."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).outputs()
    assert pulumi.argvs()[0] == SELECT
    assert not [c for c in pulumi.calls if c.command == "stack init"]


def test_stack_missing_in_backend_is_created_from_its_settings_file(project_dir, tmp_path):
    """A stack with a Pulumi.<stack>.yaml but no backend entry yet is initialised, then used."""
    pulumi = RecordingPulumiCommand(tmp_path / "cli", stacks=())
    StackWorkspace("integration", project_dir=project_dir, pulumi_command=pulumi).outputs()
    assert pulumi.argvs()[:2] == [
        ["--non-interactive", "stack", "select", "--stack", "integration"],
        ["--non-interactive", "stack", "init", "integration"],
    ]
    assert "integration" in pulumi.stacks


def test_stack_is_selected_once_per_workspace(project_dir, pulumi):
    """Several operations on one workspace select the stack once."""
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    workspace.outputs()
    workspace.preview()
    assert [c.command for c in pulumi.calls].count("stack select") == 1


def test_preview_argv(project_dir, pulumi):
    """preview: no --refresh, no colour codes, engine events to the SDK's event log, the stack named."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview()
    argv = pulumi.call("preview").argv
    assert argv == [
        "--non-interactive", "preview", "--color", "never", "--exec-kind", "auto.local",
        "--event-log", event_log(argv), "--stack", "staging",
    ]


def test_preview_passes_proposed_state_only_in_its_environment(project_dir, pulumi, tmp_path):
    """The proposed state reaches the program as FLEET_PROPOSED_RELEASE_STATE of the preview
    process only: not in argv, not in other commands, and nothing is written to the project."""
    before = snapshot(project_dir)
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    workspace.preview(PROPOSED)
    workspace.outputs()

    preview = pulumi.call("preview")
    assert ReleaseState.from_json(preview.env[PROPOSED_STATE_ENV]) == PROPOSED
    assert all(PROPOSED_STATE_ENV not in c.env for c in pulumi.calls if c is not preview)
    assert all(PROPOSED.to_json() not in " ".join(c.argv) for c in pulumi.calls)
    assert snapshot(project_dir) == before


def test_preview_of_stored_state_sets_no_proposed_state(project_dir, pulumi):
    """Without a state the program reads the stored one: the variable is absent."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview()
    assert PROPOSED_STATE_ENV not in pulumi.call("preview").env


def test_up_argv_and_proposed_state(project_dir, pulumi):
    """up: --yes --skip-preview (the caller has previewed and, for production, matched an
    approved plan), no colour codes, the proposed state in its environment; then outputs
    and the update summary without --show-secrets for the history."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).up(PROPOSED)
    up = pulumi.call("up")
    assert up.argv == [
        "--non-interactive", "up", "--yes", "--skip-preview", "--color", "never", "--exec-kind", "auto.local",
        "--event-log", event_log(up.argv), "--stack", "staging",
    ]
    assert ReleaseState.from_json(up.env[PROPOSED_STATE_ENV]) == PROPOSED
    assert pulumi.argvs()[2:] == [
        ["--non-interactive", "stack", "output", "--json", "--stack", "staging"],
        ["--non-interactive", "stack", "output", "--json", "--show-secrets", "--stack", "staging"],
        ["--non-interactive", "stack", "history", "--json", "--page-size", "1", "--page", "1", "--stack", "staging"],
    ]


def test_up_of_stored_state_sets_no_proposed_state(project_dir, pulumi):
    """up(None) converges to the stored release state: no proposed state is passed."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).up()
    assert PROPOSED_STATE_ENV not in pulumi.call("up").env


def test_refresh_argv(project_dir, pulumi):
    """refresh: --skip-preview --yes, events to the event log, the stack named; its summary
    is read without --show-secrets."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).refresh()
    refresh = pulumi.call("refresh")
    assert refresh.argv == [
        "--non-interactive", "refresh", "--skip-preview", "--yes", "--color", "never", "--exec-kind", "auto.local",
        "--event-log", event_log(refresh.argv), "--stack", "staging",
    ]
    assert pulumi.call("stack history").argv == [
        "--non-interactive", "stack", "history", "--json", "--page-size", "1", "--page", "1", "--stack", "staging",
    ]


def test_backend_and_passphrase_come_from_the_environment(project_dir, pulumi, monkeypatch):
    """PULUMI_BACKEND_URL and the passphrase reach every pulumi command from the process
    environment and are written nowhere."""
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://fleet-state")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse battery staple")
    before = snapshot(project_dir)
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi, env={"AWS_REGION": "eu-west-1"})
    workspace.preview()
    for call in pulumi.calls:
        assert call.env["PULUMI_BACKEND_URL"] == "s3://fleet-state"
        assert call.env["PULUMI_CONFIG_PASSPHRASE"] == "correct horse battery staple"
        assert call.env["AWS_REGION"] == "eu-west-1"
    assert snapshot(project_dir) == before


def test_outputs_are_plain_with_secrets_masked(project_dir, pulumi):
    """Outputs come back as plain values; a secret output only as "[secret]"."""
    pulumi.outputs = {
        "url": ("https://staging.example.com", False),
        "releaseGroups": ({"1.4.2": {"asgName": "web-1.4.2-a1b2", "capacity": 2}}, False),
        "dbPassword": ("hunter2", True),
    }
    outputs = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).outputs()
    assert outputs == {
        "url": "https://staging.example.com",
        "releaseGroups": {"1.4.2": {"asgName": "web-1.4.2-a1b2", "capacity": 2}},
        "dbPassword": "[secret]",
    }


def test_config_masks_secrets(project_dir, pulumi):
    """config() reports every key; secret values only as "[secret]"."""
    pulumi.config = {"aws:region": ("eu-west-1", False), "fleet:smokeToken": ("s3cr3t", True)}
    config = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).config()
    assert config == {"aws:region": "eu-west-1", "fleet:smokeToken": "[secret]"}
    assert pulumi.call("config").argv == ["--non-interactive", "config", "--show-secrets", "--json", "--stack", "staging"]


def test_outputs_are_read_once_until_an_update_changes_them(project_dir, pulumi):
    """Repeated reads cost one read's `pulumi stack output` calls; after an update the new
    outputs are served without reading again."""
    pulumi.outputs = {"url": ("http://old", False)}
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    assert workspace.outputs() == {"url": "http://old"}
    one_read = [call.command for call in pulumi.calls].count("stack output")   # the SDK asks twice per read
    assert workspace.outputs() == {"url": "http://old"}
    assert [call.command for call in pulumi.calls].count("stack output") == one_read
    pulumi.outputs = {"url": ("http://new", False)}
    assert workspace.up().outputs == {"url": "http://new"}
    reads = [call.command for call in pulumi.calls].count("stack output")
    assert workspace.outputs() == {"url": "http://new"}
    assert [call.command for call in pulumi.calls].count("stack output") == reads


def test_config_is_read_once_per_workspace(project_dir, pulumi):
    """A command asks for settings several times (region, gate, hash); one `pulumi config` serves them."""
    pulumi.config = {"aws:region": ("eu-west-1", False)}
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    workspace.config()
    workspace.settings_hash()
    assert workspace.config() == {"aws:region": "eu-west-1"}
    assert [call.command for call in pulumi.calls].count("config") == 1


def settings_hash(project_dir: Path, pulumi: RecordingPulumiCommand) -> str:
    pulumi.calls.clear()
    return StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).settings_hash()


def test_settings_hash_follows_every_setting_but_not_secret_plaintext(project_dir, pulumi):
    """The hash changes with any plain value, with a secret's ciphertext, with a new key;
    it is stable otherwise and never depends on a secret's plaintext."""
    pulumi.config = {"aws:region": ("eu-west-1", False), "fleet:smokeToken": ("s3cr3t", True)}
    base = settings_hash(project_dir, pulumi)
    assert len(base) == 64 and settings_hash(project_dir, pulumi) == base

    pulumi.config["fleet:smokeToken"] = ("another plaintext", True)
    assert settings_hash(project_dir, pulumi) == base

    pulumi.config["aws:region"] = ("eu-central-1", False)
    changed_value = settings_hash(project_dir, pulumi)
    assert changed_value != base

    settings = project_dir / "Pulumi.staging.yaml"
    settings.write_text(settings.read_text().replace("Zm9vYmFyYmF6cXV4", "cmVlbmNyeXB0ZWQ="))
    changed_secret = settings_hash(project_dir, pulumi)
    assert changed_secret != changed_value

    pulumi.config["fleet:minSize"] = ("2", False)
    assert settings_hash(project_dir, pulumi) != changed_secret


def test_settings_hash_follows_project_defaults(project_dir, pulumi):
    """A changed default in Pulumi.yaml is a changed setting for every stack that does not set it."""
    project = project_dir / "Pulumi.yaml"
    project.write_text(project.read_text() + "config:\n  instanceType:\n    type: string\n    default: t3.small\n")
    base = settings_hash(project_dir, pulumi)
    project.write_text(project.read_text().replace("default: t3.small", "default: t3.medium"))
    assert settings_hash(project_dir, pulumi) != base


def test_preview_summary_defaults(project_dir, pulumi):
    """A preview with nothing to do reports no changes and the summary's counts."""
    pulumi.events["preview"] = [prelude(), summary({"same": 12})]
    result = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview()
    assert result.changes == () and result.counts == {"same": 12}
