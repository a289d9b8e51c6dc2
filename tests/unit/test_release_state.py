"""The release-state schema shared by the program and the CLI."""
import json

import pytest

from automation.release_state import (
    ACTIVE,
    STANDBY,
    ReleaseGroup,
    ReleaseRecord,
    ReleaseState,
    ReleaseStateError,
    parameter_name,
)

AMI = "ami-0123456789abcdef0"


def test_round_trip_keeps_groups_and_record():
    """What the CLI writes to SSM is exactly what the program reads back."""
    state = ReleaseState(
        groups=(ReleaseGroup("1.0.0", AMI), ReleaseGroup("0.9.0", "ami-00000000", role=STANDBY, expires_at="2026-01-01T00:00:00Z")),
        record=ReleaseRecord(outcome="released", by="ci", at="2026-01-01T00:00:00Z"),
    )
    assert ReleaseState.from_json(state.to_json()) == state


def test_empty_state_is_a_foundation():
    """No groups is valid: the stack has network and load balancer, no instances."""
    state = ReleaseState.from_json(json.dumps({"schema": 1, "groups": []}))
    assert state.is_empty and state.active == ()


def test_parameter_name_is_per_stack():
    assert parameter_name("production") == "/fleet/production/release-state"


@pytest.mark.parametrize(
    "document, fragment",
    [
        ("not json", "not valid JSON"),
        ('{"schema": 2, "groups": []}', "schema 2"),
        ('{"schema": 1, "groups": {}}', "expected a list"),
        ('{"schema": 1, "groups": [{"release": "1 0", "ami": "ami-00000000"}]}', "'1 0' is malformed"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-xyz"}]}', "'ami-xyz' is malformed"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000", "role": "canary"}]}', "'canary'"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000", "capacity": -1}]}', "capacity -1"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000", "extra": 1}]}', "unknown field(s) extra"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000"}, {"release": "1", "ami": "ami-00000001"}]}', "appears twice"),
        ('{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000", "role": "standby"}]}', "none active"),
        (
            '{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000"}, {"release": "2", "ami": "ami-00000000"},'
            ' {"release": "3", "ami": "ami-00000000"}]}',
            "at most 2",
        ),
    ],
)
def test_malformed_state_is_one_line_error(document, fragment):
    """Every malformed state is refused with one line that names the bad value."""
    with pytest.raises(ReleaseStateError) as error:
        ReleaseState.from_json(document)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_active_and_standby_views():
    state = ReleaseState(groups=(ReleaseGroup("2", AMI), ReleaseGroup("1", AMI, role=STANDBY)))
    assert [g.release for g in state.active] == ["2"]
    assert [g.release for g in state.standby] == ["1"]
    assert state.group("1").role == STANDBY and state.group("3") is None
    assert state.active[0].role == ACTIVE


def test_record_of_a_phased_release_round_trips():
    """Where a canary or standby release stands survives the trip through SSM, so a re-run resumes it."""
    record = ReleaseRecord(
        outcome="in-flight", at="2026-01-01T00:00:00Z", strategy="canary", release="2.0.0", ami=AMI,
        phase=1, phases=4, hold_until="2026-01-01T00:30:00Z",
    )
    state = ReleaseState(groups=(ReleaseGroup("1.0.0", AMI), ReleaseGroup("2.0.0", AMI, capacity=1)), record=record)
    assert ReleaseState.from_json(state.to_json()).record == record
    first = ReleaseRecord(outcome="in-flight", strategy="standby", release="2.0.0", ami=AMI, phase=0, phases=2)
    assert ReleaseRecord.from_dict(json.loads(json.dumps(first.to_dict()))) == first


def test_records_written_before_phases_still_read():
    """Old records (no strategy, no phase) read as single-phase changes."""
    old = ReleaseState.from_json(
        '{"schema": 1, "groups": [{"release": "1", "ami": "ami-00000000"}],'
        ' "record": {"outcome": "released", "at": "2025-06-01T00:00:00Z", "by": "ci", "note": "release 1"}}'
    )
    assert (old.record.strategy, old.record.phase, old.record.phases, old.record.hold_until) == ("", 0, 0, "")


@pytest.mark.parametrize(
    "record, fragment",
    [
        ({"strategy": "blue-green"}, "strategy 'blue-green' is unknown"),
        ({"phase": "1", "phases": 2}, "phase '1' is invalid"),
        ({"phase": -1}, "phase -1 is invalid"),
        ({"phase": 2, "phases": 2}, "phase 2 is out of range"),
        ({"release": "2 0"}, "'2 0' is malformed"),
        ({"ami": "ami-nothex"}, "'ami-nothex' is malformed"),
        ({"hold_until": "tomorrow"}, "hold_until 'tomorrow' is malformed"),
        ({"phase_index": 1}, "unknown field(s) phase_index"),
    ],
)
def test_malformed_record_is_one_line_error(record, fragment):
    """A record the orchestrator could not resume from is refused, naming the bad value."""
    with pytest.raises(ReleaseStateError) as error:
        ReleaseRecord.from_dict(record)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)
