"""Plan files: the record of a preview that a person approved.

A gated stack (production) deploys only with a plan whose stack, proposed
state, starting state and settings still match, and whose resource operations
a fresh preview reproduces. Anything else is refused with the differences.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation import __version__
from automation.errors import BadInput
from automation.release_state import ReleaseState, ReleaseStateError, utc_now

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Plan:
    stack: str
    proposed: ReleaseState
    base: ReleaseState
    settings_hash: str
    operations: tuple[tuple[str, str, str], ...]   # sorted (op, type, name)
    changes: tuple[dict[str, Any], ...] = ()         # the diff as people read it
    created_at: str = field(default_factory=utc_now)
    created_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the release timeline

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "fleet_version": __version__,
            "stack": self.stack,
            "proposed": self.proposed.to_dict(),
            "base": self.base.to_dict(),
            "settings_hash": self.settings_hash,
            "operations": [list(op) for op in self.operations],
            "changes": list(self.changes),
            "created_at": self.created_at,
            "created_by": self.created_by,
            **self.extra,
        }

    def save(self, path: Path) -> None:
        path = Path(path)
        # Write then rename, so a crash never leaves half a plan behind.
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Plan":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"plan file {str(path)!r} does not exist: expected the --out file of `fleet preview`") from None
        except (OSError, ValueError) as error:
            raise BadInput(f"plan file {str(path)!r} is not readable JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise BadInput(f"plan file {str(path)!r} is not a fleet plan of format {PLAN_FORMAT}")
        known = {"format", "fleet_version", "stack", "proposed", "base", "settings_hash", "operations",
                 "changes", "created_at", "created_by"}
        try:
            return cls(
                stack=str(data["stack"]),
                proposed=ReleaseState.from_dict(data["proposed"]),
                base=ReleaseState.from_dict(data["base"]),
                settings_hash=str(data["settings_hash"]),
                operations=tuple(tuple(op) for op in data["operations"]),
                changes=tuple(data.get("changes", ())),
                created_at=str(data.get("created_at", "")),
                created_by=str(data.get("created_by", "")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except KeyError as missing:
            raise BadInput(f"plan file {str(path)!r} lacks the field {missing}") from None
        except (ReleaseStateError, TypeError) as error:
            raise BadInput(f"plan file {str(path)!r} is malformed: {error}") from None


def describe_groups(state: ReleaseState) -> str:
    if state.is_empty:
        return "no release groups"
    return ", ".join(
        f"{g.release} ({g.ami}, {g.role}{'' if g.capacity is None else f', {g.capacity} instances'})" for g in state.groups
    )


def plan_mismatches(
    plan: Plan,
    *,
    stack: str,
    proposed: ReleaseState,
    base: ReleaseState,
    settings_hash: str,
) -> list[str]:
    """What no longer matches between an approved plan and the deploy about to run."""
    problems = []
    if plan.stack != stack:
        problems.append(f"the plan is for stack {plan.stack!r}, not {stack!r}")
    if not plan.proposed.same_groups(proposed):
        problems.append(
            f"the plan proposes {describe_groups(plan.proposed)}; this deploy proposes {describe_groups(proposed)}"
        )
    if not plan.base.same_groups(base):
        problems.append(
            f"the plan started from {describe_groups(plan.base)}; the stack now runs {describe_groups(base)}"
        )
    if plan.settings_hash != settings_hash:
        problems.append("the stack's settings changed since the preview")
    return problems


def operation_mismatches(planned: tuple[tuple[str, str, str], ...], fresh: list[tuple[str, str, str]]) -> list[str]:
    """Resource operations the approved preview and a fresh one disagree on."""
    planned_set, fresh_set = set(map(tuple, planned)), set(map(tuple, fresh))
    problems = [f"the approved plan had {op} {type_} {name}, a fresh preview does not" for op, type_, name in sorted(planned_set - fresh_set)]
    problems += [f"a fresh preview has {op} {type_} {name}, the approved plan did not" for op, type_, name in sorted(fresh_set - planned_set)]
    return problems
