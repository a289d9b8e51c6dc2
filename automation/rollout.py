"""The phases of a release: preview → apply → verify → (on failure) roll back.

A release is a sequence of phases (automation/strategies.py); each phase is one
release state. For every phase fleet writes that state to SSM (outcome
in-flight, with the strategy and phase index), runs one Pulumi update of
exactly that state, and verifies it with boto3. Pulumi creates new release
groups before it deletes old ones, so the old release serves until the new one
is healthy. When an update or a verification fails, the rollback phases bring
the last settled state back, verify it and sweep orphans. A crash anywhere
leaves an in-flight record in SSM: re-running the command resumes from it, and
another command first finishes or undoes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from automation.actor import Actor
from automation.alarms import alarm_states, alarms_in_alarm, watch
from automation.ami import select_ami
from automation.errors import BadInput, Blocked, FleetError, ReleaseFailed, RollbackFailed
from automation.health import ExpectedGroup, GroupHealth, check_groups, smoke_check, verify
from automation.orphans import Orphans, delete_orphans, find_orphans
from automation.plan import Plan, describe_groups, operation_mismatches, plan_mismatches
from automation.release_state import (
    ACTIVE,
    FAILED,
    IN_FLIGHT,
    RELEASED,
    REPLACE,
    ROLLED_BACK,
    ReleaseGroup,
    ReleaseRecord,
    ReleaseState,
    check_release,
    iso_utc,
)
from automation.state_store import StateStore
from automation.strategies import Phase, expire_standby, release_phases, rollback_phases
from automation.timeline import predict, predict_rollback

APPROVAL_SETTING = "fleet:requireApprovedPlan"
DEFAULT_VERIFY_TIMEOUT_S = 300.0
HELD = "held"


class Workspace(Protocol):
    """What rollout needs of a stack's Pulumi workspace (automation.workspace.StackWorkspace)."""

    def outputs(self) -> dict[str, Any]: ...
    def config(self) -> dict[str, str]: ...
    def settings_hash(self) -> str: ...
    def preview(self, state: ReleaseState | None = None): ...
    def up(self, state: ReleaseState | None = None): ...


@dataclass
class Services:
    """Everything a release talks to, injected so each layer can be tested."""

    stack: str
    workspace: Workspace
    store: StateStore
    asg: Any
    elbv2: Any
    ec2: Any
    cloudwatch: Any
    actor: Actor
    progress: Callable[[str], None] = lambda message: None
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S
    smoke_url: str | None = None
    smoke_status: int = 200
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


@dataclass(frozen=True)
class Strategy:
    """How a release moves traffic: `fleet deploy --strategy … --canary … --hold … --standby-minutes … --alarm …`."""

    name: str = REPLACE
    canary: int = 1
    hold_minutes: float = 0
    standby_minutes: float = 60
    alarms: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What a command did, in stable fields for --json."""

    stack: str
    outcome: str                       # released | unchanged | held | rolled-back
    state: ReleaseState
    health: list[GroupHealth] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "outcome": self.outcome,
            "groups": [g.to_dict() for g in self.state.groups],
            "health": [health_dict(h) for h in self.health],
            "note": self.note,
        }


def health_dict(health: GroupHealth) -> dict[str, Any]:
    return {
        "release": health.release,
        "asg": health.asg_name,
        "expected": health.expected,
        "in_service": health.in_service,
        "healthy": health.healthy,
        "ok": health.ok,
        "problems": list(health.problems),
    }


def requires_approved_plan(config: dict[str, str]) -> bool:
    return str(config.get(APPROVAL_SETTING, "false")).lower() == "true"


def same_shape(a: ReleaseState, b: ReleaseState) -> bool:
    """The same groups, roles and capacities; a standby's expiry time may differ."""
    def shape(state: ReleaseState):
        return [(g.release, g.ami, g.role, g.capacity) for g in state.groups]
    return shape(a) == shape(b)


class Release:
    """One stack's release operations."""

    def __init__(self, services: Services):
        self.s = services

    # -- reading -------------------------------------------------------------

    def live(self) -> ReleaseState:
        return self.s.store.read(self.s.stack)

    def settled(self, live: ReleaseState) -> ReleaseState:
        """The last state a change finished with: live, unless a change is in flight."""
        if live.record.outcome != IN_FLIGHT:
            return live
        for stored in self.s.store.history(self.s.stack):
            if stored.state.record.outcome != IN_FLIGHT:
                return stored.state
        return ReleaseState()

    def settings(self) -> dict[str, Any]:
        """The effective settings the program exported (empty before the first update)."""
        return dict(self.s.workspace.outputs().get("settings") or {})

    def record(self, outcome: str, note: str = "", **progress: Any) -> ReleaseRecord:
        return ReleaseRecord(
            outcome=outcome, at=iso_utc(self.s.now()), by=self.s.actor.by, commit=self.s.actor.commit, note=note, **progress
        )

    def phases(self, base: ReleaseState, group: ReleaseGroup, strategy: Strategy) -> tuple[Phase, ...]:
        desired = self.settings().get("desiredCapacity")
        return release_phases(
            base,
            group,
            strategy=strategy.name,
            canary=strategy.canary,
            hold_minutes=strategy.hold_minutes,
            standby_minutes=strategy.standby_minutes,
            now=self.s.now(),
            desired_capacity=int(desired) if desired is not None else None,
        )

    # -- preview -------------------------------------------------------------

    def preview(self, group: ReleaseGroup | None = None, strategy: Strategy = Strategy()) -> Plan:
        """A real preview of the first update a deploy (or, without a group, an apply) makes,
        with the release timeline; nothing is changed."""
        base = self.settled(self.live())
        phases = self.phases(base, group, strategy) if group is not None else (Phase("apply", base, verify=True),)
        target = phases[0].state if phases else base
        self.s.progress(f"previewing {self.s.stack}: {describe_groups(base)} -> {describe_groups(target)}")
        result = self.s.workspace.preview(target)
        extra: dict[str, Any] = {"strategy": strategy.name, "phases": [p.to_dict() for p in phases]}
        settings = self.settings()
        if settings and phases:
            extra["timeline"] = predict(phases, settings, base=base).to_dict()
            final = phases[-1].state
            if not final.same_groups(base):
                extra["rollback_timeline"] = predict_rollback(final, settings, previous=base, now=self.s.now()).to_dict()
        return Plan(
            stack=self.s.stack,
            proposed=target,
            base=base,
            settings_hash=self.s.workspace.settings_hash(),
            operations=tuple(result.operations()),
            changes=tuple(result.to_dict()["changes"]),
            created_by=self.s.actor.by,
            extra=extra,
        )

    # -- gate ----------------------------------------------------------------

    def gate(self, phases: tuple[Phase, ...], base: ReleaseState, plan: Plan | None,
             confirm: Callable[[Plan], bool] | None, strategy: Strategy = Strategy()) -> None:
        """Refuse (Blocked, exit 3) anything a person has not seen when the stack requires it."""
        proposed = phases[0].state
        gated = requires_approved_plan(self.s.workspace.config())
        if gated and plan is None:
            raise Blocked(
                f"stack {self.s.stack} deploys only an approved plan: run `fleet preview {self.s.stack} … --out PLAN.json`, "
                "have it approved, then pass --plan PLAN.json"
            )
        if plan is not None:
            problems = plan_mismatches(
                plan, stack=self.s.stack, proposed=proposed, base=base, settings_hash=self.s.workspace.settings_hash()
            )
            planned_phases = [p.get("name") for p in plan.extra.get("phases", [])]
            if planned_phases and planned_phases != [p.name for p in phases]:
                problems.append(f"the plan's phases are {planned_phases}, this deploy's are {[p.name for p in phases]}")
            if not problems and gated:
                fresh = self.s.workspace.preview(proposed)
                problems = operation_mismatches(plan.operations, fresh.operations())
            if problems:
                raise Blocked(f"plan refused for stack {self.s.stack}: " + "; ".join(problems))
            self.s.progress(f"plan previewed by {plan.created_by or 'unknown'} at {plan.created_at} matches")
            return
        self.confirm(phases, base, confirm, strategy)

    def confirm(self, phases: tuple[Phase, ...], base: ReleaseState, confirm: Callable[[Plan], bool] | None,
                strategy: Strategy = Strategy()) -> None:
        """Show the diff of the first update and ask (when a person is asked at all)."""
        if confirm is None:
            return
        preview = self.s.workspace.preview(phases[0].state)
        shown = Plan(
            stack=self.s.stack, proposed=phases[0].state, base=base, settings_hash="",
            operations=tuple(preview.operations()), changes=tuple(preview.to_dict()["changes"]),
            extra={"strategy": strategy.name, "phases": [p.to_dict() for p in phases]},
        )
        if not confirm(shown):
            raise Blocked(f"not confirmed: nothing changed on stack {self.s.stack}")

    # -- running phases --------------------------------------------------------

    def run(self, phases: tuple[Phase, ...], *, base: ReleaseState, what: str, outcome: str = RELEASED,
            meta: dict[str, Any] | None = None, start: int = 0, strategy: Strategy = Strategy(),
            recover: bool = True, final_note: str = "") -> Outcome:
        """Apply phases[start:] in order. On failure: roll back to `base` (recover=True) and
        raise ReleaseFailed, or raise RollbackFailed (recover=False: this already is a rollback)."""
        meta = meta or {}
        health: list[GroupHealth] = []
        count = len(phases)
        for index in range(start, count):
            phase = phases[index]
            note = f"{what}: phase {index + 1}/{count} {phase.name}"
            record = self.record(IN_FLIGHT, note, phase=index, phases=count, **meta)
            if phase.is_hold:
                held = self.hold(phase, record, base=base, what=what, strategy=strategy)
                if held is not None:
                    return held
                continue
            self.s.progress(f"{note}: {describe_groups(phase.state)}{self.traffic_share(phase.state)}")
            health = self.apply_phase(phase, record, base=base, what=what, recover=recover)
        final = phases[-1].state if phases else base
        self.s.store.write(self.s.stack, final.with_record(self.record(outcome, final_note or what, **meta)))
        self.s.progress(f"{what}: done, {describe_groups(final)}")
        return Outcome(self.s.stack, outcome, final, health)

    def traffic_share(self, state: ReleaseState) -> str:
        """With two active groups in the target group, the share each one serves (round robin)."""
        active = state.active
        if len(active) < 2:
            return ""
        desired = int(self.settings().get("desiredCapacity") or 0)
        sizes = {g.release: g.capacity if g.capacity is not None else desired for g in active}
        total = sum(sizes.values())
        if not total:
            return ""
        return "; traffic " + ", ".join(f"{release} ~{100 * size / total:.0f}%" for release, size in sizes.items())

    def apply_phase(self, phase: Phase, record: ReleaseRecord, *, base: ReleaseState, what: str,
                    recover: bool) -> list[GroupHealth]:
        before = self.live()
        self.s.store.write(self.s.stack, phase.state.with_record(record))
        try:
            outputs = self.s.workspace.up(phase.state).outputs
            return self.verify(phase.state, outputs=outputs) if phase.verify else []
        except Blocked:
            # A locked stack: nothing was applied, so the state goes back as it was.
            self.s.store.write(self.s.stack, before)
            raise
        except (FleetError, KeyboardInterrupt) as failure:
            reason = failure.reason if isinstance(failure, FleetError) else "interrupted"
            if not recover:
                self.give_up(f"{what} failed: {reason}")
                raise RollbackFailed(
                    f"{what} of {self.s.stack} failed: {reason}; a person is needed: check `fleet status {self.s.stack}`"
                ) from failure
            self.roll_back(phase.state, base, reason=f"{what} failed: {reason}")
            raise ReleaseFailed(f"{what} failed on {self.s.stack}: {reason}; rolled back to {describe_groups(base)}") from failure

    def hold(self, phase: Phase, record: ReleaseRecord, *, base: ReleaseState, what: str,
             strategy: Strategy) -> Outcome | None:
        """Watch the alarms during a hold. Returns an Outcome when the release stops here."""
        alarms = self.alarm_names(strategy.alarms)
        if phase.hold_minutes == 0:
            self.s.store.write(self.s.stack, phase.state.with_record(record))
            self.fail_on_alarm(phase.state, base, what=what, alarms=alarms)
            note = f"held: run `fleet continue {self.s.stack}` to go on or `fleet abort {self.s.stack}` to roll back"
            self.s.progress(f"{what}: {note}")
            return Outcome(self.s.stack, HELD, phase.state, note=note)
        until = self.s.now().timestamp() + phase.hold_minutes * 60
        written = phase.state.with_record(
            replace(record, hold_until=iso_utc(datetime.fromtimestamp(until, timezone.utc)))
        )
        self.s.store.write(self.s.stack, written)
        self.s.progress(f"{what}: holding {phase.hold_minutes:g} min, watching {', '.join(alarms) or 'no alarms'}")
        fired = watch(
            self.s.cloudwatch,
            alarms,
            minutes=phase.hold_minutes,
            on_tick=lambda left: self.s.progress(f"  hold: {left:.0f}s left, no alarm"),
            stop_requested=lambda: self.live() != written,
        )
        if fired:
            self.roll_back(phase.state, base, reason=f"{what} aborted: alarm {fired} fired during the hold")
            raise ReleaseFailed(f"{what} on {self.s.stack}: alarm {fired} fired; rolled back to {describe_groups(base)}")
        if self.live() != written:
            note = f"the hold was ended by another command (`fleet continue` or `fleet abort` on {self.s.stack})"
            self.s.progress(note)
            return Outcome(self.s.stack, "superseded", self.live(), note=note)
        return None

    def alarm_names(self, extra: tuple[str, ...]) -> list[str]:
        stack_alarms = list((self.s.workspace.outputs().get("alarmNames") or {}).values())
        return stack_alarms + [name for name in extra if name not in stack_alarms]

    def check_alarm_names(self, phases: tuple[Phase, ...], strategy: Strategy) -> None:
        """A hold watches alarms: an unknown name is bad input now, not after the canary runs."""
        if any(phase.is_hold for phase in phases):
            alarm_states(self.s.cloudwatch, self.alarm_names(strategy.alarms))

    def fail_on_alarm(self, state: ReleaseState, base: ReleaseState, *, what: str, alarms: list[str]) -> None:
        fired = alarms_in_alarm(self.s.cloudwatch, alarms) if alarms else []
        if fired:
            self.roll_back(state, base, reason=f"{what} aborted: alarm {fired[0]} is in ALARM")
            raise ReleaseFailed(f"{what} on {self.s.stack}: alarm {fired[0]} is in ALARM; rolled back to {describe_groups(base)}")

    def roll_back(self, current: ReleaseState, base: ReleaseState, *, reason: str) -> Outcome:
        """Bring `base` back from `current`, verify it serves, and sweep what Pulumi lost track of."""
        self.s.progress(f"rolling back {self.s.stack} to {describe_groups(base)} ({reason})")
        phases = rollback_phases(current, now=self.s.now(), previous=base)
        if phases:
            outcome = self.run(phases, base=base, what=f"rollback to {describe_groups(base)}", outcome=ROLLED_BACK,
                               recover=False, final_note=reason)
        else:
            outcome = self.reverify(base, reason)
        try:
            self.sweep_orphans()
        except FleetError as failure:
            raise RollbackFailed(f"orphan sweep of {self.s.stack} failed: {failure.reason}") from failure
        return outcome

    def reverify(self, base: ReleaseState, reason: str) -> Outcome:
        """After a failed change that left the groups as they were (a settings update), the
        release state is already the settled one: verify it serves, re-apply nothing."""
        try:
            health = self.verify(base)
        except FleetError as failure:
            self.give_up(f"{reason}; verification of {describe_groups(base)} failed: {failure.reason}")
            raise RollbackFailed(
                f"{describe_groups(base)} on {self.s.stack} does not serve after {reason}: {failure.reason}; "
                f"a person is needed: check `fleet status {self.s.stack}`"
            ) from failure
        self.s.store.write(self.s.stack, base.with_record(self.record(ROLLED_BACK, reason)))
        return Outcome(self.s.stack, ROLLED_BACK, base, health)

    def give_up(self, reason: str) -> None:
        """Record that the rollback failed, so status and history say a person is needed."""
        try:
            self.s.store.write(self.s.stack, self.live().with_record(self.record(FAILED, reason)))
        except Exception:  # noqa: BLE001 - the RollbackFailed raised by the caller must reach the operator
            pass

    # -- verification --------------------------------------------------------

    def expected_groups(self, state: ReleaseState, outputs: dict[str, Any]) -> list[ExpectedGroup]:
        declared = outputs.get("releaseGroups") or {}
        expected = []
        for group in state.groups:
            info = declared.get(group.release) or {}
            expected.append(
                ExpectedGroup(
                    release=group.release,
                    asg_name=info.get("asgName", ""),
                    capacity=int(info.get("capacity", group.capacity or 0)),
                    attached=group.role == ACTIVE,
                )
            )
        return expected

    def verify(self, state: ReleaseState, outputs: dict[str, Any] | None = None) -> list[GroupHealth]:
        outputs = self.s.workspace.outputs() if outputs is None else outputs
        expected = self.expected_groups(state, outputs)
        if not expected:
            return []

        def report(healths: list[GroupHealth]) -> None:
            for h in healths:
                self.s.progress(f"  {h.release}: {h.healthy}/{h.expected} healthy, {h.in_service}/{h.expected} in service")

        health = verify(
            self.s.asg,
            self.s.elbv2,
            target_group_arn=outputs.get("targetGroupArn"),
            groups=expected,
            timeout_s=self.s.verify_timeout_s,
            on_progress=report,
        )
        if self.s.smoke_url:
            smoke_check(self.s.smoke_url, expected_status=self.s.smoke_status, timeout_s=self.s.verify_timeout_s)
        return health

    def orphans(self, outputs: dict[str, Any]) -> Orphans:
        """Resources tagged for this stack that the program no longer declares. Without the
        program's outputs nothing is known, so nothing is called an orphan."""
        if "releaseGroups" not in outputs:
            return Orphans((), (), ())
        declared = (outputs.get("releaseGroups") or {}).values()
        return find_orphans(
            self.s.asg,
            self.s.ec2,
            stack=self.s.stack,
            known_asg_names={g["asgName"] for g in declared if g.get("asgName")},
            known_launch_template_ids={g["launchTemplateId"] for g in declared if g.get("launchTemplateId")},
        )

    def sweep_orphans(self) -> None:
        orphans = self.orphans(self.s.workspace.outputs())
        if not orphans.is_empty:
            self.s.progress(f"deleting orphans of {self.s.stack}: {orphans.to_dict()}")
            delete_orphans(self.s.asg, self.s.ec2, orphans)

    # -- commands ------------------------------------------------------------

    def settle_in_flight(self, live: ReleaseState, base: ReleaseState) -> None:
        """Undo an unfinished change before starting another one."""
        self.s.progress(
            f"an unfinished change of {self.s.stack} ({live.record.note or 'unknown'}) is rolled back first, "
            f"to {describe_groups(base)}"
        )
        self.roll_back(live, base, reason=f"superseded: {live.record.note or 'unfinished change'}")

    def deploy(self, group: ReleaseGroup, *, strategy: Strategy = Strategy(), plan: Plan | None = None,
               confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        live = self.live()
        base = self.settled(live)
        phases = self.phases(base, group, strategy)
        if not phases:
            if live.record.outcome != IN_FLIGHT:
                self.s.progress(f"{self.s.stack} already runs {describe_groups(live)}; verifying")
                return Outcome(self.s.stack, "unchanged", live, self.verify(live))
            phases = (Phase(REPLACE, base, verify=True),)
        meta = {"strategy": strategy.name, "release": group.release, "ami": group.ami}
        self.check_alarm_names(phases, strategy)
        start = 0
        if live.record.outcome == IN_FLIGHT:
            record = live.record
            if (record.release, record.ami, record.strategy or REPLACE) == (group.release, group.ami, strategy.name) \
                    and record.phase < len(phases):
                start = record.phase
                self.s.progress(f"resuming release {group.release} on {self.s.stack} at phase {start + 1}/{len(phases)}")
            else:
                self.gate(phases, base, plan, confirm, strategy)
                self.settle_in_flight(live, base)
                return self.run(phases, base=base, what=f"release {group.release}", meta=meta, strategy=strategy)
        if start == 0:
            self.gate(phases, base, plan, confirm, strategy)
        return self.run(phases, base=base, what=f"release {group.release}", meta=meta, start=start, strategy=strategy)

    def continue_release(self, alarms: tuple[str, ...] = ()) -> Outcome:
        """Go on after a hold: the canary grows to full size and the old group leaves."""
        live = self.live()
        record = live.record
        if record.outcome != IN_FLIGHT or not record.release:
            raise Blocked(f"stack {self.s.stack} has no release in flight to continue")
        base = self.settled(live)
        group = ReleaseGroup(record.release, record.ami)
        trial = live.group(record.release)
        canary = trial.capacity if trial is not None and trial.capacity else 1
        strategy = Strategy(name=record.strategy or REPLACE, canary=canary, alarms=alarms)
        phases = self.phases(base, group, strategy)
        if record.phase >= len(phases) or not same_shape(phases[record.phase].state, live):
            raise Blocked(
                f"stack {self.s.stack} runs {describe_groups(live)}, which is not phase {record.phase + 1} of release "
                f"{record.release}: re-run its deploy or `fleet abort {self.s.stack}`"
            )
        what = f"release {group.release}"
        self.fail_on_alarm(live, base, what=what, alarms=self.alarm_names(alarms))
        meta = {"strategy": strategy.name, "release": group.release, "ami": group.ami}
        # A hold is done once continued; any other phase recorded in flight may have been applied
        # but not verified (a crash): it runs again, so the old group never goes unverified.
        start = record.phase + 1 if phases[record.phase].is_hold else record.phase
        return self.run(phases, base=base, what=what, meta=meta, start=start, strategy=strategy)

    def abort(self) -> Outcome:
        """Roll back the release in flight, whatever phase it is in."""
        live = self.live()
        if live.record.outcome != IN_FLIGHT:
            raise Blocked(f"stack {self.s.stack} has no release in flight to abort: use `fleet rollback {self.s.stack}`")
        base = self.settled(live)
        outcome = self.roll_back(live, base, reason=f"aborted by {self.s.actor.by}: {live.record.note}")
        return replace(outcome, note="aborted")

    def rollback(self, to_release: str | None = None, *, confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        """Back to the standby group (no boot) or to the previous (or named) release."""
        live = self.live()
        current = self.settled(live)
        if live.record.outcome == IN_FLIGHT:
            return self.abort()
        previous = None if (to_release is None and current.standby) else self.rollback_target(to_release, current)
        phases = rollback_phases(current, now=self.s.now(), previous=previous)
        if not phases:
            return Outcome(self.s.stack, "unchanged", current, self.verify(current))
        # Going back to a release that was live before needs no approved plan, only a confirmation.
        self.confirm(phases, current, confirm)
        what = f"rollback to {describe_groups(phases[-1].state)}"
        return self.run(phases, base=current, what=what, outcome=ROLLED_BACK, recover=False)

    def rollback_target(self, to_release: str | None, current: ReleaseState) -> ReleaseState:
        """The latest released state that ran `to_release`, or else other releases than now."""
        now_serving = {g.release for g in current.active}
        for stored in self.s.store.history(self.s.stack):
            if stored.state.record.outcome != RELEASED:
                continue
            full = [g for g in stored.state.active if g.capacity is None]
            if to_release is not None:
                full = [g for g in full if g.release == to_release]
            elif {g.release for g in full} == now_serving:
                continue
            if full:
                return ReleaseState(groups=tuple(ReleaseGroup(g.release, g.ami) for g in full))
        wanted = f"release {to_release}" if to_release else "an earlier release"
        raise Blocked(f"stack {self.s.stack} has no {wanted} in its history to roll back to")

    def cleanup(self) -> Outcome:
        """Remove standby groups whose time is up."""
        live = self.live()
        if live.record.outcome == IN_FLIGHT:
            raise Blocked(f"stack {self.s.stack} has a release in flight: `fleet continue` or `fleet abort` it first")
        kept = expire_standby(live, now=self.s.now())
        if kept.same_groups(live):
            return Outcome(self.s.stack, "unchanged", live, note="no expired standby group")
        gone = ", ".join(g.release for g in live.groups if g not in kept.groups)
        return self.run((Phase("cleanup", kept, verify=True),), base=live, what=f"cleanup of standby {gone}")

    def apply(self, *, plan: Plan | None = None, confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        """Converge the stack to its current release state (settings changes)."""
        live = self.live()
        base = self.settled(live)
        if live.record.outcome == IN_FLIGHT:
            raise Blocked(f"stack {self.s.stack} has a release in flight: re-run its deploy, or `fleet abort {self.s.stack}`")
        phases = (Phase("apply", base, verify=True),)
        self.gate(phases, base, plan, confirm)
        return self.run(phases, base=base, what="apply settings")

    def status(self) -> dict[str, Any]:
        """Live releases with their health, the last outcome, anything pending or orphaned."""
        live = self.live()
        outputs = self.s.workspace.outputs()
        expected = self.expected_groups(live, outputs)
        health = (
            check_groups(self.s.asg, self.s.elbv2, target_group_arn=outputs.get("targetGroupArn"), groups=expected)
            if expected else []
        )
        declared = outputs.get("releaseGroups") or {}
        return {
            "stack": self.s.stack,
            "url": outputs.get("url"),
            "groups": [
                {**g.to_dict(), **{k: v for k, v in declared.get(g.release, {}).items()
                                   if k in ("asgName", "launchTemplateId", "launchTemplateVersion")}}
                for g in live.groups
            ],
            "health": [health_dict(h) for h in health],
            "healthy": all(h.ok for h in health),
            "last": live.record.to_dict(),
            "pending": live.record.outcome == IN_FLIGHT,
            "orphans": self.orphans(outputs).to_dict(),
        }

    def history(self) -> list[dict[str, Any]]:
        """Each change of the release state, newest first; in-flight records that a later
        record settled are folded into it."""
        entries = []
        for index, version in enumerate(self.s.store.history(self.s.stack)):
            record = version.state.record
            if record.outcome == IN_FLIGHT and index > 0:
                continue
            entries.append(
                {
                    "version": version.version,
                    "at": record.at or version.modified_at.isoformat(),
                    "by": record.by or version.modified_by,
                    "commit": record.commit,
                    "outcome": record.outcome,
                    "strategy": record.strategy,
                    "releases": [g.release for g in version.state.groups],
                    "amis": [g.ami for g in version.state.groups],
                    "note": record.note,
                }
            )
        return entries


def promotable_group(source_stack: str, source: ReleaseState) -> ReleaseGroup:
    """The release a stack runs, if its last release there succeeded and is complete."""
    if source.is_empty:
        raise Blocked(f"stack {source_stack} has no release to promote")
    if source.record.outcome != RELEASED:
        raise Blocked(
            f"stack {source_stack} has no successful release to promote: its last change ended {source.record.outcome!r}"
        )
    full = [g for g in source.active if g.capacity is None]
    if len(source.active) != 1 or len(full) != 1:
        raise Blocked(f"stack {source_stack} runs {describe_groups(source)}: expected exactly one full active release")
    return ReleaseGroup(release=full[0].release, ami=full[0].ami)


def choose_group(ec2, *, release: str | None, ami_id: str | None, app: str, instance_type: str | None) -> ReleaseGroup:
    """The release group a deploy or preview proposes: by version, or by explicit AMI id."""
    if not release and not ami_id:
        raise BadInput("nothing to release: expected --release VERSION or --ami ami-…")
    if release:
        check_release(release)
    image = select_ami(ec2, ami_id or release, app=app, instance_type=instance_type)
    return ReleaseGroup(release=release or image.version, ami=image.image_id)
