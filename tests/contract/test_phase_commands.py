"""The pulumi commands behind each phase of each strategy, through RecordingPulumiCommand.

Every phase that changes something is one `pulumi up` of exactly its release state, passed in
FLEET_PROPOSED_RELEASE_STATE; a preview of a phase is one `pulumi preview` of that state and
changes nothing. Phases come from automation.strategies (release_phases, rollback_phases),
as automation/rollout.py runs them; a hold changes nothing, so it has no update.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from automation.release_state import PROPOSED_STATE_ENV, STRATEGIES, ReleaseGroup, ReleaseState
from automation.strategies import Phase, release_phases, rollback_phases
from automation.workspace import StackWorkspace
from tests.support.recording_pulumi import RecordingPulumiCommand

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
BASE = ReleaseState(groups=(ReleaseGroup("1.0.0", "ami-00000000000000001"),))
NEW = ReleaseGroup("2.0.0", "ami-00000000000000002")
# Commands that only read: anything else in a preview would be a change.
READ_ONLY = {"stack select", "preview"}
# What StackWorkspace.up runs besides `pulumi up`: selecting the stack, reading its outputs and the update summary.
UP_READS = {"stack select", "stack output", "stack history"}


def release_of(strategy: str) -> tuple[Phase, ...]:
    return release_phases(BASE, NEW, strategy=strategy, canary=1, now=NOW)


def applied(phases: tuple[Phase, ...]) -> list[Phase]:
    """The phases rollout applies with an update (a hold only watches)."""
    return [phase for phase in phases if not phase.is_hold]


def every_phase() -> list:
    """Each updating phase of each strategy's release, of the rollback after it, and of an abort
    from each phase a release can stop at (a crash, a hold, a failed verification)."""
    cases: dict[str, Phase] = {}
    for strategy in STRATEGIES:
        release = release_of(strategy)
        for phase in applied(release):
            cases[f"{strategy}-release-{phase.name}"] = phase
        for phase in applied(rollback_phases(release[-1].state, now=NOW, previous=BASE)):
            cases[f"{strategy}-rollback-{phase.name}"] = phase
        for stopped in release[:-1]:
            for phase in applied(rollback_phases(stopped.state, now=NOW, previous=BASE)):
                cases[f"{strategy}-abort-at-{stopped.name}-{phase.name}"] = phase
    return [pytest.param(phase, id=name) for name, phase in cases.items()]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def proposed(call) -> ReleaseState:
    return ReleaseState.from_json(call.env[PROPOSED_STATE_ENV])


def test_every_strategy_has_phases_to_check():
    """The parametrised cases cover releases, rollbacks and aborts of all three strategies."""
    names = [case.id for case in every_phase()]
    for strategy in STRATEGIES:
        assert any(n.startswith(f"{strategy}-release-") for n in names)
        assert any(n.startswith(f"{strategy}-rollback-") for n in names)
    assert "canary-abort-at-hold-rollback" in names and "standby-rollback-reactivate" in names


@pytest.mark.parametrize("phase", every_phase())
def test_phase_update_is_one_up_of_its_state(project_dir, pulumi, phase):
    """StackWorkspace.up(phase.state) runs exactly one `pulumi up`, with the phase's state (and
    nothing else) in FLEET_PROPOSED_RELEASE_STATE, and no preview, refresh or write of its own."""
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).up(phase.state)
    up = pulumi.call("up")
    assert proposed(up) == phase.state
    assert "--skip-preview" in up.argv
    # Besides the up, only the reads the SDK makes to report it: no preview, refresh or config write.
    assert {c.command for c in pulumi.calls if c is not up} <= UP_READS


@pytest.mark.parametrize("phase", every_phase())
def test_phase_preview_runs_preview_of_its_state_and_writes_nothing(project_dir, pulumi, phase):
    """A preview of a phase is one `pulumi preview` of its state; no update, no other command,
    nothing written to the project."""
    before = snapshot(project_dir)
    StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview(phase.state)
    assert proposed(pulumi.call("preview")) == phase.state
    assert {c.command for c in pulumi.calls} <= READ_ONLY
    assert snapshot(project_dir) == before


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_release_is_one_up_per_phase_in_order(project_dir, pulumi, strategy):
    """Applying a strategy's phases in one workspace gives one `pulumi up` per updating phase,
    in phase order, each with that phase's state; the stack is selected once."""
    phases = applied(release_of(strategy))
    workspace = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi)
    for phase in phases:
        workspace.up(phase.state)
    ups = [c for c in pulumi.calls if c.command == "up"]
    assert [proposed(c) for c in ups] == [p.state for p in phases]
    assert [c.command for c in pulumi.calls].count("stack select") == 1


def test_canary_hold_needs_no_update():
    """The hold declares the canary's own state: nothing to apply, so rollout runs no update for it."""
    release = release_of("canary")
    hold = next(p for p in release if p.is_hold)
    assert hold.state.same_groups(release[release.index(hold) - 1].state)
