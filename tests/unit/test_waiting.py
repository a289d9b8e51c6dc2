"""Polling with backoff and a deadline, driven by a fake clock (no real sleeping)."""
import pytest

from automation.waiting import WaitTimeout, wait_for


class FakeClock:
    """Test double for time: sleep() advances now() and records the delays."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_first_truthy_result_with_doubling_delays():
    clock = FakeClock()
    answers = iter([None, None, None, "ready"])
    assert wait_for(lambda: next(answers), what="x", timeout_s=100, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_delay_is_capped_and_never_passes_deadline():
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as error:
        wait_for(lambda: False, what="3 healthy targets", timeout_s=40, max_delay_s=8, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 1.0]
    assert str(error.value) == "timed out after 40s waiting for 3 healthy targets"
    assert error.value.exit_code == 1
