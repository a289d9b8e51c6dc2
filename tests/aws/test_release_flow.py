"""Release commands end to end through the CLI, against the moto server.

The Pulumi step is played by AwsProgramDouble (tests/support/aws_program_double.py), a test
double that makes the same AWS changes the program would; SSM, verification, orphan sweep and
AMI selection are the real code against the real moto server process.
"""
from __future__ import annotations

import pytest

from automation.aws import client
from automation.release_state import ReleaseGroup, ReleaseState
from automation.state_store import StateStore
from automation.workspace import UpdateFailed
from tests.aws.release_world import FAST, run, stack_asgs, stored

pytestmark = pytest.mark.aws

def test_two_releases_replace_create_before_destroy(stacks, images, capsys):
    """Release 1 then 2: the new group is created and verified before the old one is deleted;
    SSM holds the new state; status and history report it."""
    code, data, _ = run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", "--json", *FAST)
    assert code == 0 and data["outcome"] == "released"
    first_asg = stack_asgs("integration")
    assert len(first_asg) == 1 and data["health"][0]["healthy"] == 1

    stacks.events.clear()
    code, data, _ = run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", "--json", *FAST)
    assert code == 0 and data["groups"] == [{"release": "2.0.0", "ami": images["2.0.0"], "role": "active"}]
    created = stacks.events.index(("create", "release-2.0.0-asg", "done"))
    deleted = stacks.events.index(("delete", "release-1.0.0-asg", "pre"))
    assert created < deleted
    assert stored("integration").same_groups(ReleaseState(groups=(ReleaseGroup("2.0.0", images["2.0.0"]),)))
    assert len(stack_asgs("integration")) == 1 and stack_asgs("integration") != first_asg

    code, status, _ = run(capsys, "status", "integration", "--json")
    assert code == 0 and status["healthy"] and [g["release"] for g in status["groups"]] == ["2.0.0"]
    assert status["last"]["outcome"] == "released" and not status["pending"]
    code, history, _ = run(capsys, "history", "integration", "--json")
    assert [(e["releases"], e["outcome"]) for e in history["history"]] == [(["2.0.0"], "released"), (["1.0.0"], "released")]


def test_same_release_again_changes_nothing(stacks, images, capsys):
    """Re-running a finished deploy verifies and reports unchanged; no new state version."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    versions = len(StateStore(client("ssm")).history("integration"))
    code, data, _ = run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", "--json", *FAST)
    assert code == 0 and data["outcome"] == "unchanged"
    assert len(StateStore(client("ssm")).history("integration")) == versions


def test_unhealthy_release_rolls_back_to_a_verified_old_release(stacks, images, capsys):
    """New instances unhealthy after the update: exit 1, previous state restored and applied,
    release 1.0.0 verified serving again, the new group gone."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    stacks.knobs["integration"] = {"unhealthy_release": "2.0.0"}
    code, _, err = run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", *FAST)
    assert code == 1
    assert "release 2.0.0 failed on integration" in err and "rolled back to 1.0.0" in err
    assert stored("integration").groups == (ReleaseGroup("1.0.0", images["1.0.0"]),)
    assert stored("integration").record.outcome == "rolled-back"
    assert len(stack_asgs("integration")) == 1
    code, status, _ = run(capsys, "status", "integration", "--json")
    assert status["healthy"] and status["last"]["outcome"] == "rolled-back"
    assert [(h["release"], h["healthy"]) for h in status["health"]] == [("1.0.0", 1)]


def test_update_failure_leaves_no_orphan(stacks, images, capsys):
    """A failed update that loses its new ASG (pulumi-aws #5178) is rolled back and the orphan swept."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    old_asg = stack_asgs("integration")
    stacks.knobs["integration"] = {"fail_next_up_for_release": "2.0.0"}
    code, _, err = run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", *FAST)
    assert code == 1 and "rolled back to 1.0.0" in err
    assert stack_asgs("integration") == old_asg
    code, status, _ = run(capsys, "status", "integration", "--json")
    assert not any(status["orphans"].values())


def test_crashed_deploy_resumes_on_rerun(stacks, images, capsys):
    """A deploy killed during its update (the process dies: no rollback runs) leaves an in-flight
    state; status reports it pending and the same command run again resumes and converges."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    double = stacks.doubles["integration"]
    real_up = double.up

    def killed(state=None):
        real_up(state)
        raise SystemExit(137)   # the CI job is killed after the update, before verification

    double.up = killed
    assert run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", *FAST)[0] == 137
    double.up = real_up
    assert stored("integration").record.outcome == "in-flight"
    code, status, _ = run(capsys, "status", "integration", "--json")
    assert status["pending"]
    code, data, err = run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", "--json", *FAST)
    assert code == 0 and data["outcome"] == "released" and "resuming release 2.0.0" in err
    assert stored("integration").record.outcome == "released"
    assert [g.release for g in stored("integration").groups] == ["2.0.0"]


def test_rollback_command_returns_to_previous_release(stacks, images, capsys):
    """`fleet rollback` goes back to the release before the current one, the same safe way."""
    for version in ("1.0.0", "2.0.0"):
        assert run(capsys, "deploy", "integration", "--release", version, "--yes", *FAST)[0] == 0
    code, data, _ = run(capsys, "rollback", "integration", "--yes", "--json", *FAST)
    assert code == 0 and [g["release"] for g in data["groups"]] == ["1.0.0"]
    assert [g.release for g in stored("integration").groups] == ["1.0.0"]
    code, _, err = run(capsys, "rollback", "integration", "--to", "9.9.9", "--yes", *FAST)
    assert code == 3 and "no release 9.9.9" in err


def test_production_needs_a_matching_approved_plan(stacks, images, capsys, tmp_path):
    """Production deploys only a previewed plan that still matches; every refusal is exit 3 and
    leaves the stack as it was."""
    code, _, err = run(capsys, "deploy", "production", "--release", "1.0.0", "--yes")
    assert code == 3 and "approved plan" in err
    assert stored("production").is_empty and stack_asgs("production") == []

    plan = tmp_path / "production.plan.json"
    assert run(capsys, "preview", "production", "--release", "1.0.0", "--out", str(plan))[0] == 0
    assert stored("production").is_empty and stack_asgs("production") == []

    code, _, err = run(capsys, "deploy", "production", "--release", "2.0.0", "--plan", str(plan), "--yes")
    assert code == 3 and "this deploy proposes 2.0.0" in err

    code, _, err = run(capsys, "deploy", "staging", "--release", "1.0.0", "--plan", str(plan), "--yes")
    assert code == 3 and "for stack 'production', not 'staging'" in err
    assert stored("staging").is_empty

    code, data, _ = run(capsys, "deploy", "production", "--release", "1.0.0", "--plan", str(plan), "--yes", "--json", *FAST)
    assert code == 0 and data["outcome"] == "released"

    code, _, err = run(capsys, "deploy", "production", "--release", "2.0.0", "--plan", str(plan), "--yes")
    assert code == 3 and "the stack now runs 1.0.0" in err


def test_promote_releases_the_same_ami_downstream(stacks, images, capsys):
    """promote takes the AMI live in the source, checks its release succeeded, releases it to the target."""
    code, _, err = run(capsys, "promote", "--from", "integration", "--to", "staging", "--yes")
    assert code == 3 and "no release to promote" in err
    assert run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", *FAST)[0] == 0
    code, data, _ = run(capsys, "promote", "--from", "integration", "--to", "staging", "--yes", "--json", *FAST)
    assert code == 0 and data["groups"] == [{"release": "2.0.0", "ami": images["2.0.0"], "role": "active"}]


@pytest.mark.parametrize(
    "argv, code, fragment",
    [
        (["deploy", "nowhere", "--release", "1.0.0", "--yes"], 2, "stack 'nowhere' is unknown"),
        (["deploy", "integration", "--release", "1 0", "--yes"], 2, "'1 0' is malformed"),
        (["deploy", "integration", "--release", "7.7.7", "--yes"], 2, "no image of app web version 7.7.7"),
        (["deploy", "integration", "--yes"], 2, "expected --release VERSION or --ami"),
        (["deploy", "integration", "--release", "1.0.0", "--plan", "/nonexistent/plan.json"], 2, "does not exist"),
        (["deploy", "integration", "--release", "1.0.0"], 3, "needs confirmation"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(stacks, images, capsys, argv, code, fragment):
    """Unknown stack, malformed version, missing AMI, missing plan, no confirmation: one line, nothing changed."""
    got, _, err = run(capsys, *argv)
    assert got == code and fragment in err
    assert len(err.strip().splitlines()) == 1
    assert stored("integration").is_empty and stack_asgs("integration") == []


def test_failed_rollback_needs_a_person(stacks, images, capsys):
    """When the update fails and so does the update that restores the previous release: exit 4,
    one line saying a person is needed, the state recorded as failed, and status says so."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    double = stacks.doubles["integration"]

    def broken(state=None):
        raise UpdateFailed("update failed: aws:autoscaling/group:Group release-x-asg: capacity not satisfied")

    double.up = broken
    code, _, err = run(capsys, "deploy", "integration", "--release", "2.0.0", "--yes", *FAST)
    assert code == 4
    assert "a person is needed" in err and len(err.strip().splitlines()) == 1
    assert stored("integration").record.outcome == "failed"
    code, history, _ = run(capsys, "history", "integration", "--json")
    assert history["history"][0]["outcome"] == "failed"


def test_failed_settings_apply_keeps_the_release_and_verifies_it(stacks, images, capsys):
    """`fleet apply` whose update fails: nothing to re-apply (the groups did not change), so the
    running release is verified serving, recorded as rolled back, and the command exits 1."""
    assert run(capsys, "deploy", "integration", "--release", "1.0.0", "--yes", *FAST)[0] == 0
    double = stacks.doubles["integration"]
    real_up = double.up
    calls = []

    def failing(state=None):
        calls.append(state)
        raise UpdateFailed("update failed: aws:ec2/launchTemplate:LaunchTemplate release-1.0.0-lt: bad user data")

    double.up = failing
    code, _, err = run(capsys, "apply", "integration", "--yes", *FAST)
    double.up = real_up
    assert code == 1 and "apply settings failed on integration" in err
    assert len(calls) == 1   # the failed update only: the unchanged release is verified, not re-applied
    assert [g.release for g in stored("integration").groups] == ["1.0.0"]
    assert stored("integration").record.outcome == "rolled-back"
