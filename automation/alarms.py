"""CloudWatch alarm reads for a release: which alarms fire, and watching them during a hold.

A canary is held while the stack's own alarms (the `alarmNames` output) and any
alarm named with `--alarm` are watched; the first alarm in ALARM aborts the
release. Names are checked before anything changes, so a typo fails a deploy
at once instead of watching nothing.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from automation.errors import BadInput

IN_ALARM = "ALARM"
DESCRIBE_BATCH = 100          # the most names describe_alarms accepts at once
DEFAULT_POLL_SECONDS = 15.0   # CloudWatch evaluates alarms once a minute at best


def alarm_states(cloudwatch, names: Sequence[str]) -> dict[str, str]:
    """The state (OK, ALARM, INSUFFICIENT_DATA) of each named metric or composite alarm."""
    wanted = list(dict.fromkeys(names))
    states: dict[str, str] = {}
    for start in range(0, len(wanted), DESCRIBE_BATCH):
        batch = wanted[start:start + DESCRIBE_BATCH]
        pages = cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNames=batch, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        for page in pages:
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
    unknown = [name for name in wanted if name not in states]
    if unknown:
        raise BadInput(
            f"alarm(s) {', '.join(repr(n) for n in unknown)} do not exist: expected names of CloudWatch alarms "
            "in the stack's region (see `aws cloudwatch describe-alarms`)"
        )
    return {name: states[name] for name in wanted}


def alarms_in_alarm(cloudwatch, names: Sequence[str]) -> list[str]:
    """The named alarms currently in ALARM, in the order given; unknown names are BadInput."""
    return [name for name, state in alarm_states(cloudwatch, names).items() if state == IN_ALARM]


def watch(
    cloudwatch,
    names: Sequence[str],
    *,
    minutes: float,
    on_tick: Callable[[float], None] = lambda remaining_s: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop_requested: Callable[[], bool] = lambda: False,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> str | None:
    """Watch the alarms for `minutes`; return the first that fires, or None.

    None means the time ran out or stop_requested() became true (`fleet continue`). The
    alarms are read every poll_seconds and once more at the deadline; on_tick gets the
    seconds left after each read. A hold without a time limit is not a watch: the release
    stops there and `fleet continue` reads the alarms once before going on.
    """
    if not minutes > 0:
        raise BadInput(f"watch of {minutes!r} minutes is invalid: expected minutes > 0")
    if not poll_seconds > 0:
        raise BadInput(f"poll interval {poll_seconds!r}s is invalid: expected seconds > 0")
    deadline = clock() + minutes * 60
    while True:
        fired = alarms_in_alarm(cloudwatch, names) if names else []
        if fired:
            return fired[0]
        remaining = max(deadline - clock(), 0.0)
        on_tick(remaining)
        if remaining <= 0 or stop_requested():
            return None
        sleep(min(poll_seconds, remaining))
