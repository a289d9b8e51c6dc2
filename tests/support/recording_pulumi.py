"""RecordingPulumiCommand: a test double for the pulumi CLI behind the Automation API.

It is a pulumi.automation.PulumiCommand subclass, passed to the workspace the way
a real one is (LocalWorkspaceOptions(pulumi_command=...)). For every command the
SDK runs it

1. decides a representative answer from the argv (stdout, stderr, exit code and,
   for preview/up/refresh, engine events),
2. delivers the engine events the way the CLI does: over the SDK's gRPC event
   server (`--event-log tcp://...`, CLI > 3.205) or as JSON lines in the event log
   file (older CLIs), ending with a cancelEvent,
3. lets the SDK's own PulumiCommand.run start a stand-in process, a few lines of
   sh that record the argv and environment they received and print the answer,
   so argv normalisation (--non-interactive), the environment and the SDK's error
   classification (locked stack, missing stack, ...) are the real ones.

No pulumi CLI, plugin or network is needed. The answers follow the formats of
pulumi 3.x (`config --json`, `stack output --json`, `stack history --json`,
engine events as in pulumi/sdk/go/common/apitype/events.go).
"""
from __future__ import annotations

import itertools
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pulumi.automation import PulumiCommand
from pulumi.runtime.proto import events_pb2, events_pb2_grpc
from semver import VersionInfo

PROJECT = "fleet"
RECORD_ENV = "RECORDING_PULUMI_ANSWER"

_STAND_IN = """#!/bin/sh
# Stand-in for the pulumi binary: record what it was started with, print the prepared answer.
printf '%s\\0' "$@" > "$RECORDING_PULUMI_ANSWER.argv"
env -0 > "$RECORDING_PULUMI_ANSWER.env"
cat "$RECORDING_PULUMI_ANSWER.stdout"
cat "$RECORDING_PULUMI_ANSWER.stderr" >&2
exit "$(cat "$RECORDING_PULUMI_ANSWER.code")"
"""

# The text pulumi prints for a stack that a DIY backend (file://, s3://) holds locked.
DIY_LOCK_STDERR = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete "
    "the lock file with `pulumi cancel`.\n"
    "  s3://fleet-state/.pulumi/locks/organization/fleet/{stack}/5f0c2a8e-9b1d-4c3e-8a7f-2d6b1e9c4a10.json: "
    "created by ci@runner-7 (pid 4242) at 2025-05-16T20:31:35Z"
)
# The text Pulumi Cloud answers with while another update runs.
CLOUD_LOCK_STDERR = "error: [409] Conflict: Another update is currently in progress."


@dataclass
class Answer:
    stdout: str = ""
    stderr: str = ""
    code: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    """One pulumi process as it was started: argv (after the binary) and environment."""

    argv: list[str]
    env: dict[str, str]
    cwd: str

    @property
    def command(self) -> str:
        """The subcommand words, e.g. 'stack select' or 'preview'."""
        words = [a for a in self.argv if not a.startswith("-")]
        return " ".join(words[:2]) if words and words[0] == "stack" else (words[0] if words else "")


class RecordingPulumiCommand(PulumiCommand):
    """Records every pulumi command and answers like the CLI would.

    `stacks` are the stacks the backend already has; `config` maps key ->
    (value, secret); `outputs` maps key -> (value, secret); `events[cmd]` are the
    engine events preview/up/refresh emit; `answers[cmd]` overrides the answer to
    a command (cmd as Call.command, e.g. "up" or "stack select").
    """

    def __init__(self, workdir: Path, *, version: str = "3.272.0", stacks: tuple[str, ...] = ()):
        # Deliberately not PulumiCommand.__init__: that runs `pulumi version`.
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.command = str(workdir / "pulumi")
        Path(self.command).write_text(_STAND_IN)
        os.chmod(self.command, os.stat(self.command).st_mode | stat.S_IXUSR)
        self.version = VersionInfo.parse(version)
        self.stacks: set[str] = set(stacks)
        self.config: dict[str, tuple[Any, bool]] = {}
        self.outputs: dict[str, tuple[Any, bool]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.answers: dict[str, Answer] = {}
        self.calls: list[Call] = []
        self._numbers = itertools.count(1)

    # -- what the SDK calls ---------------------------------------------------

    def run(self, args, cwd, additional_env, on_output=None, on_error=None):
        answer = self._answer(list(args))
        self._deliver(args, answer.events)
        record = str(self.workdir / f"call-{next(self._numbers)}")
        for suffix, text in (("stdout", answer.stdout), ("stderr", answer.stderr), ("code", str(answer.code))):
            Path(f"{record}.{suffix}").write_text(text)
        try:
            return super().run(args, cwd, {**additional_env, RECORD_ENV: record}, on_output, on_error)
        finally:
            self.calls.append(self._recorded(record, cwd))

    # -- queries for tests ----------------------------------------------------

    def argvs(self) -> list[list[str]]:
        return [call.argv for call in self.calls]

    def call(self, command: str) -> Call:
        """The one call of a command; fails the test if there is not exactly one."""
        matching = [c for c in self.calls if c.command == command]
        assert len(matching) == 1, f"expected one `pulumi {command}`, got {[c.argv for c in self.calls]}"
        return matching[0]

    # -- answers --------------------------------------------------------------

    def _answer(self, args: list[str]) -> Answer:
        command = Call(args, {}, "").command
        if command in self.answers:
            return self.answers[command]
        stack = _flag(args, "--stack")
        if command == "stack select":
            if stack in self.stacks:
                return Answer()
            return Answer(stderr=f"error: no stack named '{stack}' found", code=255)
        if command == "stack init":
            self.stacks.add(args[args.index("init") + 1])
            return Answer(stdout=f"Created stack '{args[args.index('init') + 1]}'")
        if command == "config":
            shown = "--show-secrets" in args
            return Answer(stdout=json.dumps({
                key: ({"value": _text(value), "secret": secret} if shown or not secret else {"secret": True})
                for key, (value, secret) in self.config.items()
            }))
        if command == "stack output":
            shown = "--show-secrets" in args
            return Answer(stdout=json.dumps({
                key: value if shown or not secret else "[secret]" for key, (value, secret) in self.outputs.items()
            }))
        if command == "stack history":
            return Answer(stdout=json.dumps([_history_entry()]))
        if command in ("preview", "up", "refresh"):
            return Answer(events=self.events.get(command, [prelude(), summary({})]))
        raise AssertionError(f"RecordingPulumiCommand has no answer for `pulumi {' '.join(args)}`")

    def _deliver(self, args: list[str], events: list[dict[str, Any]]) -> None:
        target = _flag(args, "--event-log")
        if target is None:
            return
        stamped = [
            {"sequence": n, "timestamp": int(time.time()), **event}
            for n, event in enumerate([*events, {"cancelEvent": {}}])
        ]
        if target.startswith("tcp://"):
            with grpc.insecure_channel(target[len("tcp://"):]) as channel:
                stream = events_pb2_grpc.EventsStub(channel).StreamEvents
                stream(iter([events_pb2.EventRequest(event=json.dumps(e)) for e in stamped]))
        else:
            with open(target, "a", encoding="utf-8") as log:
                log.writelines(json.dumps(e) + "\n" for e in stamped)

    def _recorded(self, record: str, cwd: str) -> Call:
        argv_file, env_file = Path(f"{record}.argv"), Path(f"{record}.env")
        argv = argv_file.read_bytes().split(b"\0")[:-1] if argv_file.exists() else []
        env_entries = env_file.read_bytes().split(b"\0")[:-1] if env_file.exists() else []
        env = dict(e.decode().split("=", 1) for e in env_entries if b"=" in e)
        env.pop(RECORD_ENV, None)
        return Call(argv=[a.decode() for a in argv], env=env, cwd=cwd)


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _history_entry() -> dict[str, Any]:
    return {
        "version": 1, "kind": "update", "startTime": "2025-05-16T20:31:35.000Z", "endTime": "2025-05-16T20:33:01.000Z",
        "message": "", "environment": {"exec.kind": "auto.local"}, "config": {}, "result": "succeeded",
        "resourceChanges": {},
    }


# -- representative engine events ---------------------------------------------

def urn(stack: str, type_: str, name: str, parent_type: str | None = None) -> str:
    qualified = f"{parent_type}${type_}" if parent_type else type_
    return f"urn:pulumi:{stack}::{PROJECT}::{qualified}::{name}"


def _metadata(op: str, type_: str, resource_urn: str, diffs=(), detailed=None) -> dict[str, Any]:
    """StepEventMetadata; detailed maps a property path to its diff kind ("update-replace", …)."""
    return {
        "op": op, "urn": resource_urn, "type": type_, "provider": "",
        "diffs": list(diffs) or None, "logical": True,
        "detailedDiff": {path: {"diffKind": kind, "inputDiff": True} for path, kind in (detailed or {}).items()} or None,
        "old": None if op in ("create", "create-replacement") else {"type": type_, "urn": resource_urn},
        "new": None if op in ("delete", "delete-replaced") else {"type": type_, "urn": resource_urn},
    }


def prelude() -> dict[str, Any]:
    return {"preludeEvent": {"config": {"aws:region": "eu-west-1"}}}


def step(op: str, type_: str, resource_urn: str, *, diffs=(), detailed=None, planning=True) -> dict[str, Any]:
    """A resourcePreEvent: the engine starts (or, in a preview, plans) a step."""
    return {"resourcePreEvent": {"metadata": _metadata(op, type_, resource_urn, diffs, detailed), "planning": planning}}


def step_done(op: str, type_: str, resource_urn: str, *, planning=True) -> dict[str, Any]:
    return {"resOutputsEvent": {"metadata": _metadata(op, type_, resource_urn), "planning": planning}}


def step_failed(op: str, type_: str, resource_urn: str) -> dict[str, Any]:
    return {"resOpFailedEvent": {"metadata": _metadata(op, type_, resource_urn), "status": 1, "steps": 0}}


def diagnostic(message: str, *, severity: str = "error", resource_urn: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"message": message, "color": "never", "severity": severity}
    if resource_urn:
        event["urn"] = resource_urn
    return {"diagnosticEvent": event}


def summary(counts: dict[str, int]) -> dict[str, Any]:
    return {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 3, "resourceChanges": counts, "PolicyPacks": {}}}
