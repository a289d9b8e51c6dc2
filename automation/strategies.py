"""The phases of a release for each strategy, as pure data (no I/O).

Every phase is one Pulumi update of one release state, so a crash between
phases, a plain `pulumi up` or a re-run converges to a state fleet knows, and
each phase's diff can be previewed. The orchestrator (automation/rollout.py)
applies the phases in order, verifies after each one that asks for it, and
rolls back with rollback_phases() when a phase fails or is aborted.

Invariant kept by every strategy: until the new release has been verified at
full capacity, an already verified group serves at full capacity beside it,
or the phase is a single create-before-destroy update (the program deletes
the old group only after the new one is healthy in the target group).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from automation.errors import BadInput, Blocked
from automation.release_state import (
    ACTIVE,
    CANARY,
    REPLACE,
    STANDBY,
    STRATEGIES,
    ReleaseGroup,
    ReleaseState,
    ReleaseStateError,
    iso_utc,
    parse_time,
)

# Phase names, as the CLI prints them and the plan file stores them.
REPLACE_PHASE = "replace"          # the new group alone: create-before-destroy in one update
CANARY_PHASE = "canary"            # the new group at N instances beside the full old group
HOLD_PHASE = "hold"                # no change: watch alarms for a while or until `fleet continue`
GROW_PHASE = "grow"                # the new group at full size, still beside the old group
RETIRE_OLD_PHASE = "retire-old"    # the new group alone
CUT_OVER_PHASE = "cut-over"        # both groups active at full size
DETACH_OLD_PHASE = "detach-old"    # the old group kept warm as standby, out of the target group
REACTIVATE_PHASE = "reactivate"    # rollback: the standby group back in the target group
RETIRE_CURRENT_PHASE = "retire-current"  # rollback: the release that was rolled back leaves
ROLLBACK_PHASE = "rollback"        # rollback without standby: the earlier release, create-before-destroy

# Phases that swap groups in one update: what serves during them is guarded by the program
# (old groups are deleted at the end of the update, after the new ones are healthy).
SINGLE_UPDATE_PHASES = (REPLACE_PHASE, ROLLBACK_PHASE)


@dataclass(frozen=True)
class Phase:
    """One step of a release: apply `state` (one update), then verify it if asked."""

    name: str
    state: ReleaseState
    verify: bool
    # For a hold: minutes to watch alarms before going on; 0 waits for `fleet continue`.
    hold_minutes: float = 0

    @property
    def is_hold(self) -> bool:
        return self.name == HOLD_PHASE

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": [g.to_dict() for g in self.state.groups],
            "verify": self.verify,
            "hold_minutes": self.hold_minutes,
        }


def release_phases(
    base: ReleaseState,
    new: ReleaseGroup,
    *,
    strategy: str,
    canary: int = 1,
    hold_minutes: float = 0,
    standby_minutes: float = 60,
    now: datetime,
    desired_capacity: int | None = None,
) -> tuple[Phase, ...]:
    """The phases that take a stack from its settled state `base` to release `new`.

    Standby groups of `base` (expired or not) are dropped by the first phase: a stack runs at
    most two groups, and a new release supersedes the one kept for rollback. A stack without
    a release, or a release that already serves, needs one phase whatever the strategy; an
    empty tuple means there is nothing to do. `desired_capacity`, when given, bounds the
    canary: a canary larger than the fleet is refused.
    """
    _check_options(strategy, canary, hold_minutes, standby_minutes, now, desired_capacity)
    if new.role != ACTIVE or new.capacity is not None or new.expires_at is not None:
        raise ReleaseStateError(f"release {new.release} to deploy must be a full active group, got {new.to_dict()}")
    for live in base.groups:
        if live.release == new.release and live.ami != new.ami:
            raise BadInput(
                f"release {new.release} is live with {live.ami}, not {new.ami}: "
                "a release id names one AMI; deploy the new AMI under a new version"
            )
    alone = ReleaseState(groups=(new,))
    old = base.active
    if not old or any(g.release == new.release for g in old):
        # Nothing to protect (first release), or the release already serves: one update at most.
        return () if base.same_groups(alone) else (Phase(REPLACE_PHASE, alone, verify=True),)
    if strategy == REPLACE:
        return (Phase(REPLACE_PHASE, alone, verify=True),)
    if len(old) != 1:
        raise Blocked(
            f"the stack serves {len(old)} releases ({', '.join(g.release for g in old)}): "
            f"expected one before a {strategy} release; finish or abort the release in flight first"
        )
    current = old[0]
    if strategy == CANARY:
        trial = ReleaseState(groups=(current, replace(new, capacity=canary)))
        both = ReleaseState(groups=(current, new))
        return (
            Phase(CANARY_PHASE, trial, verify=True),
            Phase(HOLD_PHASE, trial, verify=False, hold_minutes=hold_minutes),
            Phase(GROW_PHASE, both, verify=True),
            Phase(RETIRE_OLD_PHASE, alone, verify=True),
        )
    kept = replace(current, role=STANDBY, expires_at=iso_utc(now + timedelta(minutes=standby_minutes)))
    return (
        Phase(CUT_OVER_PHASE, ReleaseState(groups=(current, new)), verify=True),
        Phase(DETACH_OLD_PHASE, ReleaseState(groups=(new, kept)), verify=True),
    )


def rollback_phases(
    current: ReleaseState, *, now: datetime, previous: ReleaseState | None = None
) -> tuple[Phase, ...]:
    """The phases that take the stack from `current` back to an earlier release.

    With a standby group (and no `previous` naming another release) the standby group is put
    back in the target group without booting anything, verified, and then the current release
    leaves. Otherwise the active groups of `previous` (the last settled state, or the release
    asked for) replace the current ones in one create-before-destroy update; groups of
    `previous` that still run (an aborted canary's old group) are kept, not rebooted.
    Aborting a release in flight is the same call with `previous` = the settled state; when
    that is empty (a stack's first release), the rollback removes every group.
    """
    _check_now(now)
    standby = current.standby[0] if current.standby else None
    wanted = {g.release for g in previous.active} if previous is not None else set()
    if standby is not None and (previous is None or wanted == {standby.release}):
        back = ReleaseGroup(standby.release, standby.ami)
        serving = tuple(g for g in current.groups if g.role == ACTIVE)
        return (
            Phase(REACTIVATE_PHASE, ReleaseState(groups=serving + (back,)), verify=True),
            Phase(RETIRE_CURRENT_PHASE, ReleaseState(groups=(back,)), verify=True),
        )
    if previous is None:
        raise Blocked("nothing to roll back to: no standby group and no earlier release")
    target = ReleaseState(groups=tuple(ReleaseGroup(g.release, g.ami) for g in previous.active))
    if current.same_groups(target):
        return ()
    return (Phase(ROLLBACK_PHASE, target, verify=True),)


def expire_standby(state: ReleaseState, *, now: datetime) -> ReleaseState:
    """`state` without its standby groups whose time is up (a standby without expiry counts as up)."""
    _check_now(now)
    kept = tuple(g for g in state.groups if not (g.role == STANDBY and _expired(g, now)))
    return state if kept == state.groups else state.with_groups(kept)


def _expired(group: ReleaseGroup, now: datetime) -> bool:
    if group.expires_at is None:
        return True
    return parse_time(group.expires_at, f"expires_at of release {group.release}") <= now


def _check_options(
    strategy: str, canary: int, hold_minutes: float, standby_minutes: float, now: datetime, desired_capacity: int | None
) -> None:
    _check_now(now)
    if strategy not in STRATEGIES:
        raise BadInput(f"strategy {strategy!r} is unknown: expected one of {', '.join(STRATEGIES)}")
    if isinstance(canary, bool) or not isinstance(canary, int) or canary < 1:
        raise BadInput(f"--canary {canary!r} is invalid: expected a whole number of instances, at least 1")
    if desired_capacity is not None and canary > desired_capacity:
        raise BadInput(
            f"--canary {canary} is larger than the fleet: expected at most the desired capacity ({desired_capacity})"
        )
    if not _finite(hold_minutes) or hold_minutes < 0:
        raise BadInput(f"--hold {hold_minutes!r} is invalid: expected minutes >= 0 (0 = until `fleet continue`)")
    if hold_minutes and strategy != CANARY:
        raise BadInput(f"--hold {hold_minutes:g} applies to the canary strategy only, not {strategy}")
    if not _finite(standby_minutes) or standby_minutes <= 0:
        raise BadInput(f"--standby-minutes {standby_minutes!r} is invalid: expected minutes > 0")


def _check_now(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ReleaseStateError(f"time {now!r} has no time zone: expected an aware UTC datetime")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
