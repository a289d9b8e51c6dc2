"""The predicted timeline of a release and of its rollback (pure, no I/O).

Each phase's duration is built from the stack's effective settings (the
`settings` stack output, camelCase keys) and a few stated estimates: a Pulumi
update's own overhead, an instance's launch + boot + application warm-up, and
the termination of removed instances. What each phase does follows from the
difference between the state before it and its own state:

- a group that is new, or grows, launches instances, which must then pass
  `healthyThreshold` checks `healthCheckIntervalSeconds` apart;
- a standby group put back in the target group boots nothing: it only passes
  the health checks;
- a group that leaves the target group (removed, shrunk, or detached to
  standby) drains for `deregistrationDelaySeconds`; removed instances then
  terminate;
- a hold lasts its minutes, or is open-ended until `fleet continue`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Sequence

from automation.errors import BadInput
from automation.release_state import ACTIVE, ReleaseState
from automation.strategies import Phase, rollback_phases

SETTINGS_USED = (
    "desiredCapacity",
    "healthCheckIntervalSeconds",
    "healthyThreshold",
    "unhealthyThreshold",
    "deregistrationDelaySeconds",
)


@dataclass(frozen=True)
class Assumptions:
    """Estimates that are not stack settings; each can be overridden."""

    launch_seconds: float = 90.0      # instance launch + boot + application warm-up
    update_seconds: float = 20.0      # a Pulumi update's own work: refresh, diff, API calls
    terminate_seconds: float = 30.0   # removed instances shutting down once drained

    def describe(self, settings: dict[str, int]) -> tuple[str, ...]:
        interval, healthy = settings["healthCheckIntervalSeconds"], settings["healthyThreshold"]
        return (
            f"an instance launches, boots and warms up its application in {duration_text(self.launch_seconds)} (estimate)",
            f"a Pulumi update adds {duration_text(self.update_seconds)} of its own (estimate)",
            f"a healthy instance passes {healthy} checks {interval}s apart: {duration_text(interval * healthy)} "
            "after it answers (healthCheckIntervalSeconds x healthyThreshold)",
            f"an instance leaving the target group drains for {duration_text(settings['deregistrationDelaySeconds'])} "
            "(deregistrationDelaySeconds)",
            f"removed instances terminate in {duration_text(self.terminate_seconds)} (estimate)",
            f"a failing instance is out of the target group after "
            f"{duration_text(interval * settings['unhealthyThreshold'])} (healthCheckIntervalSeconds x unhealthyThreshold)",
            f"a group without its own capacity runs desiredCapacity = {settings['desiredCapacity']} instances",
            "instances of one phase launch in parallel; verification time after the update is not counted",
        )

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PhaseTiming:
    name: str
    seconds: float                        # predicted duration (a hold until continue counts 0)
    instances: int                        # instances running at the end of the phase
    serving: int                          # of which registered in the target group
    peak: int                             # instances running at once during the phase
    steps: tuple[tuple[str, float], ...]  # what the duration is made of
    open_ended: bool = False              # a hold that waits for `fleet continue`

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "instances": self.instances,
            "serving": self.serving,
            "peak_instances": self.peak,
            "steps": [{"step": step, "seconds": seconds} for step, seconds in self.steps],
            "open_ended": self.open_ended,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhaseTiming":
        return cls(
            name=data["name"], seconds=data["seconds"], instances=data["instances"], serving=data["serving"],
            peak=data["peak_instances"], steps=tuple((s["step"], s["seconds"]) for s in data["steps"]),
            open_ended=data["open_ended"],
        )


@dataclass(frozen=True)
class Timeline:
    phases: tuple[PhaseTiming, ...]
    assumptions: tuple[str, ...]

    @property
    def total_seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def peak_instances(self) -> int:
        return max((p.peak for p in self.phases), default=0)

    @property
    def open_ended(self) -> bool:
        return any(p.open_ended for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": [p.to_dict() for p in self.phases],
            "total_seconds": self.total_seconds,
            "peak_instances": self.peak_instances,
            "open_ended": self.open_ended,
            "assumptions": list(self.assumptions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Timeline":
        """A timeline read back from a plan file or --json output."""
        return cls(tuple(PhaseTiming.from_dict(p) for p in data["phases"]), tuple(data["assumptions"]))

    def render(self, title: str = "release") -> str:
        """A table for people: one line per phase, the total, the peak, the assumptions."""
        if not self.phases:
            return f"{title}: nothing to do"
        lines = [f"{title}:", f"  {'phase':<15} {'duration':>14} {'instances':>9} {'serving':>7}  made of"]
        for p in self.phases:
            duration = "until continue" if p.open_ended else duration_text(p.seconds)
            made_of = " + ".join(f"{step} {duration_text(seconds)}" for step, seconds in p.steps) or "-"
            lines.append(f"  {p.name:<15} {duration:>14} {p.instances:>9} {p.serving:>7}  {made_of}")
        extra = " + the hold until `fleet continue`" if self.open_ended else ""
        lines.append(f"  total {duration_text(self.total_seconds)}{extra}; at most {self.peak_instances} instances at once")
        return "\n".join(lines)


def predict(
    phases: Sequence[Phase],
    settings: dict[str, Any],
    *,
    base: ReleaseState | None = None,
    assumptions: Assumptions = Assumptions(),
) -> Timeline:
    """The predicted duration and instance counts of each phase, starting from `base`."""
    figures = _settings(settings)
    previous = base if base is not None else ReleaseState()
    timings = []
    for phase in phases:
        timings.append(_phase_timing(phase, previous, figures, assumptions))
        previous = phase.state
    return Timeline(tuple(timings), assumptions.describe(figures))


def predict_rollback(
    released: ReleaseState,
    settings: dict[str, Any],
    *,
    previous: ReleaseState | None,
    now: datetime,
    assumptions: Assumptions = Assumptions(),
) -> Timeline:
    """The predicted rollback of `released` (the state a release ends in) to `previous`."""
    return predict(rollback_phases(released, previous=previous, now=now), settings, base=released, assumptions=assumptions)


def _phase_timing(phase: Phase, before: ReleaseState, settings: dict[str, int], assumptions: Assumptions) -> PhaseTiming:
    desired = settings["desiredCapacity"]
    after = phase.state
    running_before = {g.release: _size(g.capacity, desired) for g in before.groups}
    running_after = {g.release: _size(g.capacity, desired) for g in after.groups}
    serving_before = {g.release: _size(g.capacity, desired) for g in before.groups if g.role == ACTIVE}
    serving_after = {g.release: _size(g.capacity, desired) for g in after.groups if g.role == ACTIVE}
    releases = set(running_before) | set(running_after)
    # The program deletes and shrinks only at the end of an update: both sides run meanwhile.
    peak = sum(max(running_before.get(r, 0), running_after.get(r, 0)) for r in releases)
    instances, serving = sum(running_after.values()), sum(serving_after.values())

    if phase.is_hold or before.same_groups(after):
        if phase.is_hold:
            seconds = phase.hold_minutes * 60
            steps = (("hold", seconds),) if seconds else ()
            return PhaseTiming(phase.name, seconds, instances, serving, peak, steps, open_ended=not seconds)
        return PhaseTiming(phase.name, 0.0, instances, serving, peak, ())

    launches = any(running_after[r] > running_before.get(r, 0) for r in running_after)
    registers = any(serving_after[r] > serving_before.get(r, 0) for r in serving_after)
    drains = any(serving_before[r] > serving_after.get(r, 0) for r in serving_before)
    terminates = any(running_before[r] > running_after.get(r, 0) for r in running_before)

    steps: list[tuple[str, float]] = [("update", assumptions.update_seconds)]
    if launches:
        steps.append(("launch", assumptions.launch_seconds))
    if registers:
        steps.append(("health checks", float(settings["healthCheckIntervalSeconds"] * settings["healthyThreshold"])))
    if drains:
        steps.append(("drain", float(settings["deregistrationDelaySeconds"])))
    if terminates:
        steps.append(("terminate", assumptions.terminate_seconds))
    seconds = sum(s for _, s in steps)
    return PhaseTiming(phase.name, seconds, instances, serving, peak, tuple(steps))


def _settings(settings: dict[str, Any]) -> dict[str, int]:
    figures = {}
    for key in SETTINGS_USED:
        if key not in settings:
            raise BadInput(f"stack settings lack {key!r}: expected the `settings` output of the fleet program")
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInput(f"stack setting {key} {value!r} is invalid: expected a whole number >= 0")
        figures[key] = value
    return figures


def _size(capacity: int | None, desired: int) -> int:
    return desired if capacity is None else capacity


def duration_text(seconds: float) -> str:
    """Seconds as people read a duration: 45s, 3m05s."""
    whole = int(round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
