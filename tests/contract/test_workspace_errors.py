"""Failures of the pulumi CLI as fleet reports them: one line, the documented exit code."""
from __future__ import annotations

import pytest

from automation.errors import BadInput, Blocked, ExitCode, ReleaseFailed
from automation.workspace import PreviewFailed, PulumiMissing, StackWorkspace, UpdateFailed
from tests.support.recording_pulumi import (
    CLOUD_LOCK_STDERR,
    DIY_LOCK_STDERR,
    Answer,
    diagnostic,
    prelude,
    step,
    step_failed,
    summary,
    urn,
)

ASG = "aws:autoscaling/group:Group"
NEW_ASG = urn("staging", ASG, "web-1.4.2-asg", parent_type="fleet:release:Group")
CAPACITY_TIMEOUT = (
    "waiting for Auto Scaling Group (web-1.4.2-asg-20250516) capacity satisfied: timeout while waiting for state "
    "to become 'ok' (last state: 'want at least 2 healthy instance(s) registered to Load Balancer, have 0', "
    "timeout: 10m0s)"
)


def workspace(project_dir, pulumi) -> StackWorkspace:
    return StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)


def test_locked_diy_stack_is_blocked_with_holder_and_clearing_command(project_dir, pulumi):
    """A stack a DIY backend holds locked is Blocked (exit 3) in one line naming the stack,
    who holds the lock, the lock file and `pulumi cancel`; the update is tried once, never retried."""
    pulumi.answers["up"] = Answer(stderr=DIY_LOCK_STDERR.format(stack="staging"), code=255)
    with pytest.raises(Blocked) as blocked:
        workspace(project_dir, pulumi).up()

    reason = blocked.value.reason
    assert blocked.value.exit_code == ExitCode.BLOCKED
    assert "\n" not in reason
    assert "stack 'staging' is locked by ci@runner-7 (pid 4242) since 2025-05-16T20:31:35Z" in reason
    assert "s3://fleet-state/.pulumi/locks/organization/fleet/staging/" in reason
    assert "`pulumi cancel --yes --stack staging`" in reason
    assert [c.command for c in pulumi.calls].count("up") == 1


def test_locked_cloud_stack_is_blocked(project_dir, pulumi):
    """Pulumi Cloud's 409 for an update in progress is Blocked too, with the clearing command."""
    pulumi.answers["preview"] = Answer(stderr=CLOUD_LOCK_STDERR, code=255)
    with pytest.raises(Blocked) as blocked:
        workspace(project_dir, pulumi).preview()
    assert "stack 'staging' is locked by another update in progress" in blocked.value.reason
    assert "pulumi cancel --yes --stack staging" in blocked.value.reason


def test_failed_update_carries_failing_resources_and_error_lines(project_dir, pulumi):
    """A failed up is UpdateFailed (exit 1) naming the failing resource and the engine's
    error, with the error lines kept for the rollback report; progress saw the step fail."""
    pulumi.answers["up"] = Answer(
        stdout="Updating (staging):\n@ updating....\n",
        stderr="error: update failed",
        code=255,
        events=[
            prelude(),
            step("create", ASG, NEW_ASG, planning=False),
            diagnostic(f"<{{%reset%}}>1 error occurred:\n\t* {CAPACITY_TIMEOUT}<{{%reset%}}>\n", resource_urn=NEW_ASG),
            step_failed("create", ASG, NEW_ASG),
            diagnostic("update failed"),
            summary({"create": 0}),
        ],
    )
    seen: list[tuple[str, str]] = []
    ws = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi,
                        on_change=lambda change, phase: seen.append((phase, change.name)))
    with pytest.raises(UpdateFailed) as failed:
        ws.up()

    assert seen == [("pre", "web-1.4.2-asg"), ("failed", "web-1.4.2-asg")]
    error = failed.value
    assert error.exit_code == ExitCode.FAILED
    assert [(c.op, c.type, c.name) for c in error.failed] == [("create", ASG, "web-1.4.2-asg")]
    assert error.error_lines == ("1 error occurred:", f"* {CAPACITY_TIMEOUT}", "update failed")
    assert error.reason == f"update of stack 'staging' failed at {ASG} web-1.4.2-asg: {CAPACITY_TIMEOUT}"


def test_failed_update_without_events_keeps_the_cli_error(project_dir, pulumi):
    """When the CLI fails before any engine event, its own error line is the reason."""
    pulumi.answers["up"] = Answer(
        stderr="error: could not load plugin for aws provider 'default_7_0_0': no resource plugin 'aws' found",
        code=255,
    )
    with pytest.raises(UpdateFailed) as failed:
        workspace(project_dir, pulumi).up()
    assert failed.value.failed == ()
    assert failed.value.reason.endswith("no resource plugin 'aws' found")


def test_failed_preview_is_preview_failed(project_dir, pulumi):
    """A program error in preview is PreviewFailed (exit 1) with the program's message."""
    pulumi.answers["preview"] = Answer(
        stdout="error: an unhandled error occurred: Program exited with non-zero exit code: 1",
        stderr="error: preview failed",
        code=255,
        events=[
            prelude(),
            diagnostic("Exception: setting fleet:minSize is 0: expected a whole number >= 1\n",
                       resource_urn=urn("staging", "pulumi:pulumi:Stack", "fleet-staging")),
            summary({}),
        ],
    )
    with pytest.raises(PreviewFailed) as failed:
        workspace(project_dir, pulumi).preview()
    assert failed.value.exit_code == ExitCode.FAILED
    assert failed.value.reason == (
        "preview of stack 'staging' failed: Exception: setting fleet:minSize is 0: expected a whole number >= 1"
    )


def test_missing_passphrase_is_bad_input(project_dir, pulumi):
    """A DIY stack without its passphrase in the environment is bad input naming the variables."""
    pulumi.answers["preview"] = Answer(
        stderr="error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
        "PULUMI_CONFIG_PASSPHRASE_FILE environment variables",
        code=255,
    )
    with pytest.raises(BadInput) as refused:
        workspace(project_dir, pulumi).preview()
    assert "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE" in refused.value.reason


def test_missing_cli_is_pulumi_missing(project_dir, tmp_path, monkeypatch):
    """Without a pulumi CLI on PATH the first operation stops (exit 3) saying how to install it."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
    ws = StackWorkspace("staging", project_dir=project_dir)
    with pytest.raises(PulumiMissing) as missing:
        ws.preview()
    assert missing.value.exit_code == ExitCode.BLOCKED
    assert "pulumi CLI is not installed" in missing.value.reason
    assert "https://get.pulumi.com" in missing.value.reason


def test_failure_to_read_outputs_is_one_line(project_dir, pulumi):
    """A CLI error while reading outputs becomes one line naming the stack and the error."""
    pulumi.answers["stack output"] = Answer(stderr="error: failed to load checkpoint: blob not found", code=255)
    with pytest.raises(ReleaseFailed) as failed:
        workspace(project_dir, pulumi).outputs()
    assert failed.value.reason == (
        "could not read the outputs of stack 'staging': error: failed to load checkpoint: blob not found"
    )
