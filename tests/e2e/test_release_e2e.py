"""Two releases through the real fleet CLI, the real pulumi CLI and its aws/awsx plugins,
against a moto server: the second release replaces the first create-before-destroy.

A local stack (automation/local_stack.py) in tmp_path, with a file state backend beside
it. Skipped where the pulumi CLI or its plugins are missing (tests/e2e/conftest.py).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import boto3
import pytest

from automation.local_aws import MotoServer
from automation.local_stack import LOCAL_STACK, PROJECT_DIR, prepare_local_project
from automation.rehearsal import bake, create_builder_profile, default_subnet

FIRST, SECOND = "1.0.0", "2.0.0"
# Creating a VPC, NAT, ALB and an ASG through the provider against moto; generous, but bounded.
COMMAND_TIMEOUT_S = 20 * 60
POLL_INTERVAL_S = 0.5
ASG_TYPE = "aws:autoscaling/group:Group"


@pytest.fixture
def local_stack(aws: MotoServer, tmp_path, monkeypatch) -> str:
    """The stack `local` on the moto server, in tmp_path, with its own file backend."""
    project = prepare_local_project(tmp_path / "project", endpoint=aws.endpoint)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("FLEET_PROJECT_DIR", str(project))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{state}")
    # Protects only this throwaway stack's secrets.
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "e2e-only-not-a-secret")
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return LOCAL_STACK


@pytest.fixture
def images(aws: MotoServer) -> dict[str, str]:
    """An image of the sample application per version, baked by the real `fleet ami bake`."""
    region = aws.env()["AWS_REGION"]
    create_builder_profile(region)
    subnet = default_subnet(region)
    made = {}
    for version in (FIRST, SECOND):
        code, image = bake(version, subnet)
        assert code == 0, f"fleet ami bake {version} exited {code}"
        made[version] = image
    return made


def fleet(*args: str) -> subprocess.CompletedProcess:
    """The real `fleet` command in this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "automation.cli", *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )


def succeeded(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{' '.join(done.args[3:])} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def groups_by_release(stack: str) -> dict[str, str]:
    """The stack's Auto Scaling Groups that exist now, by their fleet:release tag."""
    found = {}
    for page in boto3.client("autoscaling").get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[{"Name": "tag:fleet:stack", "Values": [stack]}]
    ):
        for group in page["AutoScalingGroups"]:
            tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
            if "fleet:release" in tags:
                found[tags["fleet:release"]] = group["AutoScalingGroupName"]
    return found


class GroupWatcher:
    """Samples which releases have an ASG, from a thread, while a deploy runs."""

    def __init__(self, stack: str):
        self.stack = stack
        self.samples: list[frozenset[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.samples.append(frozenset(groups_by_release(self.stack)))
            self._stop.wait(POLL_INTERVAL_S)  # sampling interval, not synchronisation

    def __enter__(self) -> "GroupWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def line_index(lines: list[str], pattern: str) -> int:
    for index, line in enumerate(lines):
        if re.fullmatch(pattern, line.strip()):
            return index
    raise AssertionError(f"no progress line matches {pattern!r} in:\n" + "\n".join(lines))


def test_second_release_replaces_the_first_create_before_destroy(local_stack, images):
    """The new release's ASG is created (and healthy) while the old one still exists, the old
    one is deleted only afterwards and is gone at the end, and status and history say so."""
    succeeded(fleet("apply", local_stack, "--yes"))
    succeeded(fleet("deploy", local_stack, "--release", FIRST, "--yes"))
    assert set(groups_by_release(local_stack)) == {FIRST}

    with GroupWatcher(local_stack) as watcher:
        second = succeeded(fleet("deploy", local_stack, "--release", SECOND, "--yes"))

    # The engine's own order: the new ASG's create completed before the old ASG's delete began.
    lines = second.stdout.splitlines()
    created = line_index(lines, rf"\+ create {re.escape(ASG_TYPE)} release-{re.escape(SECOND)}-asg( \[.*\])? done")
    deleting = line_index(lines, rf"- delete {re.escape(ASG_TYPE)} release-{re.escape(FIRST)}-asg( \[.*\])?")
    assert created < deleting
    # And what AWS showed meanwhile: both groups at once, never neither.
    assert any(sample == {FIRST, SECOND} for sample in watcher.samples), watcher.samples
    assert all(sample for sample in watcher.samples), "a moment with no release group: downtime"
    assert set(groups_by_release(local_stack)) == {SECOND}

    status = json.loads(succeeded(fleet("status", local_stack, "--json")).stdout)
    assert [(g["release"], g["ami"]) for g in status["groups"]] == [(SECOND, images[SECOND])]
    assert [h["release"] for h in status["health"]] == [SECOND] and status["healthy"] is True
    assert status["last"]["outcome"] == "released" and status["pending"] is False
    assert status["orphans"]["auto_scaling_groups"] == []

    history = json.loads(succeeded(fleet("history", local_stack, "--json")).stdout)["history"]
    released = [(entry["releases"], entry["amis"]) for entry in history if entry["outcome"] == "released"]
    assert released[0] == ([SECOND], [images[SECOND]])
    assert ([FIRST], [images[FIRST]]) in released[1:]
