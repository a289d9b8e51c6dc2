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
