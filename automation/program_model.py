"""Runs the Pulumi program in this process under pulumi.runtime mocks, and records what it declares.

No Pulumi CLI, no provider plugins and no AWS credentials: ModelEngine stands in for the engine and
the AWS provider, answering each registration with the outputs AWS would compute (ids, ARNs, the
launch template's version) and the SSM read with a given stored release state. The program runs by
path with runpy, as Pulumi runs `main:` from Pulumi.yaml, with the stack's real config (Pulumi.yaml
defaults overlaid with Pulumi.<stack>.yaml). `fleet graph` draws from it; the program's unit tests
assert on it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_root_resource, set_root_resource

from automation.release_state import PROPOSED_STATE_ENV, ReleaseState, parameter_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "fleet"
SSM_READ = "aws:ssm/getParametersByPath:getParametersByPath"
AWSX_VPC = "awsx:ec2:Vpc"


class UnmodelledInvoke(RuntimeError):
    """The program asked the provider for something the model cannot answer."""


def program_path(project_dir: Path = PROJECT_ROOT) -> Path:
    """The file Pulumi runs: `main:` of Pulumi.yaml (a folder means its __main__.py)."""
    project = _yaml(project_dir / "Pulumi.yaml")
    main = project_dir / str(project.get("main") or ".")
    return main / "__main__.py" if main.is_dir() else main


def encode_config_value(value: Any) -> str:
    """A config value the way the Pulumi CLI hands it to a program: strings as is, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def stack_config(stack: str, project_dir: Path = PROJECT_ROOT) -> dict[str, str]:
    """Pulumi.yaml's schema defaults overlaid with Pulumi.<stack>.yaml, as the CLI merges them."""
    project = _yaml(project_dir / "Pulumi.yaml")
    config: dict[str, str] = {}
    for key, spec in (project.get("config") or {}).items():
        full_key = key if ":" in key else f"{project['name']}:{key}"
        if isinstance(spec, dict):
            if "default" in spec:
                config[full_key] = encode_config_value(spec["default"])
            elif "value" in spec:
                config[full_key] = encode_config_value(spec["value"])
        else:
            config[full_key] = encode_config_value(spec)
    for key, value in (_yaml(project_dir / f"Pulumi.{stack}.yaml").get("config") or {}).items():
        config[key] = encode_config_value(value)
    return config


class ModelEngine(pulumi.runtime.Mocks):
    """Stands in for the engine and the AWS provider: computed outputs and the stored release state."""

    def __init__(self, stack: str, stored_state: str | None = None):
        self.stack = stack
        self.stored_state = stored_state
        self.invokes: list[tuple[str, dict]] = []

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.invokes.append((args.token, dict(args.args)))
        if args.token == SSM_READ:
            found = (
                [(parameter_name(self.stack), self.stored_state)]
                if self.stored_state is not None and args.args.get("path") == f"/fleet/{self.stack}"
                else []
            )
            return {
                "id": args.args.get("path"),
                "path": args.args.get("path"),
                "names": [name for name, _ in found],
                "values": [value for _, value in found],
                "types": ["String" for _ in found],
                "arns": [f"arn:aws:ssm:us-east-1:123456789012:parameter{name}" for name, _ in found],
            }
        raise UnmodelledInvoke(f"the program made an unexpected invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        name, inputs = args.name, dict(args.inputs)
        resource_id = f"{name}-id"
        if args.typ == AWSX_VPC:
            # A remote component: one opaque resource under mocks, so answer with its outputs only.
            zones = len(inputs.get("availabilityZoneNames") or [])
            return resource_id, {
                "vpcId": "vpc-0fleet",
                "publicSubnetIds": [f"subnet-public-{index}" for index in range(zones)],
                "privateSubnetIds": [f"subnet-private-{index}" for index in range(zones)],
            }
        outputs = {**inputs, "arn": f"arn:aws:mock:us-east-1:123456789012:{args.typ}/{name}"}
        if "name" not in inputs:
            outputs["name"] = f"{inputs['namePrefix']}mock" if "namePrefix" in inputs else f"{name}-mock"
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            resource_id = f"lt-{name}"
            outputs["latestVersion"] = 1
        elif args.typ == "aws:lb/loadBalancer:LoadBalancer":
            outputs["arnSuffix"] = f"app/{name}/0123456789abcdef"
            outputs["dnsName"] = f"{name}-123.us-east-1.elb.amazonaws.com"
        elif args.typ == "aws:lb/targetGroup:TargetGroup":
            outputs["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
        return resource_id, outputs


@dataclass
class Registration:
    """One resource the program registered: inputs, the options the engine received, and its outputs."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool | None
    replace_on_changes: list[str]
    delete_before_replace: bool | None
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


class RecordingMonitor(MockMonitor):
    """Pulumi's MockMonitor that also records every registration request."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            registered = self.resources[response.urn]
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=rpc.deserialize_properties(request.object),
                    protect=request.protect if request.HasField("protect") else None,
                    replace_on_changes=list(request.replaceOnChanges),
                    delete_before_replace=(
                        request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None
                    ),
                    id=registered.id or "",
                    outputs=dict(registered.state),
                )
            )
        return response


@dataclass
class ProgramRun:
    """What one evaluation of the program declared and exported."""

    resources: list[Registration]
    outputs: dict[str, Any]
    logs: list[str] = field(default_factory=list)
    invokes: list[tuple[str, dict]] = field(default_factory=list)
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}")
        return found[0]

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.resources if r.parent == parent.urn]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)  # the program's messages, not the SDK's debug chatter
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    previous = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if previous is not None:
            os.environ[name] = previous


def run_program(
    stack: str,
    *,
    project_dir: Path = PROJECT_ROOT,
    config: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    stored_state: ReleaseState | str | None = None,
    proposed_state: ReleaseState | str | None = None,
    program: Callable[[], None] | None = None,
    expect_failure: bool = False,
) -> ProgramRun:
    """Evaluate the program (or `program`) for `stack` under mocks and return what it declared.

    config defaults to the stack's real config files; overrides replace single keys (plain values,
    encoded like the CLI does). stored_state is what the SSM parameter holds; proposed_state is
    handed over in PROPOSED_STATE_ENV, as the release CLI does for a preview (None: the variable
    is unset for the run). With expect_failure the program's error is returned in the run (with
    what it declared) instead of raised.
    """
    values = dict(stack_config(stack, project_dir) if config is None else config)
    for key, value in (overrides or {}).items():
        values[key] = encode_config_value(value)
    main = program_path(project_dir)

    def as_text(state: ReleaseState | str | None) -> str | None:
        return state.to_json() if isinstance(state, ReleaseState) else state

    mocks = ModelEngine(stack, as_text(stored_state))
    monitor = RecordingMonitor(mocks)
    handler = _ListHandler()
    logger = logging.getLogger(f"fleet.program.{stack}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)

    set_root_resource(None)  # a fresh root Stack per run, so exports never leak between runs
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT_NAME, stack=stack, preview=False, logger=logger, monitor=monitor
    )
    set_all_config(values)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def evaluate():
        if program is None:
            runpy.run_path(str(main), run_name="__main__")
        else:
            program()
        return pulumi.Output.from_input(get_root_resource().outputs).apply(outputs.update)

    error: BaseException | None = None
    with _environment(PROPOSED_STATE_ENV, as_text(proposed_state)):
        try:
            evaluate()
        except Exception as raised:  # noqa: BLE001 handed to the caller with what was declared
            error = raised
    run = ProgramRun(monitor.registrations, outputs, handler.messages, mocks.invokes, error)
    if error is not None and not expect_failure:
        raise error
    return run


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
