"""The release state of a stack: which release groups are live, as pure data.

This is the one schema shared by the Pulumi program (infra/, which declares one
release group per entry) and the release CLI (automation/, which is the only
writer). No I/O here and no dependency on pulumi or boto3, so both sides can
import it.

Stored as JSON in one SSM parameter per stack (parameter_name()); each write is
a new parameter version, so SSM's history is the audit log of releases. A
proposed state for a preview travels in the PROPOSED_STATE_ENV environment
variable instead, and is never persisted.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1
PROPOSED_STATE_ENV = "FLEET_PROPOSED_RELEASE_STATE"
PARAMETER_PREFIX = "/fleet"
STATE_PARAMETER_LEAF = "release-state"

ACTIVE = "active"      # registered in the target group, serving traffic
STANDBY = "standby"    # kept warm but detached from the target group, for instant rollback
ROLES = (ACTIVE, STANDBY)

# Outcomes recorded with each write of the state.
IN_FLIGHT = "in-flight"
RELEASED = "released"
ROLLED_BACK = "rolled-back"
FAILED = "failed"
OUTCOMES = (IN_FLIGHT, RELEASED, ROLLED_BACK, FAILED)

MAX_GROUPS = 2

# How a release moves from one release to the next (automation/strategies.py has the phases).
REPLACE = "replace"    # the new group alone, create-before-destroy in one update
CANARY = "canary"      # a few new instances beside the old group, held, then grown
STANDBY_STRATEGY = "standby"  # cut over, then keep the old group warm but detached for a while
STRATEGIES = (REPLACE, CANARY, STANDBY_STRATEGY)

RELEASE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
AMI_PATTERN = re.compile(r"^ami-[0-9a-f]{8,17}$")
STACK_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ReleaseStateError(ValueError):
    """A malformed release state or release identifier; the message is one line."""


def parameter_path(stack: str) -> str:
    """The SSM path under which a stack's release state lives."""
    check_stack(stack)
    return f"{PARAMETER_PREFIX}/{stack}"


def parameter_name(stack: str) -> str:
    """The SSM parameter holding a stack's release state."""
    return f"{parameter_path(stack)}/{STATE_PARAMETER_LEAF}"


def check_stack(stack: str) -> str:
    if not isinstance(stack, str) or not STACK_PATTERN.match(stack):
        raise ReleaseStateError(
            f"stack name {stack!r} is malformed: expected letters, digits, '.', '_' or '-'"
        )
    return stack


def check_release(release: Any) -> str:
    if not isinstance(release, str) or not RELEASE_PATTERN.match(release):
        raise ReleaseStateError(
            f"release version {release!r} is malformed: expected 1-48 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 1.4.2)"
        )
    return release


def check_ami(ami: Any) -> str:
    if not isinstance(ami, str) or not AMI_PATTERN.match(ami):
        raise ReleaseStateError(f"AMI id {ami!r} is malformed: expected ami- followed by 8-17 hex digits")
    return ami


def utc_now() -> str:
    return iso_utc(datetime.now(timezone.utc))


def iso_utc(moment: datetime) -> str:
    """An aware time as the state stores it: ISO 8601, UTC, whole seconds, Z suffix."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ReleaseStateError(f"{what} {value!r} is malformed: expected an ISO 8601 UTC time") from None
    if parsed.tzinfo is None:
        raise ReleaseStateError(f"{what} {value!r} has no time zone: expected an ISO 8601 UTC time")
    return parsed


@dataclass(frozen=True)
class ReleaseGroup:
    """One live release: an AMI running in its own launch template and ASG."""

    release: str
    ami: str
    role: str = ACTIVE
    # Instances this group runs; None means the stack's desired capacity.
    capacity: int | None = None
    # For standby groups: when the group may be cleaned up (ISO 8601 UTC).
    expires_at: str | None = None

    def __post_init__(self) -> None:
        check_release(self.release)
        check_ami(self.ami)
        if self.role not in ROLES:
            raise ReleaseStateError(
                f"role {self.role!r} of release {self.release} is unknown: expected one of {', '.join(ROLES)}"
            )
        if self.capacity is not None and (
            isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 0
        ):
            raise ReleaseStateError(
                f"capacity {self.capacity!r} of release {self.release} is invalid: expected a whole number >= 0"
            )
        if self.expires_at is not None:
            parse_time(self.expires_at, f"expires_at of release {self.release}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"release": self.release, "ami": self.ami, "role": self.role}
        if self.capacity is not None:
            data["capacity"] = self.capacity
        if self.expires_at is not None:
            data["expires_at"] = self.expires_at
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ReleaseGroup":
        if not isinstance(data, dict):
            raise ReleaseStateError(f"release group {data!r} is malformed: expected an object")
        unknown = set(data) - {"release", "ami", "role", "capacity", "expires_at"}
        if unknown:
            raise ReleaseStateError(
                f"release group has unknown field(s) {', '.join(sorted(unknown))}: "
                "expected release, ami, role, capacity, expires_at"
            )
        for required in ("release", "ami"):
            if required not in data:
                raise ReleaseStateError(f"release group {data!r} lacks {required!r}")
        return cls(
            release=data["release"],
            ami=data["ami"],
            role=data.get("role", ACTIVE),
            capacity=data.get("capacity"),
            expires_at=data.get("expires_at"),
        )


@dataclass(frozen=True)
class ReleaseRecord:
    """Who made the last change to the state, when, and how it ended.

    A release made of several phases (canary, standby) also records where it
    stands, so a re-run after a crash, `fleet continue` and `fleet abort` know
    what to do next: the strategy, the target release and AMI, the 0-based
    index of the phase whose state the groups are, the number of phases, and
    the end of a timed hold. Records written before these fields existed read
    as single-phase changes.
    """

    outcome: str = RELEASED
    at: str = ""
    by: str = ""
    commit: str = ""
    note: str = ""
    strategy: str = ""
    release: str = ""
    ami: str = ""
    phase: int = 0
    phases: int = 0
    hold_until: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ReleaseStateError(
                f"outcome {self.outcome!r} is unknown: expected one of {', '.join(OUTCOMES)}"
            )
        if self.strategy and self.strategy not in STRATEGIES:
            raise ReleaseStateError(
                f"strategy {self.strategy!r} is unknown: expected one of {', '.join(STRATEGIES)}"
            )
        if self.release:
            check_release(self.release)
        if self.ami:
            check_ami(self.ami)
        for name in ("phase", "phases"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ReleaseStateError(f"record {name} {value!r} is invalid: expected a whole number >= 0")
        if self.phases and self.phase >= self.phases:
            raise ReleaseStateError(
                f"record phase {self.phase} is out of range: expected an index below phases ({self.phases})"
            )
        if self.hold_until:
            parse_time(self.hold_until, "record hold_until")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}

    @classmethod
    def from_dict(cls, data: Any) -> "ReleaseRecord":
        if not isinstance(data, dict):
            raise ReleaseStateError(f"release record {data!r} is malformed: expected an object")
        fields = {"outcome", "at", "by", "commit", "note", "strategy", "release", "ami", "phase", "phases", "hold_until"}
        unknown = set(data) - fields
        if unknown:
            raise ReleaseStateError(
                f"release record has unknown field(s) {', '.join(sorted(unknown))}: expected {', '.join(sorted(fields))}"
            )
        # Counters stay numbers (a string "1" is refused by __post_init__); everything else is text.
        return cls(**{k: v if k in ("phase", "phases") else str(v) for k, v in data.items()})


@dataclass(frozen=True)
class ReleaseState:
    """All live release groups of one stack. Empty means a foundation without instances."""

    groups: tuple[ReleaseGroup, ...] = ()
    record: ReleaseRecord = field(default_factory=ReleaseRecord)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        if len(self.groups) > MAX_GROUPS:
            raise ReleaseStateError(
                f"release state lists {len(self.groups)} groups: expected at most {MAX_GROUPS}"
            )
        seen: set[str] = set()
        for group in self.groups:
            if group.release in seen:
                raise ReleaseStateError(f"release {group.release} appears twice: expected each release once")
            seen.add(group.release)
        if self.groups and not self.active:
            raise ReleaseStateError("release state has groups but none active: expected at least one active group")

    # -- queries -----------------------------------------------------------

    @property
    def active(self) -> tuple[ReleaseGroup, ...]:
        return tuple(g for g in self.groups if g.role == ACTIVE)

    @property
    def standby(self) -> tuple[ReleaseGroup, ...]:
        return tuple(g for g in self.groups if g.role == STANDBY)

    @property
    def is_empty(self) -> bool:
        return not self.groups

    def group(self, release: str) -> ReleaseGroup | None:
        return next((g for g in self.groups if g.release == release), None)

    def same_groups(self, other: "ReleaseState") -> bool:
        """True when both declare the same groups (the record is not compared)."""
        return self.groups == other.groups

    # -- transitions (each returns a new state) ----------------------------

    def with_groups(self, groups: tuple[ReleaseGroup, ...] | list[ReleaseGroup]) -> "ReleaseState":
        return replace(self, groups=tuple(groups))

    def with_record(self, record: ReleaseRecord) -> "ReleaseState":
        return replace(self, record=record)

    # -- serialisation -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "groups": [g.to_dict() for g in self.groups],
            "record": self.record.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "ReleaseState":
        if not isinstance(data, dict):
            raise ReleaseStateError(f"release state {data!r} is malformed: expected a JSON object")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise ReleaseStateError(f"release state schema {schema!r} is unsupported: expected {SCHEMA_VERSION}")
        groups = data.get("groups", [])
        if not isinstance(groups, list):
            raise ReleaseStateError(f"release state groups {groups!r} is malformed: expected a list")
        return cls(
            groups=tuple(ReleaseGroup.from_dict(g) for g in groups),
            record=ReleaseRecord.from_dict(data.get("record", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> "ReleaseState":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise ReleaseStateError(f"release state is not valid JSON: {error}") from None
        return cls.from_dict(data)
