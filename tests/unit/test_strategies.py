"""Release strategies as phases: examples of each, and properties of any sequence of commands."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.errors import BadInput, Blocked
from automation.release_state import (
    ACTIVE,
    MAX_GROUPS,
    STANDBY,
    STRATEGIES,
    ReleaseGroup,
    ReleaseState,
    ReleaseStateError,
    parse_time,
)
from automation.strategies import (
    SINGLE_UPDATE_PHASES,
    Phase,
    expire_standby,
    release_phases,
    rollback_phases,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
OLD = ReleaseGroup("1.0.0", "ami-00000000000000001")
NEW = ReleaseGroup("2.0.0", "ami-00000000000000002")
GONE = ReleaseGroup("0.9.0", "ami-00000000000000009")


def state(*groups: ReleaseGroup) -> ReleaseState:
    return ReleaseState(groups=groups)


def summary(phases) -> list[tuple]:
    return [(p.name, [(g.release, g.role, g.capacity) for g in p.state.groups], p.verify) for p in phases]


# -- examples ----------------------------------------------------------------------------------


def test_replace_is_one_update_of_the_new_group_alone():
    """replace: create-before-destroy in one update; standby groups, expired or not, leave with it."""
    kept = replace(GONE, role=STANDBY, expires_at="2026-03-01T13:00:00Z")
    phases = release_phases(state(OLD, kept), NEW, strategy="replace", now=NOW)
    assert summary(phases) == [("replace", [("2.0.0", ACTIVE, None)], True)]


def test_canary_phases_keep_the_old_group_full_until_the_new_one_is_full():
    """canary: N new beside the full old group, a hold, growth to full size, then the old group leaves."""
    phases = release_phases(state(OLD), NEW, strategy="canary", canary=2, hold_minutes=15, now=NOW, desired_capacity=4)
    assert summary(phases) == [
        ("canary", [("1.0.0", ACTIVE, None), ("2.0.0", ACTIVE, 2)], True),
        ("hold", [("1.0.0", ACTIVE, None), ("2.0.0", ACTIVE, 2)], False),
        ("grow", [("1.0.0", ACTIVE, None), ("2.0.0", ACTIVE, None)], True),
        ("retire-old", [("2.0.0", ACTIVE, None)], True),
    ]
    assert [p.hold_minutes for p in phases] == [0, 15, 0, 0]
    assert phases[1].is_hold and not phases[0].is_hold


def test_standby_phases_cut_over_then_keep_the_old_group_warm_until_it_expires():
    """standby: both serve, then the old group is detached as standby for --standby-minutes."""
    phases = release_phases(state(OLD), NEW, strategy="standby", standby_minutes=45, now=NOW)
    assert summary(phases) == [
        ("cut-over", [("1.0.0", ACTIVE, None), ("2.0.0", ACTIVE, None)], True),
        ("detach-old", [("2.0.0", ACTIVE, None), ("1.0.0", STANDBY, None)], True),
    ]
    assert parse_time(phases[1].state.group("1.0.0").expires_at, "expiry") == NOW + timedelta(minutes=45)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_first_release_is_one_phase_whatever_the_strategy(strategy):
    """A stack without a release has nothing to protect: one update brings the new group."""
    assert summary(release_phases(ReleaseState(), NEW, strategy=strategy, now=NOW)) == [
        ("replace", [("2.0.0", ACTIVE, None)], True)
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_release_that_already_serves_changes_at_most_its_leftovers(strategy):
    """Deploying what serves does nothing, or only drops the standby group; nothing boots."""
    assert release_phases(state(NEW), NEW, strategy=strategy, now=NOW) == ()
    with_standby = state(NEW, replace(OLD, role=STANDBY, expires_at="2026-03-01T13:00:00Z"))
    assert summary(release_phases(with_standby, NEW, strategy=strategy, now=NOW)) == [
        ("replace", [("2.0.0", ACTIVE, None)], True)
    ]


def test_standby_release_can_be_deployed_again_without_a_new_group():
    """Deploying the release kept as standby re-attaches that same group (same release, same AMI)."""
    base = state(NEW, replace(OLD, role=STANDBY, expires_at="2026-03-01T13:00:00Z"))
    phases = release_phases(base, OLD, strategy="replace", now=NOW)
    assert phases[0].state.groups == (OLD,)


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        (dict(strategy="blue-green"), BadInput, "strategy 'blue-green' is unknown"),
        (dict(strategy="canary", canary=0), BadInput, "--canary 0 is invalid"),
        (dict(strategy="canary", canary=True), BadInput, "--canary True is invalid"),
        (dict(strategy="canary", canary=4, desired_capacity=3), BadInput, "--canary 4 is larger than the fleet"),
        (dict(strategy="canary", hold_minutes=-1), BadInput, "--hold -1 is invalid"),
        (dict(strategy="canary", hold_minutes=float("nan")), BadInput, "--hold nan is invalid"),
        (dict(strategy="replace", hold_minutes=5), BadInput, "--hold 5 applies to the canary strategy only"),
        (dict(strategy="standby", standby_minutes=0), BadInput, "--standby-minutes 0 is invalid"),
        (dict(strategy="replace", now=datetime(2026, 3, 1)), ReleaseStateError, "has no time zone"),
    ],
)
def test_bad_options_are_refused_in_one_line(kwargs, error, fragment):
    """Each bad option is refused before anything changes, naming the value and what is expected."""
    with pytest.raises(error) as raised:
        release_phases(state(OLD), NEW, **{"now": NOW, **kwargs})
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_canary_as_large_as_the_fleet_is_allowed():
    """With one instance per group (integration) a canary of 1 is the only canary there is."""
    phases = release_phases(state(OLD), NEW, strategy="canary", canary=1, now=NOW, desired_capacity=1)
    assert phases[0].state.group("2.0.0").capacity == 1


def test_release_id_reused_with_another_ami_is_refused():
    """A release id names one AMI: a live release cannot silently change its image."""
    with pytest.raises(BadInput) as error:
        release_phases(state(OLD), ReleaseGroup("1.0.0", "ami-0000000000000000f"), strategy="replace", now=NOW)
    assert "release 1.0.0 is live with ami-00000000000000001" in error.value.reason


def test_phased_release_needs_one_serving_release():
    """A canary or cut-over beside two serving releases would exceed two groups: refused as blocked."""
    with pytest.raises(Blocked) as error:
        release_phases(state(OLD, GONE), NEW, strategy="canary", now=NOW)
    assert "serves 2 releases (1.0.0, 0.9.0)" in error.value.reason


def test_rollback_with_standby_reattaches_it_without_booting():
    """Standby rollback puts the warm group back in the target group, verifies it, then retires the release."""
    released = release_phases(state(OLD), NEW, strategy="standby", now=NOW)[-1].state
    phases = rollback_phases(released, now=NOW)
    assert summary(phases) == [
        ("reactivate", [("2.0.0", ACTIVE, None), ("1.0.0", ACTIVE, None)], True),
        ("retire-current", [("1.0.0", ACTIVE, None)], True),
    ]
    assert phases[1].state.groups == (OLD,)
    assert rollback_phases(released, now=NOW, previous=state(OLD)) == phases


def test_rollback_without_standby_replaces_back():
    """Without a standby group the earlier release comes back create-before-destroy, standby dropped."""
    assert summary(rollback_phases(state(NEW), now=NOW, previous=state(OLD))) == [
        ("rollback", [("1.0.0", ACTIVE, None)], True)
    ]
    to_other = rollback_phases(state(NEW, replace(OLD, role=STANDBY, expires_at="2026-03-01T13:00:00Z")),
                               now=NOW, previous=state(GONE))
    assert summary(to_other) == [("rollback", [("0.9.0", ACTIVE, None)], True)]


def test_abort_of_a_canary_keeps_the_running_old_group():
    """Aborting a canary removes the new group; the old group's declaration is untouched, so nothing boots."""
    canary = release_phases(state(OLD), NEW, strategy="canary", now=NOW)[0].state
    (phase,) = rollback_phases(canary, now=NOW, previous=state(OLD))
    assert phase.state.groups == (canary.groups[0],)


def test_nothing_to_roll_back_to_is_blocked():
    """No standby and no earlier release: a one-line refusal, nothing changes."""
    with pytest.raises(Blocked) as error:
        rollback_phases(state(NEW), now=NOW)
    assert "nothing to roll back to" in error.value.reason
    assert rollback_phases(state(OLD), now=NOW, previous=state(OLD)) == ()


def test_expire_standby_drops_only_groups_past_their_time():
    """cleanup removes expired standby groups (and ones without expiry), never active ones."""
    live = replace(OLD, role=STANDBY, expires_at="2026-03-01T12:30:00Z")
    assert expire_standby(state(NEW, live), now=NOW) == state(NEW, live)
    assert expire_standby(state(NEW, live), now=NOW + timedelta(minutes=30)) == state(NEW)
    assert expire_standby(state(NEW, replace(OLD, role=STANDBY)), now=NOW) == state(NEW)
    assert expire_standby(state(OLD, NEW), now=NOW + timedelta(days=9)) == state(OLD, NEW)


def test_phase_to_dict_is_stable():
    """The plan file and --json list phases with these fields."""
    phase = Phase("hold", state(OLD, replace(NEW, capacity=1)), verify=False, hold_minutes=10)
    assert phase.to_dict() == {
        "name": "hold",
        "groups": [OLD.to_dict(), {"release": "2.0.0", "ami": NEW.ami, "role": "active", "capacity": 1}],
        "verify": False,
        "hold_minutes": 10,
    }


# -- properties over command sequences -----------------------------------------------------------
#
# The orchestrator as a tiny pure state machine: it applies phases in order (one update each),
# verifies the ones that ask for it, may crash after any update, stops at an open-ended hold,
# and rolls back with rollback_phases(). The checks run on every applied state.

POOL = tuple(ReleaseGroup(f"{n}.0.0", f"ami-{n:017x}") for n in range(1, 5))


@dataclass(frozen=True)
class Deploy:
    target: int
    strategy: str
    canary: int
    hold: float
    standby_minutes: float
    fail_at: int | None    # verification of this phase fails
    crash_at: int | None   # the process dies after this phase's update
    alarm: bool            # an alarm fires during a timed hold


@dataclass(frozen=True)
class Command:
    name: str              # continue | abort | rollback | cleanup | rerun | wait
    minutes: float = 0


@dataclass
class Pending:
    deploy: Deploy
    base: ReleaseState
    phases: tuple[Phase, ...]
    next: int = 0              # index of the phase to apply next
    crashed: bool = False      # waiting for a re-run; otherwise stopped at an open-ended hold
    crash_done: bool = False   # the scripted crash happened already


@dataclass
class Model:
    desired: int
    clock: datetime = NOW
    live: ReleaseState = field(default_factory=ReleaseState)
    settled: ReleaseState = field(default_factory=ReleaseState)
    history: list[ReleaseState] = field(default_factory=list)
    pending: Pending | None = None
    # Groups (release, ami) that passed verification at full capacity while serving.
    verified: set[tuple[str, str]] = field(default_factory=set)
    longest_standby: float = 0
    aborts: int = 0

    # -- one update --------------------------------------------------------------------------

    def apply(self, phase: Phase) -> None:
        before, after = self.live, phase.state
        assert len(after.groups) <= MAX_GROUPS
        if before.same_groups(after):
            return
        serving_full = {(g.release, g.ami) for g in after.active if g.capacity is None}
        if phase.name in SINGLE_UPDATE_PHASES:
            # One create-before-destroy update: the program keeps what served before until every
            # new instance is healthy, so something verified must have been serving before it.
            assert all(g.capacity is None for g in after.active), phase
            assert not before.active or self.serving_verified(before), (before, phase)
        else:
            assert serving_full & self.verified, f"no verified group at full capacity in {phase}"
        self.live = after
        self.verified &= serving_full
        if phase.name in SINGLE_UPDATE_PHASES:
            # The update's own gate (wait_for_elb_capacity of every instance) passed.
            self.verified |= serving_full
        was_standby = {g.release for g in before.standby}
        for group in after.standby:
            left = (parse_time(group.expires_at, "expiry") - self.clock).total_seconds() / 60
            assert left <= self.longest_standby
            assert group.release in was_standby or left > 0

    def serving_verified(self, s: ReleaseState) -> bool:
        return any((g.release, g.ami) in self.verified for g in s.active if g.capacity is None)

    def verify(self) -> None:
        self.verified |= {(g.release, g.ami) for g in self.live.active if g.capacity is None}

    def settle(self) -> None:
        self.settled, self.pending = self.live, None
        self.history.append(self.live)

    def run_rollback(self, phases) -> None:
        for phase in phases:
            self.apply(phase)
            self.verify()
        self.settle()

    # -- commands ----------------------------------------------------------------------------

    def deploy(self, d: Deploy) -> None:
        if self.pending:
            self.abort()   # a new release supersedes one in flight by aborting it first
        new, base, aborts = POOL[d.target], self.settled, self.aborts
        if d.strategy == "standby":
            self.longest_standby = max(self.longest_standby, d.standby_minutes)
        self.run(Pending(d, base, self.phases(base, d)))
        if self.pending is None and self.aborts == aborts:
            assert self.settled.active == (new,)
            old = [g for g in base.active if g.release != new.release]
            expected = [old[0].release] if d.strategy == "standby" and old else []
            assert [g.release for g in self.settled.standby] == expected

    def phases(self, base: ReleaseState, d: Deploy) -> tuple[Phase, ...]:
        return release_phases(
            base, POOL[d.target], strategy=d.strategy, canary=d.canary, hold_minutes=d.hold,
            standby_minutes=d.standby_minutes, now=self.clock, desired_capacity=self.desired,
        )

    def run(self, p: Pending) -> None:
        self.pending, d = p, p.deploy
        while p.next < len(p.phases):
            index, phase = p.next, p.phases[p.next]
            if phase.is_hold:
                p.next += 1
                if not phase.hold_minutes:
                    return                             # stopped until `fleet continue`
                self.clock += timedelta(minutes=phase.hold_minutes)
                if d.alarm:
                    return self.abort()
                continue
            self.apply(phase)
            if index == d.crash_at and not p.crash_done:
                p.crashed = p.crash_done = True
                return                                 # died after the update, before verifying
            if phase.verify:
                if index == d.fail_at:
                    return self.abort()                # automatic rollback to the settled state
                self.verify()
            p.next += 1
        self.settle()

    def cont(self) -> None:
        if self.pending and not self.pending.crashed:
            self.run(self.pending)

    def rerun(self) -> None:
        if not (self.pending and self.pending.crashed):
            return
        p = self.pending
        fresh = self.phases(p.base, p.deploy)
        # Rebuilt from the stored record later on: the same phases over the same releases.
        assert [ph.name for ph in fresh] == [ph.name for ph in p.phases]
        assert [[g.release for g in ph.state.groups] for ph in fresh] == [
            [g.release for g in ph.state.groups] for ph in p.phases
        ]
        p.phases, p.crashed = fresh, False
        self.run(p)   # re-applies the phase it stood at (same groups), then goes on

    def abort(self) -> None:
        if not self.pending:
            return
        base = self.pending.base
        self.aborts += 1
        self.run_rollback(rollback_phases(self.live, now=self.clock, previous=base))
        assert {g.release for g in self.live.active} == {g.release for g in base.active}

    def rollback(self) -> None:
        if self.pending:
            return
        serving = {g.release for g in self.live.active}
        previous = next((s for s in reversed(self.history) if s.active and {g.release for g in s.active} != serving), None)
        if previous is None:
            return
        self.run_rollback(rollback_phases(self.live, now=self.clock, previous=ReleaseState(groups=previous.active)))
        assert self.live.active == tuple(ReleaseGroup(g.release, g.ami) for g in previous.active)

    def cleanup(self) -> None:
        if self.pending:
            return
        cleaned = expire_standby(self.live, now=self.clock)
        assert cleaned.active == self.live.active
        assert all(parse_time(g.expires_at, "expiry") > self.clock for g in cleaned.standby)
        self.live = cleaned
        self.settle()


deploys = st.builds(
    Deploy,
    target=st.integers(0, len(POOL) - 1),
    strategy=st.sampled_from(STRATEGIES),
    canary=st.integers(1, 3),
    hold=st.sampled_from([0, 0, 10]),
    standby_minutes=st.sampled_from([5, 60]),
    fail_at=st.none() | st.integers(0, 3),
    crash_at=st.none() | st.integers(0, 3),
    alarm=st.booleans(),
)
commands = st.one_of(
    deploys,
    st.sampled_from([Command("continue"), Command("abort"), Command("rollback"), Command("cleanup"), Command("rerun")]),
    st.builds(Command, name=st.just("wait"), minutes=st.sampled_from([1, 30, 90])),
)


def play(model: Model, command) -> None:
    if isinstance(command, Deploy):
        if command.strategy != "canary":
            command = replace(command, hold=0)
        command = replace(command, canary=min(command.canary, model.desired))
        return model.deploy(command)
    if command.name == "wait":
        model.clock += timedelta(minutes=command.minutes)
        return
    {"continue": model.cont, "abort": model.abort, "rollback": model.rollback,
     "cleanup": model.cleanup, "rerun": model.rerun}[command.name]()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desired=st.integers(1, 4), script=st.lists(commands, max_size=14))
def test_any_command_sequence_keeps_the_release_invariants(desired, script):
    """For any deploy/continue/abort/rollback/cleanup/crash-and-rerun sequence: a verified group
    serves at full capacity until the new one is verified, at most two groups exist, standby groups
    stay within their time, and after their expiry a cleanup leaves none."""
    model = Model(desired=desired)
    for command in script:
        play(model, command)
        assert len(model.live.groups) <= MAX_GROUPS
        assert model.live.is_empty or model.serving_verified(model.live)
    model.abort()
    model.clock += timedelta(minutes=model.longest_standby + 1)
    model.cleanup()
    assert model.live.standby == ()
    assert model.live.is_empty or model.serving_verified(model.live)
