"""The e2e suite's gate: it skips only for a real reason, and says which."""
from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.e2e.conftest import missing_tooling


def put_pulumi_on_path(directory: Path, plugins: list[dict] | None, monkeypatch) -> None:
    """A stand-in `pulumi` whose `plugin ls --json` lists the given plugins."""
    directory.mkdir()
    script = directory / "pulumi"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(plugins)}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(directory))


def test_no_cli_is_a_reason_to_skip(tmp_path, monkeypatch):
    """Without pulumi on PATH the reason says the CLI is missing and where to get it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = missing_tooling()
    assert reason and "pulumi CLI is not installed" in reason and "pulumi.com/docs/install" in reason


def test_missing_plugin_is_named(tmp_path, monkeypatch):
    """With the CLI but only the aws plugin, the reason names awsx and how to install it."""
    put_pulumi_on_path(tmp_path / "bin", [{"name": "aws", "kind": "resource", "version": "7.0.0"}], monkeypatch)
    assert missing_tooling() == (
        "pulumi resource plugin(s) awsx not installed: run `pulumi plugin install resource awsx` (or `pulumi install`)"
    )


def test_no_plugins_at_all(tmp_path, monkeypatch):
    """`plugin ls --json` prints null when nothing is installed: both plugins are named."""
    put_pulumi_on_path(tmp_path / "bin", None, monkeypatch)
    assert "aws, awsx not installed" in missing_tooling()


def test_cli_and_plugins_present_means_run(tmp_path, monkeypatch):
    """With the CLI and both resource plugins the suite runs (no reason to skip)."""
    put_pulumi_on_path(tmp_path / "bin", [
        {"name": "aws", "kind": "resource", "version": "7.0.0"},
        {"name": "awsx", "kind": "resource", "version": "3.0.0"},
        {"name": "python", "kind": "language", "version": "3.272.0"},
    ], monkeypatch)
    assert missing_tooling() is None
