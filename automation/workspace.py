"""fleet's one door to the Pulumi Automation API: select a stack, preview, update,
refresh, read outputs and config. The only module that imports pulumi.automation.

The Pulumi CLI does the work; this module decides the exact commands, passes a
proposed release state to the program through an environment variable (never a
file), turns engine events into plain results, and turns CLI failures into
fleet's one-line errors:

- a locked stack is Blocked (exit 3) naming the lock and the command that clears it;
  there is no retry loop;
- a missing or unusable pulumi CLI is PulumiMissing (exit 3);
- a failed preview is PreviewFailed, a failed update UpdateFailed (both exit 1),
  carrying the failing resources and the last error lines.

The backend (PULUMI_BACKEND_URL, PULUMI_ACCESS_TOKEN) and the secrets passphrase
(PULUMI_CONFIG_PASSPHRASE, PULUMI_CONFIG_PASSPHRASE_FILE) come from the process
environment, which the Automation API hands to every pulumi command; fleet never
stores them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from pulumi.automation import (
    CommandError,
    ConcurrentUpdateError,
    EngineEvent,
    LocalWorkspaceOptions,
    PulumiCommand,
    Stack,
    create_or_select_stack,
)
from pulumi.automation.errors import InvalidVersionError

from automation.errors import BadInput, Blocked, ReleaseFailed
from automation.release_state import PROPOSED_STATE_ENV, ReleaseState

PROJECT_DIR = Path(__file__).resolve().parent.parent

SECRET = "[secret]"
SAME = "same"
# How many error lines a failure keeps for people (and for rollout's report).
ERROR_LINES_KEPT = 5

INSTALL_HINT = "install it with `curl -fsSL https://get.pulumi.com | sh` (see https://www.pulumi.com/docs/install/)"



def install_cli(root: str) -> None:
    """Install the Pulumi CLI into root with the installer the Automation API provides
    (downloads it; the rehearsal runs this in a process of its own to bound its time)."""
    PulumiCommand.install(root=root)

class PulumiMissing(Blocked):
    """The pulumi CLI is not installed or not usable. Nothing was changed."""


class PreviewFailed(ReleaseFailed):
    """A preview failed. Nothing was changed."""

    def __init__(self, reason: str, *, error_lines: tuple[str, ...] = ()):
        super().__init__(reason)
        self.error_lines = error_lines


class UpdateFailed(ReleaseFailed):
    """An update failed part way: the caller restores the previous release."""

    def __init__(self, reason: str, *, failed: tuple["ResourceChange", ...] = (), error_lines: tuple[str, ...] = ()):
        super().__init__(reason)
        self.failed = failed
        self.error_lines = error_lines


@dataclass(frozen=True)
class ResourceChange:
    """One step of the engine on one resource."""

    op: str
    type: str
    name: str
    urn: str
    diffs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "type": self.type, "name": self.name, "urn": self.urn, "diffs": list(self.diffs)}


@dataclass(frozen=True)
class PreviewResult:
    changes: tuple[ResourceChange, ...]
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.changes], "counts": dict(sorted(self.counts.items()))}

    def operations(self) -> list[tuple[str, str, str]]:
        """What a plan compares: each resource operation, in a stable order."""
        return sorted((c.op, c.type, c.name) for c in self.changes)


@dataclass(frozen=True)
class UpResult:
    counts: dict[str, int]
    outputs: dict[str, Any]


def known_stacks(project_dir: Path) -> list[str]:
    """The stacks this project declares: one Pulumi.<stack>.yaml each."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))


class StackWorkspace:
    """One stack of the fleet project, driven through the Automation API.

    The stack is selected on first use (created in the backend if only its
    Pulumi.<stack>.yaml exists yet), so constructing this is cheap and checks only
    the stack name. `env` adds variables to every pulumi command on top of the
    process environment. on_change(change, phase) reports update and refresh
    steps as they happen: phase "pre" when a step starts, "done" when it
    finished, "failed" when it failed; it is called from an event thread.
    """

    def __init__(
        self,
        stack: str,
        *,
        project_dir: Path = PROJECT_DIR,
        env: Mapping[str, str] | None = None,
        pulumi_command: PulumiCommand | None = None,
        on_change: Callable[[ResourceChange, str], None] | None = None,
    ):
        stacks = known_stacks(project_dir)
        if stack not in stacks:
            raise BadInput(f"stack {stack!r} is unknown: expected one of {', '.join(stacks) or '(no Pulumi.<stack>.yaml found)'}")
        # A stray proposed state in fleet's own environment would silently replace the
        # stored release state in every update; fleet sets it only per command.
        if PROPOSED_STATE_ENV in os.environ or (env and PROPOSED_STATE_ENV in env):
            raise BadInput(
                f"{PROPOSED_STATE_ENV} is set in the environment: unset it; fleet sets it itself, only for a preview "
                "or an update of a proposed release state"
            )
        self.stack_name = stack
        self.project_dir = project_dir
        self._config: dict[str, str] | None = None
        self._outputs: dict[str, Any] | None = None
        self._env = dict(env or {})
        self._pulumi_command = pulumi_command
        self._on_change = on_change
        self._stack: Stack | None = None

    # -- reads ---------------------------------------------------------------

    def outputs(self) -> dict[str, Any]:
        """The stack outputs as plain values; secret ones as "[secret]". Read once until the
        next update or refresh changes them: each read is a pulumi process."""
        if self._outputs is None:
            self._outputs = _plain_outputs(self._read("outputs", lambda stack: stack.outputs()))
        return dict(self._outputs)

    def config(self) -> dict[str, str]:
        """The stack's config, secret values masked as "[secret]". Read once per workspace:
        a fleet command never changes it, and each read is a pulumi process."""
        if self._config is None:
            config = self._read("config", lambda stack: stack.get_all_config())
            self._config = {key: SECRET if value.secret else value.value for key, value in sorted(config.items())}
        return dict(self._config)

    def settings_hash(self) -> str:
        """sha256 over every setting: the stack's config keys and values and the
        defaults Pulumi.yaml declares. A secret counts by its ciphertext in
        Pulumi.<stack>.yaml, so changing a secret changes the hash without the
        hash ever depending on (or revealing) the plaintext."""
        ciphertexts = self._secret_ciphertexts()
        settings = {
            "config": {
                key: {"secure": ciphertexts.get(key, SECRET)} if value == SECRET else value
                for key, value in self.config().items()
            },
            "defaults": self._project_defaults(),
        }
        canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    # -- operations ------------------------------------------------------------

    def preview(self, state: ReleaseState | None = None) -> PreviewResult:
        """What an update would change. With a state, the program declares that
        proposed state instead of the stored one; nothing is persisted."""
        events = _EventCollector(on_change=None)

        def run(stack: Stack):
            with self._proposed_state(state):
                return stack.preview(on_event=events, color="never")

        try:
            self._run(run)
        # The SDK raises a plain RuntimeError when the CLI ended without a summary event.
        except (CommandError, RuntimeError) as error:
            lines = events.error_lines() or _stderr_error_lines(error)
            raise PreviewFailed(
                f"preview of stack {self.stack_name!r} failed: {events.cause() or _last(lines)}", error_lines=lines
            ) from error
        return PreviewResult(changes=events.changes(), counts=events.counts())

    def up(self, state: ReleaseState | None = None) -> UpResult:
        """Apply the program: the proposed state if given, else the stored one.
        No preview first (--skip-preview): the caller has previewed, and for
        production compared that preview with an approved plan."""
        events = _EventCollector(on_change=self._on_change)

        def run(stack: Stack):
            with self._proposed_state(state):
                return stack.up(on_event=events, color="never", show_secrets=False)

        self._outputs = None   # whatever happens, the outputs may change
        try:
            result = self._run(run)
        except CommandError as error:
            lines = events.error_lines() or _stderr_error_lines(error)
            failed = events.failed()
            where = f" at {', '.join(f'{c.type} {c.name}' for c in failed)}" if failed else ""
            raise UpdateFailed(
                f"update of stack {self.stack_name!r} failed{where}: {events.cause() or _last(lines)}",
                failed=failed,
                error_lines=lines,
            ) from error
        self._outputs = _plain_outputs(result.outputs)
        return UpResult(counts=events.counts(), outputs=dict(self._outputs))

    def refresh(self) -> None:
        """Bring the stack's state in line with what exists in AWS."""
        events = _EventCollector(on_change=self._on_change)
        self._outputs = None
        try:
            self._run(lambda stack: stack.refresh(on_event=events, color="never", show_secrets=False))
        except CommandError as error:
            lines = events.error_lines() or _stderr_error_lines(error)
            raise ReleaseFailed(
                f"refresh of stack {self.stack_name!r} failed: {events.cause() or _last(lines)}"
            ) from error

    # -- plumbing --------------------------------------------------------------

    def _run(self, operation: Callable[[Stack], Any]) -> Any:
        """Run one operation on the selected stack. A lock becomes Blocked and an
        environment problem BadInput; other CLI failures go to the caller."""
        stack = self._selected()
        try:
            return operation(stack)
        except ConcurrentUpdateError as error:
            raise self._locked(error) from error
        except CommandError as error:
            _raise_environment_problem(self.stack_name, error)
            raise

    def _read(self, what: str, operation: Callable[[Stack], Any]) -> Any:
        try:
            return self._run(operation)
        except CommandError as error:
            raise ReleaseFailed(
                f"could not read the {what} of stack {self.stack_name!r}: {_last(_stderr_error_lines(error))}"
            ) from error

    def _selected(self) -> Stack:
        if self._stack is None:
            command = self._pulumi_command or _installed_pulumi()
            options = LocalWorkspaceOptions(env_vars=dict(self._env), pulumi_command=command)
            try:
                self._stack = create_or_select_stack(self.stack_name, work_dir=str(self.project_dir), opts=options)
            except ConcurrentUpdateError as error:
                raise self._locked(error) from error
            except CommandError as error:
                _raise_environment_problem(self.stack_name, error)
                raise ReleaseFailed(
                    f"could not select or create stack {self.stack_name!r}: {_last(_stderr_error_lines(error))}"
                ) from error
        return self._stack

    def _proposed_state(self, state: ReleaseState | None) -> "_ProposedState":
        return _ProposedState(self._selected().workspace, self._env, state)

    def _locked(self, error: CommandError) -> Blocked:
        stderr = _stderr(error)
        holders = [f"{m.group(2)} since {m.group(3)} (lock file {m.group(1)})" for m in _LOCK_HOLDER.finditer(stderr)]
        held = f"locked by {'; '.join(holders)}" if holders else "locked by another update in progress"
        return Blocked(
            f"stack {self.stack_name!r} is {held}: wait for that update to finish, or if it is no longer "
            f"running, clear the lock with `pulumi cancel --yes --stack {self.stack_name}` and re-run; nothing was changed"
        )

    def _secret_ciphertexts(self) -> dict[str, str]:
        config = _yaml_file(self.project_dir / f"Pulumi.{self.stack_name}.yaml").get("config") or {}
        return {
            key: value["secure"] for key, value in config.items() if isinstance(value, dict) and "secure" in value
        }

    def _project_defaults(self) -> dict[str, Any]:
        schema = _yaml_file(self.project_dir / "Pulumi.yaml").get("config") or {}
        return {key: spec.get("default") if isinstance(spec, dict) else spec for key, spec in schema.items()}


class _ProposedState:
    """Sets the proposed release state in the environment of the commands run
    inside the block, and only there."""

    def __init__(self, workspace, base_env: Mapping[str, str], state: ReleaseState | None):
        self.workspace = workspace
        self.base_env = dict(base_env)
        self.state = state

    def __enter__(self) -> None:
        env = dict(self.base_env)
        if self.state is not None:
            env[PROPOSED_STATE_ENV] = self.state.to_json()
        self.workspace.env_vars = env

    def __exit__(self, *exc_info) -> None:
        self.workspace.env_vars = dict(self.base_env)


class _EventCollector:
    """Receives engine events (from the SDK's event thread) and keeps what
    fleet needs: resource steps, failures, error diagnostics, the summary."""

    def __init__(self, on_change: Callable[[ResourceChange, str], None] | None):
        self.on_change = on_change
        self._lock = threading.Lock()
        self._steps: list[ResourceChange] = []
        self._failed: dict[str, ResourceChange] = {}
        self._errors: list[str] = []
        self._resource_errors: list[str] = []
        self._error_urns: list[str] = []
        self._summary: dict[str, int] = {}

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            phase, change = self._record(event)
        if change is not None and self.on_change is not None and change.op != SAME:
            self.on_change(change, phase)

    def _record(self, event: EngineEvent) -> tuple[str, ResourceChange | None]:
        if event.resource_pre_event:
            change = _change(event.resource_pre_event.metadata)
            self._steps.append(change)
            return "pre", change
        if event.res_outputs_event:
            return "done", _change(event.res_outputs_event.metadata)
        if event.res_op_failed_event:
            change = _change(event.res_op_failed_event.metadata)
            self._failed.setdefault(change.urn, change)
            return "failed", change
        if event.diagnostic_event and event.diagnostic_event.severity == "error":
            diagnostic = event.diagnostic_event
            lines = _message_lines(diagnostic.message)
            self._errors.extend(lines)
            if diagnostic.urn:
                self._error_urns.append(diagnostic.urn)
                self._resource_errors.extend(lines)
        if event.summary_event:
            self._summary = {str(_op_name(op)): int(n) for op, n in event.summary_event.resource_changes.items()}
        return "", None

    def changes(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self._steps if c.op != SAME)

    def counts(self) -> dict[str, int]:
        return dict(self._summary)

    def failed(self) -> tuple[ResourceChange, ...]:
        failed = dict(self._failed)
        by_urn = {c.urn: c for c in self._steps}
        for urn in self._error_urns:
            if urn not in failed and urn in by_urn:
                failed[urn] = by_urn[urn]
        return tuple(failed.values())

    def error_lines(self) -> tuple[str, ...]:
        return tuple(self._errors[-ERROR_LINES_KEPT:])

    def cause(self) -> str | None:
        """The last error a resource or the program reported: the line that says why."""
        return self._resource_errors[-1].lstrip("* ") if self._resource_errors else None


def _change(metadata) -> ResourceChange:
    detailed = metadata.detailed_diff or {}
    properties = set(metadata.diffs or ()) | {_top_level(path) for path in detailed}
    return ResourceChange(
        op=_op_name(metadata.op),
        type=metadata.type,
        name=metadata.urn.rsplit("::", 1)[-1],
        urn=metadata.urn,
        diffs=tuple(sorted(properties)),
    )


def _op_name(op: Any) -> str:
    return getattr(op, "value", op)


def _top_level(path: str) -> str:
    """'tags.Name' -> 'tags', 'ingress[0].cidr' -> 'ingress', '["a.b"]' -> 'a.b'."""
    quoted = re.match(r'^\["([^"]+)"\]', path)
    if quoted:
        return quoted.group(1)
    return re.split(r"[.\[]", path, maxsplit=1)[0]


# Pulumi's colour markup, e.g. <{%reset%}>, which diagnostics may carry.
_COLOUR = re.compile(r"<\{%[^%]*%\}>")
# "  s3://bucket/.pulumi/locks/organization/fleet/staging/<id>.json: created by ci@host (pid 7) at 2025-…"
_LOCK_HOLDER = re.compile(r"^\s*(\S+\.json): created by (.+) at (\S+)$", re.MULTILINE)

# CLI messages that mean the environment is not set up: bad input, nothing changed.
_ENVIRONMENT_PROBLEMS = (
    (
        "passphrase must be set",
        "the secrets passphrase of stack {stack!r} is not set: expected PULUMI_CONFIG_PASSPHRASE or "
        "PULUMI_CONFIG_PASSPHRASE_FILE in the environment",
    ),
    (
        "incorrect passphrase",
        "the secrets passphrase of stack {stack!r} is wrong: expected the passphrase the stack was created with "
        "in PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE",
    ),
    (
        "PULUMI_ACCESS_TOKEN must be set",
        "no Pulumi backend is configured for stack {stack!r}: expected PULUMI_BACKEND_URL (e.g. s3://bucket or "
        "file://dir) or PULUMI_ACCESS_TOKEN for Pulumi Cloud in the environment",
    ),
)


def _raise_environment_problem(stack: str, error: CommandError) -> None:
    text = str(error)
    for marker, message in _ENVIRONMENT_PROBLEMS:
        if marker in text:
            raise BadInput(message.format(stack=stack)) from error


def _installed_pulumi() -> PulumiCommand:
    try:
        return PulumiCommand()
    except FileNotFoundError:
        raise PulumiMissing(
            f"the pulumi CLI is not installed (no `pulumi` on PATH): {INSTALL_HINT}; nothing was changed"
        ) from None
    except (InvalidVersionError, OSError, subprocess.CalledProcessError) as error:
        raise PulumiMissing(f"the installed pulumi CLI is not usable: {error} ({INSTALL_HINT})") from None


def _yaml_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: SECRET if output.secret else output.value for key, output in outputs.items()}


def _stderr(error: Exception) -> str:
    # CommandError keeps only str(CommandResult): "\n code: …\n stdout: …\n stderr: …".
    text = str(error)
    return text.partition("\n stderr: ")[2] or text


def _stderr_error_lines(error: Exception) -> tuple[str, ...]:
    lines = _message_lines(_stderr(error))
    errors = [line for line in lines if line.startswith("error:")]
    return tuple((errors or lines)[-ERROR_LINES_KEPT:])


def _message_lines(message: str) -> list[str]:
    return [line.strip() for line in _COLOUR.sub("", message).splitlines() if line.strip()]


def _last(lines: tuple[str, ...]) -> str:
    return lines[-1] if lines else "no error message from pulumi (run with --debug)"
