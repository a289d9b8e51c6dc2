"""The phases of a release: preview → apply → verify → (on failure) roll back.

Every change goes through the same steps: write the target release state to
SSM (outcome in-flight), run one Pulumi update of exactly that state, verify
with boto3, then record the outcome. Pulumi creates the new release group
before it deletes the old one, so the old release serves until the new one is
healthy. When the update or the verification fails, the last settled state is
written back, applied and verified, and orphans are swept. A crash anywhere
leaves an in-flight record in SSM; re-running the command resumes from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from automation.actor import Actor
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
    ROLLED_BACK,
    ReleaseGroup,
    ReleaseRecord,
    ReleaseState,
    check_release,
    utc_now,
)
from automation.state_store import StateStore

APPROVAL_SETTING = "fleet:requireApprovedPlan"
DEFAULT_VERIFY_TIMEOUT_S = 300.0


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
    actor: Actor
    progress: Callable[[str], None] = lambda message: None
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S
    smoke_url: str | None = None
    smoke_status: int = 200


@dataclass
class Outcome:
    """What a command did, in stable fields for --json."""

    stack: str
    outcome: str                       # released | unchanged | rolled-back
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


def replace_with(base: ReleaseState, group: ReleaseGroup) -> ReleaseState:
    """The create-before-destroy target: the new group alone (the old ones leave the program)."""
    return ReleaseState(groups=(group,))


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

    def record(self, outcome: str, note: str = "") -> ReleaseRecord:
        return ReleaseRecord(outcome=outcome, at=utc_now(), by=self.s.actor.by, commit=self.s.actor.commit, note=note)

    # -- preview -------------------------------------------------------------

    def preview(self, proposed: ReleaseState | None = None) -> Plan:
        """A real preview of the proposed state (default: the live one); nothing is changed."""
        live = self.live()
        base = self.settled(live)
        target = base if proposed is None else proposed
        self.s.progress(f"previewing {self.s.stack}: {describe_groups(base)} -> {describe_groups(target)}")
        result = self.s.workspace.preview(target)
        return Plan(
            stack=self.s.stack,
            proposed=target,
            base=base,
            settings_hash=self.s.workspace.settings_hash(),
            operations=tuple(result.operations()),
            changes=tuple(result.to_dict()["changes"]),
            created_by=self.s.actor.by,
        )

    # -- gate ----------------------------------------------------------------

    def gate(self, proposed: ReleaseState, base: ReleaseState, plan: Plan | None,
             confirm: Callable[[Plan], bool] | None) -> None:
        """Refuse (Blocked, exit 3) anything a person has not seen when the stack requires it."""
        if requires_approved_plan(self.s.workspace.config()):
            if plan is None:
                raise Blocked(
                    f"stack {self.s.stack} deploys only an approved plan: run `fleet preview {self.s.stack} … --out PLAN.json`, "
                    "have it approved, then pass --plan PLAN.json"
                )
            problems = plan_mismatches(
                plan, stack=self.s.stack, proposed=proposed, base=base, settings_hash=self.s.workspace.settings_hash()
            )
            if not problems:
                fresh = self.s.workspace.preview(proposed)
                problems = operation_mismatches(plan.operations, fresh.operations())
            if problems:
                raise Blocked(f"plan refused for stack {self.s.stack}: " + "; ".join(problems))
            self.s.progress(f"plan approved by preview of {plan.created_by or 'unknown'} at {plan.created_at} matches")
            return
        if plan is not None:
            problems = plan_mismatches(
                plan, stack=self.s.stack, proposed=proposed, base=base, settings_hash=self.s.workspace.settings_hash()
            )
            if problems:
                raise Blocked(f"plan refused for stack {self.s.stack}: " + "; ".join(problems))
            return
        if confirm is not None:
            preview = self.preview(proposed)
            if not confirm(preview):
                raise Blocked(f"not confirmed: nothing changed on stack {self.s.stack}")

    # -- changing ------------------------------------------------------------

    def change(self, proposed: ReleaseState, *, what: str, plan: Plan | None = None,
               confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        """Bring the stack to `proposed` safely; roll back to the settled state on failure."""
        live = self.live()
        base = self.settled(live)
        if live.record.outcome == IN_FLIGHT:
            if live.same_groups(proposed):
                self.s.progress(f"resuming an unfinished change of {self.s.stack} to {describe_groups(proposed)}")
            else:
                self.s.progress(
                    f"an unfinished change of {self.s.stack} to {describe_groups(live)} is superseded; "
                    f"starting from the last settled state: {describe_groups(base)}"
                )
        self.gate(proposed, base, plan, confirm)
        self.s.progress(f"{what}: {describe_groups(base)} -> {describe_groups(proposed)}")
        self.s.store.write(self.s.stack, proposed.with_record(self.record(IN_FLIGHT, what)))
        try:
            self.s.progress("applying (new groups are created and must be healthy before old ones are removed)")
            self.s.workspace.up(proposed)
            health = self.verify(proposed)
        except Blocked:
            # A locked stack: nothing was applied, so the state goes back as it was.
            self.s.store.write(self.s.stack, live)
            raise
        except (ReleaseFailed, KeyboardInterrupt) as failure:
            reason = failure.reason if isinstance(failure, FleetError) else "interrupted"
            self.roll_back(base, reason=f"{what} failed: {reason}")
            raise ReleaseFailed(
                f"{what} failed on {self.s.stack}: {reason}; rolled back to {describe_groups(base)}"
            ) from failure
        self.s.store.write(self.s.stack, proposed.with_record(self.record(RELEASED, what)))
        self.s.progress(f"{what}: done, {describe_groups(proposed)} serving")
        return Outcome(self.s.stack, RELEASED, proposed, health)

    def roll_back(self, base: ReleaseState, *, reason: str) -> list[GroupHealth]:
        """Restore the settled state, verify it serves, and sweep what Pulumi lost track of."""
        self.s.progress(f"rolling back {self.s.stack} to {describe_groups(base)} ({reason})")
        try:
            self.s.store.write(self.s.stack, base.with_record(self.record(ROLLED_BACK, reason)))
            result = self.s.workspace.up(base)
            health = self.verify(base, outputs=getattr(result, "outputs", None))
            self.sweep_orphans(getattr(result, "outputs", None))
        except (FleetError, KeyboardInterrupt) as failure:
            detail = failure.reason if isinstance(failure, FleetError) else "interrupted"
            try:
                self.s.store.write(self.s.stack, base.with_record(self.record(FAILED, f"{reason}; rollback failed: {detail}")))
            except Exception:  # noqa: BLE001 - the RollbackFailed below is what must reach the operator
                pass
            raise RollbackFailed(
                f"rollback of {self.s.stack} to {describe_groups(base)} failed: {detail}; "
                f"a person is needed: check `fleet status {self.s.stack}`"
            ) from failure
        return health

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
        """Resources tagged for this stack that the program no longer declares."""
        declared = (outputs.get("releaseGroups") or {}).values()
        return find_orphans(
            self.s.asg,
            self.s.ec2,
            stack=self.s.stack,
            known_asg_names={g["asgName"] for g in declared if g.get("asgName")},
            known_launch_template_ids={g["launchTemplateId"] for g in declared if g.get("launchTemplateId")},
        )

    def sweep_orphans(self, outputs: dict[str, Any] | None = None) -> None:
        orphans = self.orphans(self.s.workspace.outputs() if outputs is None else outputs)
        if not orphans.is_empty:
            self.s.progress(f"deleting orphans of {self.s.stack}: {orphans.to_dict()}")
            delete_orphans(self.s.asg, self.s.ec2, orphans)

    # -- commands ------------------------------------------------------------

    def proposal(self, group: ReleaseGroup) -> ReleaseState:
        """The state a deploy of `group` moves to, from the last settled state."""
        return replace_with(self.settled(self.live()), group)

    def deploy(self, group: ReleaseGroup, *, plan: Plan | None = None,
               confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        live = self.live()
        proposed = self.proposal(group)
        if live.record.outcome != IN_FLIGHT and live.same_groups(proposed):
            self.s.progress(f"{self.s.stack} already runs {describe_groups(proposed)}; verifying")
            return Outcome(self.s.stack, "unchanged", live, self.verify(live))
        return self.change(proposed, what=f"release {group.release}", plan=plan, confirm=confirm)

    def apply(self, *, plan: Plan | None = None, confirm: Callable[[Plan], bool] | None = None) -> Outcome:
        """Converge the stack to its current release state (settings changes)."""
        live = self.live()
        return self.change(self.settled(live), what="apply settings", plan=plan, confirm=confirm)

    def rollback_target(self, to_release: str | None) -> ReleaseState:
        """The state to go back to: the previous released state, or the one running `to_release`."""
        live = self.settled(self.live())
        for stored in self.s.store.history(self.s.stack):
            state = stored.state
            if state.record.outcome != RELEASED or state.same_groups(live) or not state.active:
                continue
            if to_release is None or any(g.release == to_release for g in state.active):
                return ReleaseState(groups=tuple(g for g in state.groups if g.role == ACTIVE))
        wanted = f"release {to_release}" if to_release else "an earlier release"
        raise Blocked(f"stack {self.s.stack} has no {wanted} in its history to roll back to")

    def status(self) -> dict[str, Any]:
        """Live releases with their health, the last outcome, anything pending or orphaned."""
        live = self.live()
        outputs = self.s.workspace.outputs()
        expected = self.expected_groups(live, outputs)
        health = (
            check_groups(self.s.asg, self.s.elbv2, target_group_arn=outputs.get("targetGroupArn"), groups=expected)
            if expected else []
        )
        orphans = self.orphans(outputs)
        return {
            "stack": self.s.stack,
            "url": outputs.get("url"),
            "groups": [
                {**g.to_dict(), **{k: v for k, v in (outputs.get("releaseGroups") or {}).get(g.release, {}).items()
                                   if k in ("asgName", "launchTemplateId", "launchTemplateVersion")}}
                for g in live.groups
            ],
            "health": [health_dict(h) for h in health],
            "healthy": all(h.ok for h in health),
            "last": live.record.to_dict(),
            "pending": live.record.outcome == IN_FLIGHT,
            "orphans": orphans.to_dict(),
        }

    def history(self) -> list[dict[str, Any]]:
        """Each change of the release state, newest first; in-flight records that a later
        record settled are folded into it."""
        entries = []
        stored = self.s.store.history(self.s.stack)
        for index, version in enumerate(stored):
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
