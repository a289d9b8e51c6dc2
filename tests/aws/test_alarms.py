"""Alarm reads and the hold watch, against the moto server."""
import pytest

from automation.alarms import alarm_states, alarms_in_alarm, watch
from automation.aws import client
from automation.errors import BadInput

pytestmark = pytest.mark.aws

NAMES = ("fleet-staging-unhealthy-hosts", "fleet-staging-http5xx", "team-latency")


class FakeClock:
    """A test double for time: sleep() advances the clock and may run a scripted event."""

    def __init__(self, events=None):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.events = dict(events or {})

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        event = self.events.pop(len(self.sleeps), None)
        if event:
            event()


@pytest.fixture
def cloudwatch(aws):
    cw = client("cloudwatch")
    for name in NAMES:
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/ApplicationELB",
            MetricName="UnHealthyHostCount",
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test setup")
    return cw


def fire(cw, name: str) -> None:
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: injected")


def test_reads_which_alarms_fire(cloudwatch):
    """Only the alarms in ALARM are reported, in the order asked, and OK ones are not."""
    assert alarms_in_alarm(cloudwatch, NAMES) == []
    fire(cloudwatch, NAMES[2])
    fire(cloudwatch, NAMES[0])
    assert alarms_in_alarm(cloudwatch, NAMES) == [NAMES[0], NAMES[2]]
    cloudwatch.set_alarm_state(AlarmName=NAMES[0], StateValue="OK", StateReason="test: recovered")
    assert alarms_in_alarm(cloudwatch, NAMES) == [NAMES[2]]
    assert alarm_states(cloudwatch, NAMES[:2]) == {NAMES[0]: "OK", NAMES[1]: "OK"}


def test_unknown_alarm_name_is_refused(cloudwatch):
    """A typo in --alarm is a one-line BadInput naming it, before any release starts."""
    with pytest.raises(BadInput) as error:
        alarms_in_alarm(cloudwatch, [NAMES[0], "fleet-stagign-http5xx"])
    assert "'fleet-stagign-http5xx'" in error.value.reason
    assert NAMES[0] not in error.value.reason
    assert "\n" not in error.value.reason


def test_watch_returns_the_alarm_that_fired(cloudwatch):
    """An alarm that fires during the hold ends the watch with its name (the caller aborts)."""
    clock = FakeClock(events={3: lambda: fire(cloudwatch, NAMES[1])})
    ticks = []
    fired = watch(cloudwatch, NAMES, minutes=10, on_tick=ticks.append, clock=clock, sleep=clock.sleep, poll_seconds=15)
    assert fired == NAMES[1]
    assert len(clock.sleeps) == 3
    assert ticks == [600.0, 585.0, 570.0]


def test_watch_ends_quietly_when_the_hold_is_over(cloudwatch):
    """No alarm: the watch reads until the deadline, once more at it, and returns None."""
    clock = FakeClock()
    assert watch(cloudwatch, NAMES, minutes=1, clock=clock, sleep=clock.sleep, poll_seconds=25) is None
    assert clock.sleeps == [25, 25, 10]
    assert clock.now == 1060.0


def test_watch_stops_when_asked(cloudwatch):
    """`fleet continue` during a timed hold ends the watch early without an alarm."""
    clock = FakeClock()
    asked = iter([False, False, True])
    assert watch(cloudwatch, NAMES, minutes=30, clock=clock, sleep=clock.sleep, stop_requested=lambda: next(asked)) is None
    assert len(clock.sleeps) == 2


def test_watch_refuses_unknown_names_before_waiting(cloudwatch):
    """The names are checked on the first read, so nothing is held for a misspelt alarm."""
    clock = FakeClock()
    with pytest.raises(BadInput):
        watch(cloudwatch, ["nope"], minutes=5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_watch_needs_a_time_limit(cloudwatch):
    """An open-ended hold is not a watch: the release stops and waits for `fleet continue`."""
    with pytest.raises(BadInput) as error:
        watch(cloudwatch, NAMES, minutes=0)
    assert "0" in error.value.reason and "minutes > 0" in error.value.reason
